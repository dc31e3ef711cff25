"""The callbacks' outbox on SQLite and a real PostgreSQL: every outcome path writes (or does
not write) its event in the outcome's own statement, and deliverers take rows one at a time.

Time passes by ageing the stored rows (`tests.stores.age`), never by sleeping.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa

from service import GenerationResult
from service.claim import ClaimRule, NewVideo, claim_video
from service.prompt_key import prompt_key
from service.stores.engine import make_engine
from service.stores.models import VideoCallback
from tests.stores import SyncStore, age

RULE = ClaimRule(window=timedelta(hours=24), lease=timedelta(seconds=30))
RESULT = GenerationResult("https://v.example/1.mp4", None, Decimal("4.00"))
HOOK = "https://hooks.example.com/done"
LEASE = timedelta(seconds=30)
DAY = timedelta(hours=24)


def request(prompt: str = "a lighthouse in a storm", callback_url: str | None = HOOK) -> NewVideo:
    return NewVideo(7, prompt, prompt_key(prompt), None, callback_url=callback_url)


def claim(store: SyncStore, req: NewVideo | None = None):  # type: ignore[no-untyped-def]
    return store._runner.run(claim_video(store._store, RULE, req or request()))


def rows(store: SyncStore) -> dict[int, dict]:
    engine = make_engine(store.url)
    try:
        with engine.connect() as conn:
            return {row.video_id: dict(row._mapping) for row in conn.execute(sa.select(VideoCallback))}
    finally:
        engine.dispose()


def test_a_callback_waits_with_its_claim_and_is_due_with_the_result_once(store: SyncStore) -> None:
    ticket = claim(store)
    assert store.callback_state(ticket.video_id).state == "pending"
    assert rows(store)[ticket.video_id]["event"] is None
    assert store.take_callbacks("t1", LEASE, 10) == []  # nothing to send while generating

    assert store.complete(ticket, RESULT)
    first = rows(store)[ticket.video_id]
    assert (first["state"], first["event"], first["video_url"]) == ("pending", "video.ready", RESULT.video_url)
    assert first["delivery_id"].startswith("msg_")
    assert store.complete(ticket, RESULT)  # the write retried after its answer was lost
    assert rows(store)[ticket.video_id]["delivery_id"] == first["delivery_id"]

    [due] = store.take_callbacks("t1", LEASE, 10)
    assert (due.video_id, due.event, due.delivery_id, due.attempts, due.tg_user_id) == (
        ticket.video_id, "video.ready", first["delivery_id"], 1, 7)
    assert store.take_callbacks("t2", LEASE, 10) == []  # held by t1
    assert store.finish_callback(due, "t2", ok=True, error=None, delay=timedelta(0), give_up=DAY) is None
    assert store.finish_callback(due, "t1", ok=True, error=None, delay=timedelta(0), give_up=DAY) == "delivered"
    state = store.callback_state(ticket.video_id)
    assert (state.state, state.attempts, state.event) == ("delivered", 1, "video.ready")
    assert state.delivered_at is not None
    assert store.take_callbacks("t3", LEASE, 10) == []


def test_no_callback_url_no_row(store: SyncStore) -> None:
    ticket = claim(store, request(callback_url=None))
    assert store.complete(ticket, RESULT)
    assert rows(store) == {} and store.callback_state(ticket.video_id) is None


def test_a_failure_reports_once_and_a_retry_keeps_its_delivery_id(store: SyncStore) -> None:
    ticket = claim(store)
    store.fail(ticket, "provider said no", None)
    store.fail(ticket, "provider said no", None)  # repeated write: no second event
    [due] = store.take_callbacks("t1", LEASE, 10)
    assert (due.event, due.error) == ("video.failed", "provider said no")
    assert store.finish_callback(due, "t1", ok=False, error="HTTP 503", delay=timedelta(seconds=60),
                                 give_up=DAY) == "pending"
    assert store.take_callbacks("t1", LEASE, 10) == []  # not due for a minute
    age(store.url, seconds=61)
    [again] = store.take_callbacks("t2", LEASE, 10)
    assert (again.delivery_id, again.attempts) == (due.delivery_id, 2)
    state = store.callback_state(ticket.video_id)
    assert (state.state, state.last_error) == ("pending", "HTTP 503")


def test_given_up_after_the_give_up_time(store: SyncStore) -> None:
    ticket = claim(store)
    assert store.complete(ticket, RESULT)
    [due] = store.take_callbacks("t1", LEASE, 10)
    age(store.url, hours=23, minutes=59)
    # The next try would come after the day is over: given up now.
    assert store.finish_callback(due, "t1", ok=False, error="timed out", delay=timedelta(minutes=2),
                                 give_up=DAY) == "failed"
    assert store.callback_state(ticket.video_id).state == "failed"
    age(store.url, hours=1)
    assert store.take_callbacks("t1", LEASE, 10) == []


def test_a_dead_deliverers_lease_expires_and_the_row_is_taken_again(store: SyncStore) -> None:
    ticket = claim(store)
    assert store.complete(ticket, RESULT)
    [due] = store.take_callbacks("dead", LEASE, 10)
    assert store.take_callbacks("t2", LEASE, 10) == []
    age(store.url, seconds=31)
    [again] = store.take_callbacks("t2", LEASE, 10)
    assert (again.delivery_id, again.attempts) == (due.delivery_id, 2)


def test_a_takeover_moves_the_callback_and_the_superseded_attempt_never_reports(store: SyncStore) -> None:
    first = claim(store)
    age(store.url, seconds=31)  # its worker is gone: the lease ran out
    second = claim(store, request(callback_url=None))  # e.g. the sweep adopting its job
    assert second.attempt == 2
    assert set(rows(store)) == {second.video_id}
    assert rows(store)[second.video_id]["url"] == HOOK
    assert not store.complete(first, RESULT)  # the late result is rejected: no event
    store.fail(first, "late", None)
    assert store.take_callbacks("t1", LEASE, 10) == []
    assert store.complete(second, RESULT)
    [due] = store.take_callbacks("t1", LEASE, 10)
    assert (due.video_id, due.event) == (second.video_id, "video.ready")


def test_a_takeover_with_its_own_url_uses_it(store: SyncStore) -> None:
    claim(store)
    age(store.url, seconds=31)
    second = claim(store, request(callback_url="https://other.example.com/x"))
    assert {k: v["url"] for k, v in rows(store).items()} == {second.video_id: "https://other.example.com/x"}


def test_the_sweeps_abandon_reports_failed_and_a_late_result_replaces_it(store: SyncStore) -> None:
    ticket = claim(store)
    age(store.url, seconds=31)
    assert store.expire_abandoned() == [ticket.video_id]
    row = rows(store)[ticket.video_id]
    assert (row["state"], row["event"]) == ("pending", "video.failed")
    store.fail(ticket, "the worker's own word", None)  # already reported by the sweep
    assert rows(store)[ticket.video_id]["delivery_id"] == row["delivery_id"]
    # The worker was only cut off: its result arrives and nobody took over. The failure was
    # not sent yet, so only the result is.
    assert store.complete(ticket, RESULT)
    [due] = store.take_callbacks("t1", LEASE, 10)
    assert due.event == "video.ready" and due.delivery_id != row["delivery_id"]


def test_an_event_replaced_while_being_sent_goes_out_after_it(store: SyncStore) -> None:
    ticket = claim(store)
    age(store.url, seconds=31)
    store.expire_abandoned()
    [failed] = store.take_callbacks("t1", LEASE, 10)
    assert store.complete(ticket, RESULT)  # while the failure is being sent
    assert store.take_callbacks("t2", LEASE, 10) == []  # not both at once
    assert store.finish_callback(failed, "t1", ok=True, error=None, delay=timedelta(0), give_up=DAY) is None
    [ready] = store.take_callbacks("t2", LEASE, 10)
    assert (ready.event, ready.attempts) == ("video.ready", 1)
