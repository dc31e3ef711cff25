"""`ClaimRule.blocks` (Python) and the stores' claim condition (SQL) state the same rule.

Each case seeds a holder in a given state straight into the tables. Then
- the SQL condition is evaluated at an exact `now` bound into it (the edges: a lease ending
  exactly now, a claim exactly `window` old) and must agree with `ClaimRule.blocks`;
- the real claim, on the database's own clock, must be won exactly when the rule says the
  holder does not block (cases seeded relative to the database's now, with margins).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, text

from service.claim import FAILED, GENERATING, READY, ClaimRule, ClaimState, ClaimTicket, Holder, NewVideo
from service.stores.models import Video, VideoClaim
from service.stores.engine import make_engine
from service.stores import key_digest
from service.stores import postgres as pg_store
from service.stores import sqlite as sqlite_store
from tests.stores import SyncStore

RULE = ClaimRule(window=timedelta(hours=24), lease=timedelta(seconds=30))

# (status, claimed this long before now, lease ends this long after now or None, blocks?)
CASES = [
    (READY, timedelta(minutes=5), None, True),
    (READY, timedelta(hours=24), None, True),  # the window's edge is inclusive
    (READY, timedelta(hours=24, microseconds=1), None, False),
    (FAILED, timedelta(seconds=1), None, False),
    (GENERATING, timedelta(minutes=3), timedelta(seconds=10), True),
    (GENERATING, timedelta(minutes=3), timedelta(0), False),  # lease ends exactly now
    (GENERATING, timedelta(minutes=3), timedelta(seconds=-1), False),
    (GENERATING, timedelta(minutes=3), None, False),  # no lease at all: never blocks forever
    (GENERATING, timedelta(hours=25), timedelta(seconds=10), True),  # live lease: blocks past the window
]
EDGE_FREE = [case for case in CASES if case[1] not in (timedelta(hours=24), timedelta(hours=24, microseconds=1))
             and case[2] != timedelta(0)]


def seed(url: str, status: str, claimed_at: datetime, lease_expires_at: datetime | None) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            video_id = conn.execute(
                insert(Video).values(
                    tg_user_id=1, prompt="p", prompt_key="p", status=status, attempt=1,
                    created_at=claimed_at, updated_at=claimed_at,
                ).returning(Video.id)
            ).scalar_one()
            conn.execute(insert(VideoClaim).values(
                tg_user_id=1, key_digest=key_digest("p"), video_id=video_id, attempt=1, status=status,
                claimed_at=claimed_at, lease_expires_at=lease_expires_at,
            ))
    finally:
        engine.dispose()


def sql_blocks_at(url: str, now: datetime) -> bool:
    """The stores' condition, evaluated at `now` instead of the database's clock."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                condition = pg_store.FREE_TEMPLATE.format(now="CAST(:now AS timestamptz)").replace(
                    "%(window)s", "CAST(:window AS interval)")
                params = {"now": now, "window": RULE.window}
            else:
                condition = sqlite_store.FREE_TEMPLATE.format(now=":now", window_start=":window_start")
                params = {"now": _sqlite_text(now), "window_start": _sqlite_text(now - RULE.window)}
            return conn.execute(text(f"SELECT NOT {condition} FROM video_claims c"), params).scalar_one() == 1
    finally:
        engine.dispose()


def _sqlite_text(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def database_now(url: str) -> datetime:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                return conn.execute(text("SELECT clock_timestamp()")).scalar_one().astimezone(UTC)
            value = conn.execute(text(f"SELECT {sqlite_store.NOW}")).scalar_one()
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
    finally:
        engine.dispose()


@pytest.mark.parametrize(("status", "age", "lease_left", "expected"), CASES)
def test_sql_condition_and_python_rule_agree_at_the_edges(store: SyncStore, status, age, lease_left, expected) -> None:
    now = datetime(2025, 10, 15, 5, 32, 11, 123456, tzinfo=UTC)
    seed(store.url, status, now - age, None if lease_left is None else now + lease_left)
    state = ClaimState(status, 1, now - age, None if lease_left is None else now + lease_left)
    assert RULE.blocks(state, now) is expected
    assert sql_blocks_at(store.url, now) is expected


@pytest.mark.parametrize(("status", "age", "lease_left", "expected"), EDGE_FREE)
def test_the_claim_on_the_databases_clock_follows_the_rule(store: SyncStore, status, age, lease_left, expected) -> None:
    now = database_now(store.url)
    seed(store.url, status, now - age, None if lease_left is None else now + lease_left)
    outcome = store.claim(NewVideo(1, "p", "p"), RULE)
    assert isinstance(outcome, ClaimTicket) is not expected
    if expected:  # lost: the same round trip brought the holder back, and it blocks
        assert isinstance(outcome, Holder) and outcome.blocks and outcome.video.prompt_key == "p"
