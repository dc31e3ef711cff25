"""The connection protocol `python -m service` runs: uvicorn's httptools protocol with the bounds it lacks.

httptools (llhttp) keeps no limit on a request's head, and uvicorn sets no deadline on a client
that sends it, or a body, slowly: a 20 MB header was answered 200, ten unfinished ones took a
worker from 104 to 349 MB, and 74 sockets sending one byte every 2 s held their slots until a
real client got 503 (issue 18). This subclass adds, per connection:

- **a head limit** (CLAIMFIRST_MAX_HEADER_BYTES): the request line and headers of one request
  may take at most this many bytes; past it the client gets **431** and the connection is
  closed, before the parser has buffered more than the limit.
- **a head deadline** (CLAIMFIRST_HEADER_TIMEOUT_SECONDS) from the connection's start, or from
  a request's first byte: **408** and closed.
- **a body deadline** (CLAIMFIRST_BODY_TIMEOUT_SECONDS) from the end of the head to the end of
  the body: **408** and closed when no answer was started (the app sees the client gone).
- **who waits, who works** (CLAIMFIRST_LIMIT_CONCURRENCY): uvicorn refused a request with 503
  when `limit_concurrency` connections were *open*, so sockets that never finished a head
  locked real clients out. Here the limit counts requests being *answered* (503 past it, as
  before), and separately connections *waiting* for a head (new, or sending one; an idle
  kept-alive connection is closed by CLAIMFIRST_KEEPALIVE_SECONDS instead): at the limit, a new
  one closes the one that has waited longest. A client
  that sends its request at once is never the longest waiter; a slow one is, and memory stays
  bounded at limit x (head limit + one read) however many connections arrive.

Kept httptools rather than h11 (whose `h11_max_incomplete_event_size` bounds the head but sets
no deadline either): `bench/create_throughput.py` measured the difference (see README, Benchmarks).
"""

from __future__ import annotations

import asyncio
import http
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HttpBounds", "BoundedHttpToolsProtocol"]


@dataclass(frozen=True)
class HttpBounds:
    """What one worker allows (from Settings, see `service.http.limits.uvicorn_options`)."""

    max_header_bytes: int
    header_timeout_seconds: float
    body_timeout_seconds: float
    limit_concurrency: int


def _plain_answer(status: int) -> bytes:
    phrase = http.HTTPStatus(status).phrase
    body = phrase.encode("ascii")
    return (f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode("ascii") + body


_TOO_LARGE = _plain_answer(431)
_TOO_SLOW = _plain_answer(408)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, bounds: HttpBounds) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.bounds = bounds
        self._app = self.app
        # uvicorn's check counts open connections; ours (on_headers_complete) counts requests.
        self.limit_concurrency = None
        # Connections waiting for a head, oldest first (a dict keeps insertion order), shared
        # by every connection of this server.
        waiting = getattr(server_state, "claimfirst_waiting", None)
        if waiting is None:
            waiting = server_state.claimfirst_waiting = {}
        self._waiting: dict[BoundedHttpToolsProtocol, None] = waiting
        self._head_budget: int | None = bounds.max_header_bytes  # None: not reading a head
        # One lazy timer per connection: arming a deadline sets `_due` and `_late`, and
        # schedules a timer only when none is pending earlier; a timer that finds its
        # deadline moved later re-schedules itself. A kept-alive connection's requests then
        # cost an attribute write each, not three timer handles (bench/create_throughput.py).
        self._deadline: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._late: Any = None

    # --- the connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait()
        self._arm(self.bounds.header_timeout_seconds, self._head_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting.pop(self, None)
        self._late = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        budget = self._head_budget
        if budget is not None:
            if len(data) > budget:
                # Feed what the limit allows: the head may end inside it (a body or the next
                # request follows); if it does not, the parser never holds more than the limit.
                super().data_received(data[:budget])
                if self.transport.is_closing():
                    return
                if self._head_budget is not None:
                    self._refuse(_TOO_LARGE)
                    return
                self.data_received(data[budget:])
                return
            self._head_budget = budget - len(data)
        super().data_received(data)

    # --- the parser's callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._late is None:  # a keep-alive connection's next request
            self._wait()
            self._arm(self.bounds.header_timeout_seconds, self._head_late)

    def on_headers_complete(self) -> None:
        self._waiting.pop(self, None)
        self._head_budget = None
        self._disarm()
        busy = len(self.tasks) >= self.bounds.limit_concurrency
        if busy:
            self.logger.warning("Exceeded concurrency limit.")
        self.app = service_unavailable if busy else self._app
        super().on_headers_complete()
        self._arm(self.bounds.body_timeout_seconds, self._body_late)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self._head_budget = self.bounds.max_header_bytes

    # --- the bounds
    def _wait(self) -> None:
        # Not an idle kept-alive connection: it sent a whole request in time, holds no head,
        # and is closed by uvicorn's keep-alive timeout. Evicting it would close a real
        # client's pooled connection under its next request (seen under a flood of new ones).
        self._waiting.pop(self, None)
        if len(self._waiting) >= self.bounds.limit_concurrency:
            oldest = next(iter(self._waiting))
            oldest._refuse(_TOO_SLOW)
        self._waiting[self] = None

    def _arm(self, seconds: float, late: Any) -> None:
        self._due = self.loop.time() + seconds
        self._late = late
        if self._deadline is not None and self._deadline.when() > self._due:
            self._deadline.cancel()
            self._deadline = None
        if self._deadline is None:
            self._deadline = self.loop.call_at(self._due, self._check)

    def _disarm(self) -> None:
        self._late = None  # a pending timer finds nothing due

    def _check(self) -> None:
        self._deadline = None
        if self._late is None:
            return
        if self.loop.time() < self._due:
            self._deadline = self.loop.call_at(self._due, self._check)
            return
        late, self._late = self._late, None
        late()

    def _head_late(self) -> None:
        self._refuse(_TOO_SLOW)

    def _body_late(self) -> None:
        cycle = self.cycle
        answered = cycle is not None and cycle.response_started
        if cycle is not None and not cycle.response_complete:
            # The app reading the body sees the client gone (http.disconnect), and anything it
            # still sends is dropped: the 408 is the answer.
            cycle.disconnected = True
            cycle.message_event.set()
        # An app that answered before reading the whole body (401, 413) has said its piece.
        self._refuse(None if answered else _TOO_SLOW)

    def _refuse(self, answer: bytes | None) -> None:
        self._waiting.pop(self, None)
        self._disarm()
        if self.transport.is_closing():
            return
        if answer is not None and (self.cycle is None or self.cycle.response_complete or self.cycle.disconnected):
            self.transport.write(answer)  # never into the middle of another answer
        self.transport.close()
