"""`ClaimRule.blocks` (Python) and the upsert's WHERE (SQL) state the same rule.

Each case seeds a holder in a given state straight into the tables, then asks both: the
claim must be won exactly when the rule says the holder does not block.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert

from service.claim import FAILED, GENERATING, READY, ClaimRule, ClaimState, NewVideo
from service.models import Video, VideoClaim
from service.storage import SqlStore
from tests.service.clock import ManualClock

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
    (GENERATING, timedelta(hours=25), timedelta(seconds=10), False),
]


@pytest.mark.parametrize(("status", "age", "lease_left", "expected"), CASES)
def test_sql_and_python_agree(store: SqlStore, status, age, lease_left, expected) -> None:
    clock = ManualClock()
    claimed_at = clock.now - age
    lease_expires_at = None if lease_left is None else clock.now + lease_left
    with store.engine.begin() as conn:
        video_id = conn.execute(
            insert(Video).values(
                tg_user_id=1, prompt="p", prompt_key="p", status=status, attempt=1,
                created_at=claimed_at, updated_at=claimed_at,
            ).returning(Video.id)
        ).scalar_one()
        conn.execute(insert(VideoClaim).values(
            tg_user_id=1, prompt_key="p", video_id=video_id, attempt=1, status=status,
            claimed_at=claimed_at, lease_expires_at=lease_expires_at,
        ))

    assert RULE.blocks(ClaimState(status, 1, claimed_at, lease_expires_at), clock.now) is expected
    won = store.try_claim(NewVideo(1, "p", "p"), now=clock.now, rule=RULE)
    assert (won is None) is expected
