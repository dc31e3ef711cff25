"""`service.deadlines.within`: the deadline does not wait for a slow cancellation.

The stand-in call behaves as psycopg does on a frozen server: cancelled, it keeps running its
cleanup (here until an event is set). The real case is tests/service/test_failures_outage.py.
On a live PostgreSQL: a claim stuck behind a lock is cancelled on the server at its deadline,
and callers queued beyond the pool wait no longer than their deadline and lose no slot.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import psycopg
import pytest

from service import ClaimRule, NewVideo
from service.deadlines import within
from service.prompt_key import prompt_key
from tests.service.failures import WAITING_CLAIMS_SQL, libpq
from tests.service.live import wait_until
from tests.stores import migrated_store

RULE = ClaimRule(window=timedelta(hours=24), lease=timedelta(seconds=30))


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


def _waiting_claims(conninfo: str) -> int:
    with psycopg.connect(conninfo, autocommit=True) as observer:
        return observer.execute(WAITING_CLAIMS_SQL).fetchone()[0]


def test_a_claim_stuck_behind_a_lock_answers_at_its_deadline_and_is_rolled_back_on_the_server(pg_url: str) -> None:
    """The statement timeout is 30 s here, so only the deadline can end the wait. The request
    answers at the deadline; the abandoned call, cancelled in the background, has the server
    cancel the statement. Were it left waiting, it would commit as soon as the lock went and
    hold the key with no worker."""
    conninfo = libpq(pg_url)
    with migrated_store(pg_url, request_timeout_seconds=30) as store, \
            psycopg.connect(conninfo) as locker:
        locker.execute("LOCK TABLE video_claims IN ACCESS EXCLUSIVE MODE")
        new = NewVideo(7, "stuck behind a lock", prompt_key("stuck behind a lock"))
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            store._runner.run(within(store._store.claim(new, RULE), 0.3))
        answered = time.monotonic() - started
        assert answered < 1.0, answered

        # The server drops the abandoned statement while the lock is still held...
        wait_until(lambda: _waiting_claims(conninfo) == 0, timeout=5, what="the abandoned claim to leave the server")
        locker.rollback()
        # ...so nothing commits once the lock is gone, and the store still answers.
        assert store.claim(new, RULE).attempt == 1
        with psycopg.connect(conninfo, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM videos").fetchone() == (1,)


def test_callers_queued_beyond_the_pool_give_up_at_their_deadline_and_lose_no_slot(pg_url: str) -> None:
    """Callers queue for a connection on the store's semaphore, not in psycopg's pool (whose
    wait is a task per caller), bounded by the deadline every store call runs under (`within`,
    as `Runtime.bounded` and the runner call it). With the only connection in use the next
    caller answers at its deadline; the waits it and nine more gave up on take no slot with
    them: once the connection is back, twenty callers on it all get their answer."""
    from service.settings import Settings
    from service.stores import open_store

    with migrated_store(pg_url):  # migrated; its own store is not used
        pass

    async def scenario() -> tuple[float, int, int]:
        store = open_store(Settings(database_url=pg_url, db_pool_size=1, db_max_overflow=0))
        await store.open()
        try:
            in_use, done = asyncio.Event(), asyncio.Event()

            async def keep(_cursor: object) -> None:  # the one connection, held until `done`
                in_use.set()
                await done.wait()

            holding = asyncio.create_task(store._execute(store._requests, "SELECT 1", {}, keep))
            await in_use.wait()
            started = time.monotonic()
            gave_up = await asyncio.gather(
                *(within(store.claim(NewVideo(2, f"queued {i}", prompt_key(f"queued {i}")), RULE), 0.5)
                  for i in range(10)), return_exceptions=True)
            waited = time.monotonic() - started
            done.set()
            await holding
            # wait_for: a lost slot fails here instead of hanging the suite
            answers = await asyncio.wait_for(asyncio.gather(
                *(store.claim(NewVideo(3, f"p{i}", prompt_key(f"p{i}")), RULE) for i in range(20))), 10)
            return waited, sum(isinstance(g, TimeoutError) for g in gave_up), sum(a.attempt == 1 for a in answers)
        finally:
            await store.close()

    waited, timed_out, won = asyncio.run(scenario())
    assert 0.4 < waited < 2.0, waited
    assert timed_out == 10
    assert won == 20
