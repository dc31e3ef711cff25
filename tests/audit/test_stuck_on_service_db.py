"""Stuck claims on the service's own database: a long generation whose worker keeps renewing
its lease is not stuck; one whose worker went quiet for longer than the lease is."""

from __future__ import annotations

from datetime import timedelta

import audit
from audit.sources.base import Period
from service.claim import ClaimRule, NewVideo, claim_video
from service.storage import SqlStore, make_engine, migrate
from tests.service.clock import ManualClock

LEASE = timedelta(seconds=30)
RULE = ClaimRule(window=timedelta(hours=24), lease=LEASE)


def stuck_ids(db_url: str, as_of) -> list[int]:
    loaded = audit.load_database(db_url, period=Period())
    result = audit.run_audit(loaded.videos, as_of=as_of, lease=LEASE)
    return result.stuck_claims["id"].tolist()


def test_a_heartbeat_keeps_a_long_generation_off_the_stuck_list(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    store, clock = SqlStore(engine), ManualClock()
    try:
        alive = claim_video(store, RULE, NewVideo(1, "alive", "alive"), clock)
        dead = claim_video(store, RULE, NewVideo(1, "dead", "dead"), clock)
        for _ in range(12):  # two minutes of a 2-5 minute generation, a heartbeat every 10 s
            assert store.renew(alive, now=clock.advance(seconds=10), rule=RULE)
        assert stuck_ids(db_url, clock.now) == [dead.video_id]
        clock.advance(seconds=31)  # now the first worker goes quiet too
        assert stuck_ids(db_url, clock.now) == [alive.video_id, dead.video_id]
    finally:
        engine.dispose()
