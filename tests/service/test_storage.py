"""The claim's storage primitives on SQLite and a real PostgreSQL, with a hand-moved clock."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from service.claim import FAILED, GENERATING, READY, ClaimRule, NewVideo, claim_video
from service.errors import DuplicateRequest, VideoNotFound
from service.generators import GenerationResult
from service.models import Video, VideoClaim
from service.prompt_key import prompt_key
from service.storage import SqlStore
from tests.service.clock import ManualClock

RULE = ClaimRule(window=timedelta(hours=24), lease=timedelta(seconds=30))
RESULT = GenerationResult("https://v.example/1.mp4", None, Decimal("4.00"))


def request(prompt: str = "Smart wallets as digital assistants...", user: int = 7) -> NewVideo:
    return NewVideo(user, prompt, prompt_key(prompt))


def count(store: SqlStore, model, **where) -> int:
    query = select(func.count()).select_from(model)
    for column, value in where.items():
        query = query.where(getattr(model, column) == value)
    with store.engine.connect() as conn:
        return conn.execute(query).scalar_one()


def test_first_request_wins_and_writes_one_generating_row(store: SqlStore) -> None:
    clock = ManualClock()
    ticket = claim_video(store, RULE, request(), clock)
    video = store.get(ticket.video_id)
    assert (video.status, video.attempt, video.created_at) == (GENERATING, 1, clock.now)
    assert video.created_at.tzinfo is not None and video.created_at.utcoffset() == timedelta(0)
    assert count(store, Video) == 1 and count(store, VideoClaim) == 1


@pytest.mark.parametrize(
    "variant",
    ["smart wallets as digital assistants", "SMART  wallets\tas digital assistants!",
     "  Smart wallets as digital assistants…", "Smart wallets as digital assistants ?!"],
)
def test_prompt_variants_are_duplicates_and_write_nothing(store: SqlStore, variant: str) -> None:
    clock = ManualClock()
    first = claim_video(store, RULE, request(), clock)
    clock.advance(seconds=20)  # inside the lease: the first worker is still generating
    with pytest.raises(DuplicateRequest) as raised:
        claim_video(store, RULE, request(variant), clock)
    assert raised.value.existing.id == first.video_id
    assert count(store, Video) == 1


def test_ready_video_blocks_inside_the_window_and_not_after(store: SqlStore) -> None:
    clock = ManualClock()
    first = claim_video(store, RULE, request(), clock)
    assert store.complete(first, RESULT, now=clock.advance(minutes=4))
    clock.advance(hours=23)
    with pytest.raises(DuplicateRequest) as raised:
        claim_video(store, RULE, request(), clock)
    assert raised.value.existing.status == READY
    assert raised.value.existing.video_url == RESULT.video_url
    clock.now = first.created_at + RULE.window + timedelta(microseconds=1)
    second = claim_video(store, RULE, request(), clock)
    assert (second.video_id != first.video_id, second.attempt) == (True, 2)
    assert store.get(first.video_id).status == READY  # history is kept, not overwritten


def test_window_edge_is_inclusive(store: SqlStore) -> None:
    """Exactly `window` after the original is still a duplicate (the audit's `<= window`)."""
    clock = ManualClock()
    first = claim_video(store, RULE, request(), clock)
    store.complete(first, RESULT, now=clock.now)
    clock.now = first.created_at + RULE.window
    with pytest.raises(DuplicateRequest):
        claim_video(store, RULE, request(), clock)


def test_failed_video_never_blocks_a_retry(store: SqlStore) -> None:
    clock = ManualClock()
    first = claim_video(store, RULE, request(), clock)
    store.fail(first, "provider said no", now=clock.advance(seconds=5))
    retry = claim_video(store, RULE, request(), clock)
    assert retry.attempt == 2
    assert [store.get(first.video_id).status, store.get(retry.video_id).status] == [FAILED, GENERATING]
    assert store.get(first.video_id).error == "provider said no"


def test_another_users_video_never_blocks(store: SqlStore) -> None:
    clock = ManualClock()
    claim_video(store, RULE, request(user=1), clock)
    other = claim_video(store, RULE, request(user=2), clock)
    assert other.attempt == 1 and count(store, Video) == 2


def test_a_different_prompt_is_not_a_duplicate(store: SqlStore) -> None:
    clock = ManualClock()
    claim_video(store, RULE, request("Smart wallets as digital assistants"), clock)
    claim_video(store, RULE, request("Smart wallets as digital accountants"), clock)
    assert count(store, Video) == 2


def test_expired_lease_is_taken_over_and_the_zombie_is_fenced_off(store: SqlStore) -> None:
    clock = ManualClock()
    zombie = claim_video(store, RULE, request(), clock)
    clock.advance(seconds=10)
    assert store.renew(zombie, now=clock.now, rule=RULE)  # alive: lease now ends at +40 s
    clock.advance(seconds=29)
    with pytest.raises(DuplicateRequest):  # still leased
        claim_video(store, RULE, request(), clock)

    clock.advance(seconds=2)  # +41 s: the worker stopped renewing
    newer = claim_video(store, RULE, request(), clock)
    assert newer.attempt == 2
    old_row = store.get(zombie.video_id)
    assert old_row.status == FAILED and "superseded by attempt 2" in (old_row.error or "")

    # The zombie wakes up: its heartbeat and its result are both refused.
    assert not store.renew(zombie, now=clock.now, rule=RULE)
    assert not store.complete(zombie, RESULT, now=clock.advance(seconds=1))
    late = store.get(zombie.video_id)
    assert (late.status, late.video_url, late.cost_usd) == (FAILED, None, Decimal("4.00"))

    # The newer attempt's result stands.
    newer_result = GenerationResult("https://v.example/2.mp4", None, Decimal("4.00"))
    assert store.complete(newer, newer_result, now=clock.advance(seconds=1))
    assert store.get(newer.video_id).video_url == newer_result.video_url
    with pytest.raises(DuplicateRequest) as raised:
        claim_video(store, RULE, request(), clock)
    assert raised.value.existing.id == newer.video_id


def test_sweep_marks_only_abandoned_claims_failed(store: SqlStore) -> None:
    clock = ManualClock()
    abandoned = claim_video(store, RULE, request("abandoned"), clock)
    clock.advance(seconds=20)
    alive = claim_video(store, RULE, request("alive"), clock)
    finished = claim_video(store, RULE, request("finished"), clock)
    store.complete(finished, RESULT, now=clock.now)
    clock.advance(seconds=15)  # abandoned's lease (30 s) ran out; alive's did not
    assert store.expire_abandoned(now=clock.now) == [abandoned.video_id]
    statuses = [store.get(t.video_id).status for t in (abandoned, alive, finished)]
    assert statuses == [FAILED, GENERATING, READY]
    assert store.expire_abandoned(now=clock.now) == []
    # Swept means free: the user can retry at once.
    assert claim_video(store, RULE, request("abandoned"), clock).attempt == 2


def test_fail_after_takeover_does_not_free_the_newer_claim(store: SqlStore) -> None:
    clock = ManualClock()
    zombie = claim_video(store, RULE, request(), clock)
    clock.advance(seconds=31)
    newer = claim_video(store, RULE, request(), clock)
    store.fail(zombie, "timed out", now=clock.now)
    with pytest.raises(DuplicateRequest) as raised:
        claim_video(store, RULE, request(), clock)
    assert raised.value.existing.id == newer.video_id


def test_get_unknown_video_raises_not_found(store: SqlStore) -> None:
    with pytest.raises(VideoNotFound):
        store.get(12345)


def test_migrations_create_exactly_the_models_schema(store: SqlStore) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from service.models import Base

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
