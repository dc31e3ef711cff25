"""Bounds on what one client can make the service hold: body size, connections, idle sockets.

- `ContentLengthLimit` answers 413 from the `Content-Length` header alone, before a byte of
  the body is read. A body without a length (chunked) is counted as it streams by FastAPI's
  own `max_body_size` (set in `service.routes.install`), whose 413 the error handlers answer
  with the same JSON body.
- `uvicorn_options` are the server's bounds (CLAIMFIRST_LIMIT_CONCURRENCY, _KEEPALIVE_SECONDS).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.settings import Settings

__all__ = ["ContentLengthLimit", "uvicorn_options", "too_large_detail"]


def too_large_detail(limit: int) -> str:
    return f"Request body too large: at most {limit} bytes are accepted."


class ContentLengthLimit:
    """Pure ASGI (no per-request task or body buffering): refuse an announced oversized body."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = Headers(scope=scope).get("content-length", "")
            if length.isdigit() and int(length) > self.max_body_bytes:
                # Connection: close - the unread body must not be parsed as the next request.
                response = JSONResponse({"detail": too_large_detail(self.max_body_bytes)}, status_code=413,
                                        headers={"Connection": "close"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What `python -m service` passes to uvicorn besides host, port and workers."""
    return {
        "limit_concurrency": settings.limit_concurrency,
        "timeout_keep_alive": settings.keepalive_seconds,
    }
