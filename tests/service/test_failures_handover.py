"""The faults a random schedule found (issue 16), each reproduced with real processes.

Every test runs `python -m service` processes on one real PostgreSQL, with the stand-in
Replicate (a loopback server in this test's process, so it outlives the services) counting
the predictions created and cancelled: one prediction per key is one payment.

- an orphan claim (its request already answered 503) never takes a live holder's key over,
  whether a lock or a slow network delayed it;
- a worker that lost its lease leaves its job running for the attempt that adopted it;
- a SIGTERM hands a running job over instead of cancelling it; a survivor's sweep adopts it;
- a job id that cannot be written within the lease is written later, not cancelled;
- a job whose id never reached the database (kill -9 mid-create) is found at the provider;
- an Idempotency-Key request answers within one bound, however many calls it makes.

Each docstring says what the same test saw before the fix (45a1437's parent, 382e375).
"""

from __future__ import annotations

import signal
import threading
import time
from decimal import Decimal

import httpx
import psycopg

from tests.service.failures import WAITING_CLAIMS_SQL, libpq, own_postgres
from tests.service.live import live_service, wait_until
from tests.stand_ins.faulty_proxy import FaultyProxy
from tests.stand_ins.replicate import Fate, StandInReplicate

PROMPT = "Smart wallets as digital assistants..."
BODY = {"tg_user_id": 42, "prompt": PROMPT}


def provider(replicate: StandInReplicate, **more: object) -> dict[str, object]:
    return {"generator": "replicate", "replicate_model": replicate.model, "replicate_api_token": replicate.token,
            "replicate_base_url": replicate.base_url, "replicate_poll_seconds": 0.05, **more}


def rows(database_url: str, sql: str) -> list[tuple]:
    with psycopg.connect(libpq(database_url), autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def lease_has_run_out(database_url: str) -> bool:
    return rows(database_url, "SELECT bool_and(lease_expires_at < clock_timestamp()) FROM video_claims")[0][0]


def recorded_cost(database_url: str) -> Decimal:
    return rows(database_url, "SELECT coalesce(sum(cost_usd), 0) FROM videos")[0][0]


def ready_video(database_url: str) -> tuple | None:
    found = rows(database_url, "SELECT id, attempt, provider_job_id, video_url FROM videos WHERE status = 'ready'")
    return found[0] if found else None


def test_a_claim_whose_request_gave_up_never_takes_a_live_key_over(pg_url: str, tmp_path) -> None:
    """Before: the paused holder woke after its lease had run out and its own sweep failed the
    claim it was still paying for (the video never became ready). The queued claim itself was
    cancelled on the server by psycopg: a lock lets that cancel through, a slow network does not
    (the next test)."""
    lease = 2
    with live_service(pg_url, tmp_path, lease_seconds=lease, request_timeout_seconds=1, sim_seconds="6") as holder, \
            live_service(pg_url, tmp_path, lease_seconds=lease, request_timeout_seconds=1) as other:
        assert httpx.post(f"{holder.url}/create", json=BODY, timeout=10).status_code == 202
        # The holder is paused, so its heartbeat cannot renew first when the lock goes. A beat
        # in flight as it stops ends the lease at most one lease after this read.
        holder.signal(signal.SIGSTOP)
        try:
            lease_end = rows(pg_url, "SELECT lease_expires_at FROM video_claims")[0][0]
            with psycopg.connect(libpq(pg_url)) as locker, psycopg.connect(libpq(pg_url), autocommit=True) as watch:
                locker.execute("LOCK TABLE video_claims IN ACCESS EXCLUSIVE MODE")
                answers: list[int] = []
                duplicate = threading.Thread(target=lambda: answers.append(
                    httpx.post(f"{other.url}/create", json=BODY, timeout=10).status_code))
                duplicate.start()
                wait_until(lambda: watch.execute(WAITING_CLAIMS_SQL).fetchone()[0] == 1, what="the claim to queue")
                duplicate.join(10)
                assert answers == [503]
                # The holder's lease runs out on the database's clock while the claim waits.
                wait_until(lambda: watch.execute("SELECT clock_timestamp() > %s + %s * interval '1 second'",
                                                 (lease_end, lease)).fetchone()[0], what="the lease to run out")
            # The lock is gone: the orphan claim runs now, after its request's deadline.
            wait_until(lambda: rows(pg_url, WAITING_CLAIMS_SQL)[0][0] == 0, what="the orphan claim to run")
        finally:
            holder.signal(signal.SIGCONT)
        assert rows(pg_url, "SELECT attempt FROM video_claims") == [(1,)]
        done = wait_until(lambda: ready_video(pg_url), what="the holder's video", timeout=30)
        assert done[1] == 1


def test_a_worker_that_lost_its_lease_leaves_the_adopted_job_running(pg_url: str, tmp_path) -> None:
    """Before: the paused worker woke, saw its lease lost and cancelled the prediction its
    successor had adopted; the successor's video failed "canceled" and a retry paid again."""
    with StandInReplicate() as replicate:
        replicate.script(Fate(polls=None))  # runs until released
        settings = provider(replicate, lease_seconds=1)
        with live_service(pg_url, tmp_path, **settings) as paused, live_service(pg_url, tmp_path, **settings) as other:
            first = httpx.post(f"{paused.url}/create", json=BODY, timeout=10).json()
            job_id = wait_until(lambda: rows(pg_url, "SELECT provider_job_id FROM videos")[0][0], what="the job id")
            paused.signal(signal.SIGSTOP)
            try:
                wait_until(lambda: lease_has_run_out(pg_url), what="the paused worker's lease to run out")
                second = httpx.post(f"{other.url}/create", json=BODY, timeout=10).json()
                assert second["attempt"] == 2  # the user's retry adopts the running job
            finally:
                paused.signal(signal.SIGCONT)
            wait_until(lambda: paused.stats()["lost"] == 1, what="the woken worker to see its lease lost")
            replicate.release(job_id)
            done = wait_until(lambda: ready_video(pg_url), what="the adopted job to finish")
        assert replicate.cancels == []
        assert replicate.creations == 1
        assert (done[0], done[2]) == (second["video_id"], job_id)
        assert first["video_id"] != done[0]
        assert recorded_cost(pg_url) == Decimal("4.00")  # once, on the attempt that finished the job


def test_sigterm_hands_a_running_job_over_and_a_survivor_adopts_it(pg_url: str, tmp_path) -> None:
    """Before: SIGTERM cancelled every prediction in flight and failed its video; the user's
    retry paid for a new one."""
    with StandInReplicate() as replicate:
        replicate.script(Fate(polls=None))
        settings = provider(replicate, lease_seconds=1)
        with live_service(pg_url, tmp_path, **settings) as survivor:
            with live_service(pg_url, tmp_path, **settings) as deployed:
                first = httpx.post(f"{deployed.url}/create", json=BODY, timeout=10).json()
                job_id = wait_until(lambda: rows(pg_url, "SELECT provider_job_id FROM videos")[0][0], what="the job")
                deployed.signal(signal.SIGTERM)
                # uvicorn re-raises the signal it stopped for once it has shut down cleanly.
                assert deployed.process.wait(timeout=15) in (0, -signal.SIGTERM)
            assert replicate.cancels == []
            # Nobody asks again: the survivor's sweep adopts the handed-over job.
            adopter = wait_until(lambda: rows(pg_url, "SELECT id FROM videos WHERE attempt = 2"), what="the adoption")
            replicate.release(job_id)
            done = wait_until(lambda: ready_video(pg_url), what="the adopted job to finish")
            assert survivor.stats()["ready"] == 1
        assert (done[0], done[2]) == (adopter[0][0], job_id)
        assert first["video_id"] != done[0]
        assert replicate.creations == 1 and replicate.cancels == []
        assert recorded_cost(pg_url) == Decimal("4.00")


def test_a_job_id_written_after_the_lease_is_kept_not_cancelled(pg_url: str, tmp_path) -> None:
    """Before: the write of the job id gave up at the lease deadline, the prediction was
    cancelled and the video failed with no cost: the provider billed what the books did not show."""
    with StandInReplicate() as replicate:
        replicate.script(Fate(polls=3))
        replicate.fault("create", hang_seconds=1.0)  # created at once, answered a second later
        with live_service(pg_url, tmp_path, **provider(replicate, lease_seconds=1, request_timeout_seconds=1)) as svc:
            with psycopg.connect(libpq(pg_url)) as locker:
                httpx.post(f"{svc.url}/create", json=BODY, timeout=10).raise_for_status()
                wait_until(lambda: replicate.created_ids, what="the prediction")
                # The job id cannot be written for three leases.
                locker.execute("LOCK TABLE videos IN ACCESS EXCLUSIVE MODE")
                wait_until(lambda: rows(pg_url, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                                " AND query LIKE '%provider_job_id = %'")[0][0] >= 1,
                           what="the job id's write to wait on the lock")
                time.sleep(3)  # the outage: three leases long (not synchronisation)
            done = wait_until(lambda: ready_video(pg_url), what="the video")
        assert done[2] == replicate.created_ids[0]
        assert replicate.cancels == [] and replicate.creations == 1
        assert recorded_cost(pg_url) == Decimal("4.00")


def test_a_job_whose_id_never_reached_the_database_is_found_at_the_provider(pg_url: str, tmp_path) -> None:
    """Before: a worker killed while its create was answered left no trace of the job; the
    sweep marked the claim abandoned and the prediction ran on, billed and unknown."""
    with StandInReplicate() as replicate:
        replicate.script(Fate(polls=2))
        replicate.fault("create", hang_seconds=30)  # the prediction exists; its id never comes back
        settings = provider(replicate, lease_seconds=1, replicate_request_timeout_seconds=1)
        with live_service(pg_url, tmp_path, **settings) as doomed:
            httpx.post(f"{doomed.url}/create", json=BODY, timeout=10).raise_for_status()
            wait_until(lambda: replicate.created_ids, what="the prediction")
            doomed.signal(signal.SIGKILL)
            doomed.process.wait(timeout=10)
        assert rows(pg_url, "SELECT provider_job_id IS NULL, job_requested_at IS NOT NULL FROM videos") == [(True, True)]
        with live_service(pg_url, tmp_path, **settings):
            done = wait_until(lambda: ready_video(pg_url), what="the found job to finish", timeout=40)
        assert done[2] == replicate.created_ids[0]
        assert replicate.creations == 1 and replicate.cancels == []
        assert recorded_cost(pg_url) == Decimal("4.00")


def test_an_idempotency_key_request_answers_within_one_bound(pg_url: str, tmp_path) -> None:
    """Before: begin, claim and finish were each given the whole bound: 0.6 s a call on a
    1 s bound answered in ~1.9 s."""
    with live_service(pg_url, tmp_path, request_timeout_seconds=1, db_latency_ms=600) as svc:
        started = time.monotonic()
        answer = httpx.post(f"{svc.url}/create", json=BODY, headers={"Idempotency-Key": "one-bound"}, timeout=10)
        elapsed = time.monotonic() - started
    assert answer.status_code == 503, answer.text
    assert elapsed < 1.5, elapsed


def test_a_claim_that_reaches_the_database_after_its_request_gave_up_takes_nothing_over(tmp_path) -> None:
    """Before (382e375): the claim reached PostgreSQL 3 s late through a slow network, found the
    paused holder's lease expired, and took the key over as attempt 2 with nobody to generate
    it (the issue's orphan claim: the same happens to a statement held by a frozen server).
    Too late for psycopg's cancel to overtake it: the cancel goes through the same network."""
    lease = 2
    with own_postgres() as pg:
        proxy = FaultyProxy(pg.socket)
        proxy.start()
        slow_url = f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres"
        try:
            with live_service(pg.url, tmp_path, lease_seconds=lease, request_timeout_seconds=1,
                              sim_seconds="4") as holder, \
                    live_service(slow_url, tmp_path, lease_seconds=lease, request_timeout_seconds=1) as other:
                assert httpx.post(f"{holder.url}/create", json=BODY, timeout=10).status_code == 202
                holder.signal(signal.SIGSTOP)  # its heartbeat cannot renew first
                try:
                    lease_end = rows(pg.url, "SELECT lease_expires_at FROM video_claims")[0][0]
                    wait_until(lambda: rows(pg.url, f"SELECT clock_timestamp() > '{lease_end}'::timestamptz"
                                                    f" + interval '{lease} seconds'")[0][0],
                               what="the paused holder's lease to run out")
                    # A first claim gives the other service its anchor of the database's clock
                    # (read once per process), so the late claim below is sent at once.
                    warm = httpx.post(f"{other.url}/create", json={"tg_user_id": 43, "prompt": "warm up"}, timeout=10)
                    assert warm.status_code == 202, warm.text
                    proxy.latency(6.0)  # 3 s each way
                    sent = rows(pg.url, "SELECT clock_timestamp()")[0][0]
                    answer = httpx.post(f"{other.url}/create", json=BODY, timeout=10)
                    assert answer.status_code == 503, answer.text
                    # The claim statement reaches the server ~3 s after it was sent, and runs.
                    wait_until(lambda: rows(pg.url, CLAIM_RAN.format(sent=sent))[0][0], timeout=20,
                               what="the late claim statement to run")
                finally:
                    holder.signal(signal.SIGCONT)
                assert rows(pg.url, "SELECT attempt FROM video_claims WHERE tg_user_id = 42") == [(1,)]
                proxy.pass_through()
                done = wait_until(lambda: rows(pg.url, "SELECT attempt FROM videos WHERE tg_user_id = 42"
                                                       " AND status = 'ready'"), what="the holder's video", timeout=30)
                assert done == [(1,)]
        finally:
            proxy.stop()


# A backend that ran the claim statement since `sent` and is done with it.
CLAIM_RAN = """SELECT count(*) > 0 FROM pg_stat_activity WHERE state = 'idle'
                AND query LIKE '%INSERT INTO video_claims%' AND query_start > '{sent}'::timestamptz"""
