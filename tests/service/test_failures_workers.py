"""A worker that dies while the database is down comes back, and the others keep serving.

`python -m service --workers 2` on a PostgreSQL of the test's own: PostgreSQL is stopped, one
worker is killed (kill -9), uvicorn starts a new one. Before the fix (382e375) every worker
applied the migrations when it started; the new one could not reach the database, failed its
start-up, and uvicorn then stopped the parent and the healthy worker with it: every connection
was refused until a person restarted the service. Now `python -m service` migrates once and
its workers start without the database (CLAIMFIRST_MIGRATE_ON_START=false): they answer 503
until it is back.
"""

from __future__ import annotations

import time

import httpx
import psutil

from tests.service.failures import own_postgres
from tests.service.live import live_service, wait_until

# How long the service is watched after the new worker appeared: the failed start-up took
# about a second (the connect timeout) before uvicorn stopped the parent.
WATCH_SECONDS = 4.0


def workers(parent: psutil.Process) -> set[int]:
    """The live worker processes (a killed one stays a zombie until uvicorn reaps it)."""
    found = set()
    for child in parent.children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(child.cmdline()):
                found.add(child.pid)
        except psutil.Error:
            continue
    return found


def health(url: str) -> str:
    try:
        return str(httpx.get(f"{url}/healthz", timeout=3).status_code)
    except httpx.TransportError as exc:
        return type(exc).__name__


def test_a_worker_restarted_while_the_database_is_down_starts_and_answers_503(tmp_path) -> None:
    with own_postgres() as pg, live_service(pg.url, tmp_path, workers=2, request_timeout_seconds=1) as service:
        parent = psutil.Process(service.process.pid)
        first = wait_until(lambda: len(pids := workers(parent)) == 2 and pids, what="two workers")
        pg.stop()
        victim = sorted(first)[0]
        psutil.Process(victim).kill()
        wait_until(lambda: len(workers(parent) - first) == 1, what="uvicorn to start a new worker")
        seen: list[str] = []
        end = time.monotonic() + WATCH_SECONDS
        while time.monotonic() < end:  # an observation window, bounded: every answer is kept
            seen.append(health(service.url))
        assert service.process.poll() is None, service.log_tail()
        assert set(seen) == {"503"}, seen
        assert len(workers(parent)) == 2
        pg.start()
        wait_until(lambda: health(service.url) == "200", what="the database to answer again")
