"""Waiting for the database with a deadline that holds even when the database is frozen.

`asyncio.wait_for` cancels the call at its deadline and then *waits for the cancellation to
finish*. psycopg handles a cancelled query by asking the server to cancel it (up to 5 s) and
then waiting for the query to end (up to 5 s more) before it closes the connection: against
a frozen server (SIGSTOP, a stalled VM, a dead network path with no reset) a 2 s bound
became a 12 s answer. `within` answers at the deadline and lets the cancelled call finish
its cleanup in the background (it still returns its connection to the pool, or closes it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

__all__ = ["within", "request_deadline", "deadline_scope"]

T = TypeVar("T")

# Cancelled calls still cleaning up; held so they are not garbage-collected mid-cleanup.
_abandoned: set[asyncio.Future] = set()


def _forget(task: asyncio.Future) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: an error after the deadline is nobody's to handle


async def within(call: Awaitable[T], seconds: float) -> T:
    """The result of `call`, or TimeoutError after `seconds` whatever `call` does on cancel."""
    task = asyncio.ensure_future(call)
    # What `asyncio.wait({task}, timeout=…)` does, without its sets and per-call bookkeeping:
    # this runs on every request, around every database call.
    loop = task.get_loop()
    woken = loop.create_future()

    def wake(_: object) -> None:
        if not woken.done():
            woken.set_result(None)

    timer = loop.call_later(seconds, wake, None)
    task.add_done_callback(wake)
    try:
        await woken
    except BaseException:  # the caller itself was cancelled (a client went away)
        task.cancel()
        raise
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    if task.done():
        return task.result()
    task.cancel()
    _abandoned.add(task)
    task.add_done_callback(_forget)
    raise TimeoutError


# One deadline for a whole request: every database call it makes (an Idempotency-Key's begin,
# the claim, the finish) shares what is left of it, so the answer comes within the bound
# however many calls it takes. A context variable, set by the route for the request's task.
_request_deadline: ContextVar[float | None] = ContextVar("claimfirst_request_deadline", default=None)


def request_deadline() -> float | None:
    """When the current request gives up (time.monotonic()), or None outside a request scope."""
    return _request_deadline.get()


@contextmanager
def deadline_scope(seconds: float) -> Iterator[float]:
    """Give the code inside `seconds` in all from now (an enclosing scope's deadline stands)."""
    existing = _request_deadline.get()
    if existing is not None:
        yield existing
        return
    token = _request_deadline.set(time.monotonic() + seconds)
    try:
        yield time.monotonic() + seconds
    finally:
        _request_deadline.reset(token)
