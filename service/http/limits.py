"""Bounds on what one client can make the service hold: body size, connections, idle sockets.

- The body limit (CLAIMFIRST_MAX_BODY_BYTES) is enforced by `service.http.edge` for every route;
  `too_large_detail` is its one message, whichever way the 413 is answered.
- `uvicorn_options` are the server's bounds (CLAIMFIRST_LIMIT_CONCURRENCY, _KEEPALIVE_SECONDS).
"""

from __future__ import annotations

from typing import Any

from service.settings import Settings

__all__ = ["uvicorn_options", "too_large_detail"]


def too_large_detail(limit: int) -> str:
    return f"Request body too large: at most {limit} bytes are accepted."


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What `python -m service` passes to uvicorn besides host, port and workers."""
    return {
        "limit_concurrency": settings.limit_concurrency,
        "timeout_keep_alive": settings.keepalive_seconds,
    }
