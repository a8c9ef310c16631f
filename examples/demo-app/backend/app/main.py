"""A stand-in for the A-Stats backend: just enough surface to exercise the deployment.

`/health` for the container healthcheck, `/api/whoami` to see what the proxy forwards, and
`/ws/dev-cockpit`, the WebSocket the real dev cockpit uses. Connection settings come from the
environment the Pulumi program sets (`DATABASE_URL`, `SECRET_KEY`); their values are never
logged or returned.

Two faults a release can have, for rollout drills (set through `backend.env`):
`DEMO_FAULT=broken` answers 500 on every route, and `DEMO_START_DELAY_S=N` takes N seconds to
start before it serves anything.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from fastapi import FastAPI, Request, Response, WebSocket, WebSocketDisconnect
from sqlalchemy import Engine, create_engine, text

from app.database import database_url

BROADCAST_PREFIX = "broadcast:"
_REDACTED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await asyncio.sleep(float(os.environ.get("DEMO_START_DELAY_S", "0")))
    yield


app = FastAPI(title="A-Stats demo backend", lifespan=lifespan)


@app.middleware("http")
async def injected_fault(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    if os.environ.get("DEMO_FAULT") == "broken":
        return Response("this release is broken on purpose\n", status_code=500)
    return await call_next(request)


@lru_cache(maxsize=1)
def _engine(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


class Cockpit:
    """The WebSocket clients connected to this worker process.

    With several Uvicorn workers a broadcast reaches the clients of one worker only; the
    real backend fans out through its own channel, which this demo does not need.
    """

    def __init__(self) -> None:
        self._clients: set[WebSocket] = set()

    async def join(self, socket: WebSocket) -> None:
        await socket.accept()
        self._clients.add(socket)

    def leave(self, socket: WebSocket) -> None:
        self._clients.discard(socket)

    async def broadcast(self, message: str) -> None:
        clients = list(self._clients)
        results = await asyncio.gather(
            *(client.send_text(message) for client in clients), return_exceptions=True
        )
        for client, result in zip(clients, results, strict=True):
            if isinstance(result, Exception):
                self.leave(client)


cockpit = Cockpit()


# async: answered on the event loop, so the health check needs no thread from the pool, which
# cannot grow while the container is at its PIDs limit (and whose idle threads end after 10 s).
@app.get("/health")
async def health() -> dict[str, Any]:
    return {
        "status": "ok",
        "database_configured": database_url() is not None,
        "secret_key_configured": bool(os.environ.get("SECRET_KEY")),
    }


@app.get("/api/whoami")
def whoami(request: Request) -> dict[str, Any]:
    headers = {
        name: ("<redacted>" if name in _REDACTED_HEADERS else value)
        for name, value in request.headers.items()
    }
    return {
        "client": request.client.host if request.client else None,
        "scheme": request.url.scheme,
        "headers": headers,
    }


@app.get("/api/db")
def database_state() -> dict[str, Any]:
    """The migration revision and row count, showing the schema Alembic created."""
    url = database_url()
    if url is None:
        return {"configured": False}
    with _engine(url).connect() as connection:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        notes = connection.execute(text("SELECT count(*) FROM cockpit_notes")).scalar()
    return {"configured": True, "revision": revision, "notes": notes}


@app.websocket("/ws/dev-cockpit")
async def dev_cockpit(socket: WebSocket) -> None:
    """Echo each message to its sender; a `broadcast:` message goes to every client."""
    await cockpit.join(socket)
    try:
        while True:
            message = await socket.receive_text()
            if message.startswith(BROADCAST_PREFIX):
                await cockpit.broadcast(message)
            else:
                await socket.send_text(message)
    except WebSocketDisconnect:
        pass
    finally:
        cockpit.leave(socket)
