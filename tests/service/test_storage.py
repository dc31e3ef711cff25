"""The claim's storage primitives on SQLite and a real PostgreSQL, on the database's clock.

Time passes by ageing the stored rows (`tests.stores.age`), never by sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from service import DuplicateRequest, GenerationResult, VideoNotFound
from service.claim import FAILED, GENERATING, READY, ClaimRule, NewVideo, claim_video
from service.stores.models import Video, VideoClaim
from service.prompt_key import prompt_key
from service.stores.engine import make_engine
from tests.stores import SyncStore, age, migrated_store

RULE = ClaimRule(window=timedelta(hours=24), lease=timedelta(seconds=30))
RESULT = GenerationResult("https://v.example/1.mp4", None, Decimal("4.00"))


def request(prompt: str = "Smart wallets as digital assistants...", user: int = 7) -> NewVideo:
    return NewVideo(user, prompt, prompt_key(prompt))


def claim(store: SyncStore, req: NewVideo | None = None, rule: ClaimRule = RULE):  # type: ignore[no-untyped-def]
    return store._runner.run(claim_video(store._store, rule, req or request()))


def count(store: SyncStore, model, **where) -> int:
    engine = make_engine(store.url)
    query = select(func.count()).select_from(model)
    for column, value in where.items():
        query = query.where(getattr(model, column) == value)
    try:
        with engine.connect() as conn:
            return conn.execute(query).scalar_one()
    finally:
        engine.dispose()


def test_first_request_wins_and_writes_one_generating_row(store: SyncStore) -> None:
    before = datetime.now(UTC)
    ticket = claim(store)
    video = store.get(ticket.video_id)
    assert (video.status, video.attempt, video.created_at) == (GENERATING, 1, ticket.created_at)
    assert video.created_at.utcoffset() == timedelta(0)
    # The database's clock, and this machine's agrees with it to well within a minute.
    assert abs(video.created_at - before) < timedelta(minutes=1)
    assert count(store, Video) == 1 and count(store, VideoClaim) == 1


@pytest.mark.parametrize(
    "variant",
    ["smart wallets as digital assistants", "SMART  wallets\tas digital assistants!",
     "  Smart wallets as digital assistants…", "Smart wallets as digital assistants ?!"],
)
def test_prompt_variants_are_duplicates_and_write_nothing(store: SyncStore, variant: str) -> None:
    first = claim(store)
    age(store.url, seconds=20)  # inside the lease: the first worker is still generating
    with pytest.raises(DuplicateRequest) as raised:
        claim(store, request(variant))
    assert raised.value.existing.id == first.video_id
    assert count(store, Video) == 1


def test_ready_video_blocks_inside_the_window_and_not_after(store: SyncStore) -> None:
    first = claim(store)
    assert store.complete(first, RESULT)
    age(store.url, hours=23, minutes=59)
    with pytest.raises(DuplicateRequest) as raised:
        claim(store)
    assert raised.value.existing.status == READY
    assert raised.value.existing.video_url == RESULT.video_url
    age(store.url, minutes=1, seconds=1)
    second = claim(store)
    assert (second.video_id != first.video_id, second.attempt) == (True, 2)
    assert store.get(first.video_id).status == READY  # history is kept, not overwritten


def test_a_live_generation_blocks_whatever_the_window_says(store: SyncStore) -> None:
    """A window shorter than a generation must not let a second payment in while the first runs."""
    short = ClaimRule(window=timedelta(seconds=20), lease=timedelta(seconds=30))
    first = claim(store, rule=short)
    age(store.url, seconds=25)  # past the window, inside the lease
    with pytest.raises(DuplicateRequest):
        claim(store, rule=short)
    assert store.renew([first], short.lease) == {first.video_id}
    age(store.url, seconds=29)
    with pytest.raises(DuplicateRequest):
        claim(store, rule=short)


def test_failed_video_never_blocks_a_retry(store: SyncStore) -> None:
    first = claim(store)
    store.fail(first, "provider said no", Decimal("4.00"))
    retry = claim(store)
    assert retry.attempt == 2
    assert [store.get(first.video_id).status, store.get(retry.video_id).status] == [FAILED, GENERATING]
    failed = store.get(first.video_id)
    assert (failed.error, failed.cost_usd) == ("provider said no", Decimal("4.00"))


def test_another_users_video_never_blocks(store: SyncStore) -> None:
    claim(store, request(user=1))
    other = claim(store, request(user=2))
    assert other.attempt == 1 and count(store, Video) == 2


def test_a_different_prompt_is_not_a_duplicate(store: SyncStore) -> None:
    claim(store, request("Smart wallets as digital assistants"))
    claim(store, request("Smart wallets as digital accountants"))
    assert count(store, Video) == 2


def test_a_prompt_of_two_thousand_cjk_characters_can_be_claimed(store: SyncStore) -> None:
    """The claim is keyed on a digest: a key far past a btree entry's ~2.7 kB still fits."""
    long_prompt = "智能钱包作为数字助理" * 200
    ticket = claim(store, request(long_prompt))
    with pytest.raises(DuplicateRequest):
        claim(store, request(long_prompt + "!"))
    assert store.get(ticket.video_id).prompt_key == prompt_key(long_prompt)


def test_expired_lease_is_taken_over_and_the_zombie_is_fenced_off(store: SyncStore) -> None:
    zombie = claim(store)
    age(store.url, seconds=10)
    assert store.renew([zombie], RULE.lease) == {zombie.video_id}  # alive: the lease now ends 30 s on
    age(store.url, seconds=29)
    with pytest.raises(DuplicateRequest):  # still leased
        claim(store)

    age(store.url, seconds=2)  # the worker stopped renewing
    newer = claim(store)
    assert newer.attempt == 2
    old_row = store.get(zombie.video_id)
    assert old_row.status == FAILED and "superseded by attempt 2" in (old_row.error or "")

    # The zombie wakes up: its heartbeat and its result are both refused, its cost is kept.
    assert store.renew([zombie], RULE.lease) == set()
    assert not store.complete(zombie, RESULT)
    late = store.get(zombie.video_id)
    assert (late.status, late.video_url, late.cost_usd) == (FAILED, None, Decimal("4.00"))

    newer_result = GenerationResult("https://v.example/2.mp4", None, Decimal("4.00"))
    assert store.complete(newer, newer_result)
    assert store.get(newer.video_id).video_url == newer_result.video_url
    with pytest.raises(DuplicateRequest) as raised:
        claim(store)
    assert raised.value.existing.id == newer.video_id


def test_one_heartbeat_renews_every_lease_and_names_the_lost_ones(store: SyncStore) -> None:
    tickets = [claim(store, request(f"prompt {i}")) for i in range(5)]
    store.fail(tickets[2], "boom")
    assert store.renew(tickets, RULE.lease) == {t.video_id for i, t in enumerate(tickets) if i != 2}


def test_sweep_marks_only_abandoned_claims_failed(store: SyncStore) -> None:
    abandoned = claim(store, request("abandoned"))
    age(store.url, seconds=20)
    alive = claim(store, request("alive"))
    finished = claim(store, request("finished"))
    store.complete(finished, RESULT)
    age(store.url, seconds=15)  # abandoned's lease (30 s) ran out; alive's did not
    assert store.expire_abandoned() == [abandoned.video_id]
    statuses = [store.get(t.video_id).status for t in (abandoned, alive, finished)]
    assert statuses == [FAILED, GENERATING, READY]
    assert store.expire_abandoned() == []
    # Swept means free: the user can retry at once.
    assert claim(store, request("abandoned")).attempt == 2


def test_a_late_result_nobody_superseded_is_accepted_after_the_sweep(store: SyncStore) -> None:
    """An outage longer than the lease: the sweep gave up on the claim, then the paid result came."""
    ticket = claim(store)
    age(store.url, seconds=31)
    assert store.expire_abandoned() == [ticket.video_id]
    assert store.complete(ticket, RESULT)
    video = store.get(ticket.video_id)
    assert (video.status, video.video_url, video.error) == (READY, RESULT.video_url, None)
    with pytest.raises(DuplicateRequest):
        claim(store)


def test_a_heartbeat_takes_back_a_swept_claim_nobody_took_over(store: SyncStore) -> None:
    ticket = claim(store)
    age(store.url, seconds=31)
    store.expire_abandoned()
    assert store.renew([ticket], RULE.lease) == {ticket.video_id}
    assert store.get(ticket.video_id).status == GENERATING
    with pytest.raises(DuplicateRequest):
        claim(store)


def test_a_heartbeat_never_revives_a_claim_its_worker_failed(store: SyncStore) -> None:
    ticket = claim(store)
    store.fail(ticket, "provider said no")
    assert store.renew([ticket], RULE.lease) == set()
    assert claim(store).attempt == 2


def test_fail_after_takeover_does_not_free_the_newer_claim(store: SyncStore) -> None:
    zombie = claim(store)
    age(store.url, seconds=31)
    newer = claim(store)
    store.fail(zombie, "timed out", Decimal("4.00"))
    assert store.get(zombie.video_id).cost_usd == Decimal("4.00")  # the money it spent is recorded
    with pytest.raises(DuplicateRequest) as raised:
        claim(store)
    assert raised.value.existing.id == newer.video_id


def test_a_recorded_provider_job_is_handed_to_the_takeover(store: SyncStore) -> None:
    dead = claim(store)
    assert store.record_job(dead, "job-abc")
    age(store.url, seconds=31)
    newer = claim(store)
    assert newer.adopt_job_id == "job-abc"
    assert not store.record_job(dead, "job-late")  # fenced: the dead attempt records nothing now


def test_get_unknown_video_raises_not_found(store: SyncStore) -> None:
    with pytest.raises(VideoNotFound):
        store.get(12345)


def test_migrations_create_exactly_the_models_schema(store: SyncStore) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from service.stores.models import Base

    engine = make_engine(store.url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_a_new_claim_does_not_read_the_users_history(pg_url: str) -> None:
    # A takeover fences off the user's earlier attempts still generating, found through the
    # partial index of generating videos; a first attempt has none and reads none of them.
    import psycopg

    from service.stores.base import SUPERSEDED_ERROR, key_digest
    from service.stores.postgres import CLAIM_SQL

    with migrated_store(pg_url):
        pass
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("INSERT INTO videos (tg_user_id, prompt, enhanced_prompt, status, prompt_key, attempt,"
                     " created_at, updated_at) SELECT 7, 'p' || g, 'p' || g,"
                     " CASE WHEN g % 50 = 0 THEN 'generating' ELSE 'ready' END, 'p' || g, 1, now(), now()"
                     " FROM generate_series(1, 5000) g")
        conn.execute("ANALYZE videos")
        params = {"user": 7, "digest": key_digest("new"), "key": "new", "prompt": "new", "category": None,
                  "lease": RULE.lease, "window": RULE.window, "seq": "videos_id_seq", "superseded": SUPERSEDED_ERROR,
                  "until": None, "params": None, "callback_url": None}
        plan = [row[0] for row in conn.execute("EXPLAIN (ANALYZE, COSTS OFF) " + CLAIM_SQL, params)]
    fence = [line for line in plan if " on videos s" in line and "Update" not in line]
    assert len(fence) == 1 and "ix_videos_generating_user" in fence[0] and "never executed" in fence[0], plan
    # The callbacks' CTEs scan no callback row for a first attempt without a callback_url.
    assert not [line for line in plan if "Scan on video_callbacks" in line and "never executed" not in line], plan


@pytest.mark.parametrize("order", ["late_cost_first", "adoption_first"])
def test_a_job_found_at_the_provider_is_paid_once_whoever_writes_first(store: SyncStore, order: str) -> None:
    """An attempt asks for a job and is paused before it records the id; its lease runs out and
    a retry takes the claim over with only the recovery point, then finds the job at the
    provider. The paused attempt wakes, records the job on its own row and delivers its result
    late. One job, one bill: its cost ends on one row, in either order (nemesis seed 7 found the
    first order recorded twice)."""
    paused = claim(store)
    assert store.request_job(paused)
    age(store.url, seconds=31)
    successor = claim(store)
    assert successor.attempt == 2 and successor.adopt_job_id is None and successor.adopt_requested_at is not None

    def paused_wakes() -> None:
        assert not store.record_job(paused, "job-1")  # on its own row; the claim is gone
        assert not store.complete(paused, RESULT)  # a late result: refused, its money kept for now

    if order == "late_cost_first":
        paused_wakes()
        assert store.record_job(successor, "job-1")  # found by the recovery point's search
    else:
        assert store.record_job(successor, "job-1")
        paused_wakes()
    assert store.complete(successor, RESULT)
    costs = {video_id: store.get(video_id).cost_usd for video_id in (paused.video_id, successor.video_id)}
    assert costs == {paused.video_id: None, successor.video_id: Decimal("4.00")}
