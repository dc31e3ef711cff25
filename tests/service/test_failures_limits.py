"""Issue 7, items 2 and 4: bounded work and reserved capacity, reproduced against real services.

- A burst of concurrent `/create` on a busy key cannot starve the heartbeats of another
  key's generation (a one-second lease): no takeover, every attempt stays 1.
- A full backlog answers 429 with Retry-After before claiming; a duplicate still gets 409.
- SQLite: while another process holds the write lock, reads and `/healthz` answer at once
  and `/create` answers 503 within the bound.
- The sweep's query is answered from the partial index on live claims.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
from sqlalchemy.engine import make_url

from service.stores.models import Video, VideoClaim
from service.stores import postgres as pg_store
from service.stores import sqlite as sqlite_store
from tests.service.app_client import running_app
from tests.service.failures import WAITING_CLAIMS_SQL, attempts, count, create, libpq, video
from tests.service.live import live_service, wait_until
from tests.stores import migrated_store

BURST = 200


async def _burst(url: str, bodies: list[dict]) -> Counter:
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        answers = await asyncio.gather(*(client.post(f"{url}/create", json=body) for body in bodies))
    return Counter(a.status_code for a in answers)


def starved_for(observer: psycopg.Connection, connections: int, seconds: float) -> bool:
    """True once `connections` claims are stuck on the lock, the oldest for `seconds`."""
    waiting, longest = observer.execute(WAITING_CLAIMS_SQL).fetchone()
    return waiting >= connections and float(longest) >= seconds


def test_a_burst_on_a_busy_key_never_starves_another_key_s_heartbeats(pg_url: str, tmp_path) -> None:
    """Before: heartbeats shared the request pool; 80 concurrent `/create` on a busy key
    exhausted it, two heartbeats failed and another process took the key over.

    Here the busy key is free (its first generation failed), so every `/create` on it goes to
    the conditional upsert, and its claim row is locked (another session's SELECT … FOR UPDATE):
    each of them holds one of `starved`'s request connections while it waits, and its request
    pool is exhausted for three of its one-second leases, with 200 requests queued. Its
    renewals have their own connections, so `rescuer`, asked for the other key the whole time,
    never finds that key's lease expired. On f3943d3 the second process took it over (one 202
    among 97 probes)."""
    lease = 1.0  # a heartbeat every third of a second
    pool = {"db_pool_size": 2, "db_max_overflow": 2}
    with (
        live_service(pg_url, tmp_path, lease_seconds=lease, sim_seconds=6, **pool) as starved,
        live_service(pg_url, tmp_path, lease_seconds=30, sim_seconds=0.05, sim_failure_rate=1) as rescuer,
    ):
        other = create(starved.url, "another key", user=2).json()
        busy = create(rescuer.url, "the busy key", user=1).json()
        wait_until(lambda: video(rescuer.url, busy["video_id"])["status"] == "failed", what="the busy key to free up")
        with (
            psycopg.connect(libpq(pg_url)) as locker,
            psycopg.connect(libpq(pg_url), autocommit=True) as observer,
            ThreadPoolExecutor(1) as background,
        ):
            locker.execute("SELECT 1 FROM video_claims WHERE tg_user_id = 1 FOR UPDATE")
            burst = background.submit(asyncio.run, _burst(starved.url, [{"tg_user_id": 1, "prompt": "the busy key"}] * BURST))
            probes = Counter()
            deadline = time.monotonic() + 60
            while not starved_for(observer, connections=4, seconds=3 * lease):
                assert time.monotonic() < deadline, "the burst never queued on the locked row"
                probes[create(rescuer.url, "another key", user=2).status_code] += 1
            locker.commit()
            codes = burst.result(timeout=60)
        print(f"burst {dict(codes)}, takeover probes {dict(probes)}")
        assert probes[409] >= 1 and set(probes) == {409}, probes
        # Once the row is free again, one of the burst retries the failed key; the rest are its duplicates.
        assert codes[202] == 1 and set(codes) <= {202, 409, 503}, codes
        wait_until(lambda: video(starved.url, other["video_id"])["status"] != "generating", what="the other key")
        assert video(starved.url, other["video_id"])["status"] == "ready"
        stats = starved.stats()
        assert (stats["submitted"], stats["lost"]) == (2, 0)
        assert "heartbeat" not in starved.log_path.read_text()  # not one renewal failed
    assert attempts(pg_url) == [1, 2]  # the other key never taken over; the failed key retried once


def test_a_full_backlog_answers_429_before_claiming_and_a_duplicate_still_409(db_url: str) -> None:
    """Before: the queue was unbounded (3,000 x 202 behind 4 running generations, each queued
    user holding a claim). Now past max_concurrent + max_queued, /create is refused first.
    On f3943d3 the 4th got 202."""
    with running_app(db_url, max_concurrent_generations=1, max_queued_generations=2, sim_seconds="600") as client:
        admitted = [client.post("/create", json={"tg_user_id": u, "prompt": f"video {u}"}) for u in (1, 2, 3)]
        assert [a.status_code for a in admitted] == [202, 202, 202]

        refused = client.post("/create", json={"tg_user_id": 4, "prompt": "video 4"})
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert "nothing was claimed" in refused.json()["detail"]
        assert count(db_url, VideoClaim, tg_user_id=4) == 0 and count(db_url, Video, tg_user_id=4) == 0

        queued = admitted[2].json()
        duplicate = client.post("/create", json={"tg_user_id": 3, "prompt": "Video 3!"})
        assert (duplicate.status_code, duplicate.json()["video_id"]) == (409, queued["video_id"])
        stats = client.get("/stats").json()
        assert (stats["submitted"], stats["generations_started"], stats["backlog"]) == (3, 1, 3)
    assert count(db_url, Video) == 3 and count(db_url, VideoClaim) == 3


def timed(call):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


def test_sqlite_reads_do_not_wait_for_another_process_s_write_lock(sqlite_url: str, tmp_path) -> None:
    """Before: reads and /healthz opened BEGIN IMMEDIATE and waited for writers (5.7 s).
    Now they read beside the writer (WAL); only /create waits, and no longer than the bound.
    On f3943d3 /healthz had not answered after 30 s.
    Found here: the claim still took the lock once it was released, after its 503, and
    committed a claim nobody generated; the store now rolls back a claim past its deadline."""
    bound = 2.0
    with live_service(sqlite_url, tmp_path, request_timeout_seconds=bound, sim_seconds=0) as service:
        done = create(service.url, "before the lock").json()
        wait_until(lambda: video(service.url, done["video_id"])["status"] == "ready", what="a first video")
        holder = sqlite3.connect(make_url(sqlite_url).database, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process's writer, holding the lock
            health, health_s = timed(lambda: httpx.get(f"{service.url}/healthz", timeout=30))
            read, read_s = timed(lambda: httpx.get(f"{service.url}/videos/{done['video_id']}", timeout=30))
            claim, claim_s = timed(lambda: create(service.url, "while locked"))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        print({"healthz": round(health_s, 3), "video": round(read_s, 3), "create": round(claim_s, 3)})
        assert (health.status_code, read.status_code) == (200, 200)
        assert read.json()["status"] == "ready"
        # A read that waited for the lock would take the whole busy timeout (= the bound).
        assert health_s < bound / 2 and read_s < bound / 2
        assert claim.status_code == 503 and int(claim.headers["retry-after"]) > 0, claim.text
        assert claim_s < bound + 3
        # The claim that got the lock after its request had given up was rolled back, not
        # left behind to block the key for a lease with nobody generating it.
        assert count(sqlite_url, VideoClaim) == 1

        assert create(service.url, "while locked").status_code == 202  # the lock is gone
    assert count(sqlite_url, Video, prompt="while locked") == 1


def test_the_sweep_reads_the_partial_index_on_postgres(pg_url: str) -> None:
    """Before: the sweep scanned the whole claims table every lease in every process (134 ms
    at 1 M claims). 100,000 finished claims and 100 live ones: the plan reads the index."""
    with migrated_store(pg_url):
        pass
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        conn.execute("""
            INSERT INTO video_claims (tg_user_id, key_digest, attempt, status, claimed_at, lease_expires_at)
            SELECT n, sha256(n::text::bytea), 1, CASE WHEN n % 1000 = 0 THEN 'generating' ELSE 'ready' END,
                   clock_timestamp(), CASE WHEN n % 1000 = 0 THEN clock_timestamp() END
              FROM generate_series(1, 100000) AS n""")
        conn.execute("ANALYZE video_claims")
        plans = ["\n".join(row[0] for row in conn.execute("EXPLAIN " + sql, params).fetchall()) for sql, params in (
            (pg_store.SWEEP_SQL, {"error": "abandoned", "mine": [1, 2]}),
            (pg_store.ADOPTABLE_SQL, {"limit": 16, "mine": [1, 2]}))]
    for plan in plans:  # the sweep, and its search for abandoned claims with a job to adopt
        assert "ix_claims_generating_lease" in plan, plan
        assert "Seq Scan on video_claims" not in plan, plan


def test_the_sweep_reads_the_partial_index_on_sqlite(sqlite_url: str) -> None:
    with migrated_store(sqlite_url):
        pass
    conn = sqlite3.connect(make_url(sqlite_url).database)
    try:
        plans = [" | ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
                 for sql, params in ((sqlite_store.SWEEP_SQL, {"mine": "[1, 2]"}),
                                     (sqlite_store.ADOPTABLE_SQL, {"mine": "[1, 2]", "limit": 16}))]
    finally:
        conn.close()
    for plan in plans:
        assert "USING INDEX ix_claims_generating_lease" in plan, plan
