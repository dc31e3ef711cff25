"""Issue 7, item 1: time comes from the database, reproduced with real service processes.

- A claim that waits behind a lock longer than the lease is not born expired.
- A second service process whose clock is 40 s ahead (libfaketime) neither takes over nor
  sweeps the first one's live claims on PostgreSQL. On SQLite it does: SQLite has no server,
  its `'now'` is the OS clock of whichever process runs the statement (test below).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from service.stores.models import Video
from tests.service.failures import attempts, count, create, created_at, libpq, video
from tests.service.live import live_service, wait_until

LEASE = 1.0
PROMPT = "Fireworks over Sydney harbour"
# libfaketime: the clock of a process that preloads it runs this far ahead. Monotonic time is
# left alone so the service's event loop and timeouts behave; only wall-clock time is skewed.
SKEW = "+40s"
SKEW_ENV = {"FAKETIME_DONT_FAKE_MONOTONIC": "1"}

WAITING_CLAIM_SQL = """
SELECT extract(epoch FROM clock_timestamp() - query_start) AS waited, query_start
  FROM pg_stat_activity
 WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO video_claims%'
"""


def waiting_claim(observer: psycopg.Connection, at_least: float) -> dict | None:
    """The claim statement blocked on a lock, once it has waited `at_least` seconds."""
    row = observer.execute(WAITING_CLAIM_SQL).fetchone()
    return {"waited": float(row[0]), "query_start": row[1]} if row and float(row[0]) >= at_least else None


@pytest.mark.parametrize("lock", ["table", "row"])
def test_a_claim_that_waited_behind_a_lock_longer_than_the_lease_is_not_taken_over(
    lock: str, pg_url: str, tmp_path
) -> None:
    """Before: `now` was read in the app, then the statement waited on the lock, so the lease
    (`now + lease`) had already run out when the claim committed; the next request took the
    key over (202, attempt 2) while the first worker was alive. Now the lease is computed by
    `clock_timestamp()` inside the statement, after the wait: it starts when the claim commits.

    `table`: a fresh key behind `LOCK TABLE video_claims IN ACCESS EXCLUSIVE MODE`.
    `row`: a retry of a failed key behind `SELECT … FOR UPDATE` on its claim row (the
    ON CONFLICT DO UPDATE branch: its SET is evaluated after the row lock is granted).
    On f3943d3 (both variants): the claim was dated 2.05 s before the lock was released, and
    the next `/create` answered 202 with a new attempt while the first worker generated.
    """
    with live_service(pg_url, tmp_path, lease_seconds=LEASE, sim_seconds=2, request_timeout_seconds=15) as service:
        if lock == "row":  # a first attempt that fails, so the retry takes the row over
            with live_service(pg_url, tmp_path, lease_seconds=LEASE, sim_seconds=0, sim_failure_rate=1) as failing:
                first = create(failing.url, PROMPT).json()
                wait_until(lambda: video(failing.url, first["video_id"])["status"] == "failed", what="the failure")
        with (
            psycopg.connect(libpq(pg_url)) as locker,
            psycopg.connect(libpq(pg_url), autocommit=True) as observer,
            ThreadPoolExecutor(1) as pool,
        ):
            if lock == "table":
                locker.execute("LOCK TABLE video_claims IN ACCESS EXCLUSIVE MODE")
            else:
                locker.execute("SELECT 1 FROM video_claims FOR UPDATE")
            pending = pool.submit(create, service.url, PROMPT)
            waiting = wait_until(lambda: waiting_claim(observer, at_least=2 * LEASE), what="the claim to wait 2 leases")
            released_at = locker.execute("SELECT clock_timestamp()").fetchone()[0]
            locker.commit()
            answer = pending.result(timeout=30)

        assert answer.status_code == 202, answer.text
        won = answer.json()
        # The claim (and so its lease) is dated after the lock was released, not when the
        # request came in: an app-side `now` would be the statement's start, more than
        # twice the lease earlier, and the lease would have been expired at birth.
        assert created_at(won) >= released_at
        assert created_at(won) - waiting["query_start"] > timedelta(seconds=2 * LEASE)

        # Every request while the first worker generates is a duplicate of its video.
        while (current := video(service.url, won["video_id"]))["status"] == "generating":
            again = create(service.url, PROMPT)
            assert (again.status_code, again.json()["video_id"]) == (409, won["video_id"]), again.text
        assert (current["status"], current["attempt"]) == ("ready", won["attempt"])
        assert service.stats()["lost"] == 0
    assert count(pg_url, Video, status="ready") == 1
    assert attempts(pg_url) == [won["attempt"]]


@pytest.fixture(scope="session")
def faketime(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """The command prefix that skews a process's clock (never skipped): `env` preloading
    libfaketime, Debian's when it is installed, else built from the source the `libfaketime`
    wheel (a dev dependency) vendors, with the C compiler and make every machine of this kind
    has. Not the `faketime` command: it runs the program as its own child, so stopping the
    service (SIGTERM to the process the test started) left the service itself running."""
    installed = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    library = installed[0] if installed else build_libfaketime(tmp_path_factory.mktemp("libfaketime"))
    return ("env", f"LD_PRELOAD={library}", f"FAKETIME={SKEW}")


def build_libfaketime(build: Path) -> Path:
    spec = importlib.util.find_spec("libfaketime")
    assert spec is not None and spec.submodule_search_locations, "the dev extras install libfaketime"
    source = Path(next(iter(spec.submodule_search_locations))) / "vendor" / "libfaketime" / "src"
    shutil.copytree(source, build, dirs_exist_ok=True)
    made = subprocess.run(["make", "-s", "libfaketime.so.1"], cwd=build, capture_output=True, text=True)
    assert made.returncode == 0, f"building libfaketime failed: {made.stderr.strip()[-500:]}"
    return build / "libfaketime.so.1"


def skewed_clock(service_url: str) -> timedelta:
    """How far ahead of this machine the service's own clock is (uvicorn's Date header)."""
    response = httpx.get(f"{service_url}/healthz", timeout=10)
    return parsedate_to_datetime(response.headers["date"]) - datetime.now(UTC)


def test_a_process_forty_seconds_ahead_neither_takes_over_nor_sweeps_on_postgres(
    pg_url: str, tmp_path, faketime: tuple[str, ...]
) -> None:
    """Before: each process judged leases by its own clock; a host 25-40 s ahead took over
    live claims and its sweeper marked healthy generations failed. PostgreSQL's clock is one
    for every client, so the skewed process changes nothing. On f3943d3 the skewed process's
    first `/create` on a live key answered 202."""
    prompts = [f"{PROMPT} {i}" for i in range(3)]
    settings = {"lease_seconds": 2, "sim_seconds": 4}
    with live_service(pg_url, tmp_path, **settings) as honest:
        held = [create(honest.url, p).json() for p in prompts]
        with live_service(pg_url, tmp_path, prefix=faketime, extra_env=SKEW_ENV, **settings) as ahead:
            assert skewed_clock(ahead.url) > timedelta(seconds=30)  # faketime reaches Python

            for prompt, original in zip(prompts, held, strict=True):
                again = create(ahead.url, prompt)
                assert (again.status_code, again.json()["video_id"]) == (409, original["video_id"])
            own = create(ahead.url, "a prompt of its own").json()
            # Its own claim is dated by the database, not by its clock.
            assert abs(created_at(own) - datetime.now(UTC)) < timedelta(seconds=20)

            # Both sweepers run every lease (2 s) during the 4 s generations.
            for original in [*held, own]:
                wait_until(lambda: video(honest.url, original["video_id"])["status"] != "generating",
                           what="the generations to end")
            assert [video(honest.url, v["video_id"])["status"] for v in [*held, own]] == ["ready"] * 4
            assert ahead.stats()["submitted"] == 1
    assert attempts(pg_url) == [1, 1, 1, 1]
    assert count(pg_url, Video, status="failed") == 0


def test_on_sqlite_the_clock_is_the_calling_process_s_own(sqlite_url: str, tmp_path, faketime: tuple[str, ...]) -> None:
    """What is true on SQLite: there is no database server to own the clock. `'now'` in a
    statement is the OS clock of the process running it, so a process 40 s ahead sees every
    lease as expired and takes the key over. Processes sharing a SQLite file share a host
    and so its clock; this only happens with a faked clock, and it is documented (README)."""
    settings = {"lease_seconds": 2, "sim_seconds": 30}
    with (
        live_service(sqlite_url, tmp_path, **settings) as honest,
        live_service(sqlite_url, tmp_path, prefix=faketime, extra_env=SKEW_ENV, **settings) as ahead,
    ):
        original = create(honest.url, PROMPT).json()
        taken = create(ahead.url, PROMPT)
        assert (taken.status_code, taken.json()["attempt"]) == (202, 2)
        assert created_at(taken.json()) - created_at(original) > timedelta(seconds=30)
        assert video(honest.url, original["video_id"])["status"] == "failed"
