"""`service.deadlines.within`: the deadline does not wait for a slow cancellation.

The stand-in call behaves as psycopg does on a frozen server: cancelled, it keeps running its
cleanup (here until an event is set). The real case is tests/service/test_failures_outage.py.
"""

from __future__ import annotations

import asyncio

import pytest

from service.deadlines import within


async def slow_to_cancel(cleanup_may_end: asyncio.Event, cleaned: list[str]) -> str:
    try:
        await asyncio.Event().wait()  # never answers: a frozen database
    except asyncio.CancelledError:
        await cleanup_may_end.wait()  # psycopg cancelling the query, then closing the connection
        cleaned.append("closed")
        raise
    return "unreachable"


def test_the_deadline_answers_while_the_cancelled_call_is_still_cleaning_up() -> None:
    async def scenario() -> list[str]:
        release, cleaned = asyncio.Event(), []
        task_count = len(asyncio.all_tasks())
        with pytest.raises(TimeoutError):
            await within(slow_to_cancel(release, cleaned), 0.01)
        assert cleaned == []  # answered before the cleanup ended
        assert len(asyncio.all_tasks()) == task_count + 1  # the cleanup goes on in the background
        release.set()
        while len(asyncio.all_tasks()) > task_count:
            await asyncio.sleep(0)
        return cleaned

    assert asyncio.run(scenario()) == ["closed"]


def test_a_call_that_answers_in_time_gives_its_result_or_its_error() -> None:
    async def answer() -> int:
        return 42

    async def refuse() -> int:
        raise LookupError("no such video")

    assert asyncio.run(within(answer(), 5)) == 42
    with pytest.raises(LookupError):
        asyncio.run(within(refuse(), 5))


def test_cancelling_the_caller_cancels_the_call() -> None:
    async def scenario() -> bool:
        started, never = asyncio.Event(), asyncio.Event()

        async def call() -> None:
            started.set()
            await never.wait()

        inner = asyncio.ensure_future(call())
        outer = asyncio.ensure_future(within(inner, 60))
        await started.wait()
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        with pytest.raises(asyncio.CancelledError):
            await inner
        return inner.cancelled()

    assert asyncio.run(scenario())
