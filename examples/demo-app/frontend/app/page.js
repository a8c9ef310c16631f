"use client";

import { useEffect, useRef, useState } from "react";

const COCKPIT_PATH = "/ws/dev-cockpit";

// Same origin as the page: nginx carries the upgrade to the backend.
function cockpitUrl() {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${window.location.host}${COCKPIT_PATH}`;
}

export default function Cockpit() {
  const socketRef = useRef(null);
  const [status, setStatus] = useState("connecting");
  const [messages, setMessages] = useState([]);
  const [draft, setDraft] = useState("");

  useEffect(() => {
    const socket = new WebSocket(cockpitUrl());
    socketRef.current = socket;
    socket.onopen = () => setStatus("open");
    socket.onclose = () => setStatus("closed");
    socket.onerror = () => setStatus("error");
    socket.onmessage = (event) =>
      setMessages((previous) => [...previous.slice(-99), String(event.data)]);
    return () => socket.close();
  }, []);

  function send(event) {
    event.preventDefault();
    if (socketRef.current?.readyState === WebSocket.OPEN && draft) {
      socketRef.current.send(draft);
      setDraft("");
    }
  }

  return (
    <main>
      <h1>Dev cockpit</h1>
      <p>
        WebSocket <code>{COCKPIT_PATH}</code>: <strong id="status">{status}</strong>
      </p>
      <form onSubmit={send}>
        <input
          value={draft}
          onChange={(event) => setDraft(event.target.value)}
          placeholder="message (prefix broadcast: to reach every client)"
          size={50}
        />
        <button type="submit">Send</button>
      </form>
      <ul id="messages">
        {messages.map((message, index) => (
          <li key={index}>{message}</li>
        ))}
      </ul>
    </main>
  );
}
