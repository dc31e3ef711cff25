"""The one layer every HTTP request passes before routing: its id, its body limit, its metrics.

Pure ASGI, and one layer rather than the three middlewares and FastAPI's per-route body limit
(three layers more) it replaces: each layer is a coroutine call and a `send` wrapper per
request, on every duplicate /create (py-spy under `bench/create_throughput.py`). In order:

- **request id**: the client's `X-Request-ID` when it looks like an id (`service.logs`), else a
  new one; kept in the log context for every line logged while the request runs (and by the
  tasks it starts), and echoed in the answer.
- **body limit** (CLAIMFIRST_MAX_BODY_BYTES): an announced oversized body is answered 413 from
  `Content-Length` alone, before a byte is read (with `Connection: close`: the unread body must
  not be parsed as the next request). A body without a length (chunked) is counted as the route
  reads it; past the limit the read raises an HTTP 413, which the error handlers answer with the
  same JSON body (`service.http.errors`).
- **/create metrics**: every `POST /create` is counted, timed and logged (one line) by what it
  did, including answers given before the route runs (401, 413, 422).
- **a client gone** while its body was read (it hung up, or missed the body deadline of
  `service.http.connections`) is nobody's fault here: not a 500 with a traceback, and counted as
  `client_gone`, not `unavailable` (anyone with a key could otherwise fake an outage on the
  dashboard). Nothing was claimed: the body is read before anything is written.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http.limits import too_large_detail
from service.logs import request_context, usable_request_id
from service.metrics import CLIENT_GONE, Metrics

__all__ = ["Edge"]

log = logging.getLogger("claimfirst.http")

_REPLAYED = (b"idempotent-replayed", b"true")


class _RequestIds:
    """Ids unique across processes without a syscall per request: a random prefix per process
    (uuid4 read the OS's random source on every request) and a counter, 32 hex characters."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def __next__(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


class Edge:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self._ids = _RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = given = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"x-request-id":
                given = value
        request_id = usable_request_id(given) or next(self._ids)
        echoed = (b"x-request-id", request_id.encode())
        is_create = scope["path"] == "/create" and scope["method"] == "POST"
        answer = [500, False]  # status, replayed (Idempotency-Key)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), echoed]
                message["headers"] = headers
                answer[0] = message["status"]
                answer[1] = is_create and _REPLAYED in headers
            await send(message)

        if length is None:
            receive = self._counting(receive)
        started = time.perf_counter()
        with request_context(request_id):
            try:
                if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                    response = JSONResponse({"detail": too_large_detail(self.max_body_bytes)}, status_code=413,
                                            headers={"Connection": "close"})
                    await response(scope, receive, sending)
                else:
                    await self.app(scope, receive, sending)
            except ClientDisconnect:
                answer[0] = CLIENT_GONE  # there is nobody to answer
            finally:
                if is_create:
                    self._observed(answer[0], answer[1], time.perf_counter() - started)  # type: ignore[arg-type]

    def _counting(self, receive: Receive) -> Receive:
        limit, seen = self.max_body_bytes, 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413)  # answered by service.http.errors
            return message

        return counted

    def _observed(self, status: int, replayed: bool, seconds: float) -> None:
        outcome = self.metrics.create_answered(status, replayed, seconds)
        if log.isEnabledFor(logging.INFO):
            log.info("POST /create %d%s in %.1f ms", status, " (replayed)" if replayed else "", seconds * 1000,
                     extra={"outcome": outcome})
