"""Bounds on what one client can make the service hold: body size, connections, idle sockets.

- The body limit (CLAIMFIRST_MAX_BODY_BYTES) is enforced by `service.http.edge` for every route;
  `too_large_detail` is its one message, whichever way the 413 is answered.
- `uvicorn_options` are the server's bounds (CLAIMFIRST_LIMIT_CONCURRENCY, _KEEPALIVE_SECONDS,
  _MAX_HEADER_BYTES, _HEADER_TIMEOUT_SECONDS, _BODY_TIMEOUT_SECONDS), the last three kept by the
  connection protocol of `service.http.connections`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from service.http.connections import BoundedHttpToolsProtocol, HttpBounds
from service.settings import Settings

__all__ = ["uvicorn_options", "too_large_detail"]


def too_large_detail(limit: int) -> str:
    return f"Request body too large: at most {limit} bytes are accepted."


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What `python -m service` passes to uvicorn besides host, port and workers."""
    bounds = HttpBounds(
        max_header_bytes=settings.max_header_bytes, header_timeout_seconds=settings.header_timeout_seconds,
        body_timeout_seconds=settings.body_timeout_seconds, limit_concurrency=settings.limit_concurrency,
    )
    return {
        # A partial of a module-level class: uvicorn pickles its config into spawned workers.
        "http": partial(BoundedHttpToolsProtocol, bounds=bounds),
        "limit_concurrency": settings.limit_concurrency,
        "timeout_keep_alive": settings.keepalive_seconds,
    }
