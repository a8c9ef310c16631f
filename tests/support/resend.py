"""A GET as a browser sends it: resent once when the kept-alive connection it went out on was
closed as it went out.

That is the race every HTTP/1.1 client meets when a server closes an idle connection (nginx's
old workers do on each graceful reload). Browsers resend an idempotent request on a new
connection then (RFC 9112, 9.3.1); load tests do too, once, and count it.
"""

from __future__ import annotations

from typing import Any

import httpx

# What httpx says when a kept-alive connection is closed as a request goes out on it.
CLOSED_IDLE = "Server disconnected without sending a response."


def get_as_a_browser(client: httpx.Client, url: str, **kwargs: Any) -> tuple[httpx.Response, bool]:
    """The answer, and whether the request had to be resent; any other error is raised."""
    try:
        return client.get(url, **kwargs), False
    except httpx.RemoteProtocolError as error:
        if str(error) != CLOSED_IDLE:
            raise
    return client.get(url, **kwargs), True
