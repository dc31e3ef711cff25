"""Stuck claims on the service's own database: a long generation whose worker keeps renewing
its lease is not stuck; one whose worker went quiet for longer than the lease is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import audit
from audit.sources.base import Period
from service.claim import ClaimRule, NewVideo
from tests.stores import age, migrated_store

LEASE = timedelta(seconds=30)
RULE = ClaimRule(window=timedelta(hours=24), lease=LEASE)


def stuck_ids(db_url: str) -> list[int]:
    loaded = audit.load_database(db_url, period=Period())
    # The store writes the database's time, which is this machine's: the audit's as-of is now.
    result = audit.run_audit(loaded.videos, as_of=datetime.now(UTC), lease=LEASE)
    return result.stuck_claims["id"].tolist()


def test_a_heartbeat_keeps_a_long_generation_off_the_stuck_list(db_url: str) -> None:
    with migrated_store(db_url) as store:
        alive = store.claim(NewVideo(1, "alive", "alive"), RULE)
        dead = store.claim(NewVideo(1, "dead", "dead"), RULE)
        for _ in range(12):  # two minutes of a 2-5 minute generation, a heartbeat every 10 s
            age(db_url, seconds=10)
            assert store.renew([alive], LEASE) == {alive.video_id}
        assert stuck_ids(db_url) == [dead.video_id]
        age(db_url, seconds=31)  # now the first worker goes quiet too
        assert stuck_ids(db_url) == [alive.video_id, dead.video_id]
