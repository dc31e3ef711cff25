"""What the failure tests (tests/service/test_failures_*.py) share: HTTP calls to a live
service, direct psycopg sessions for locks, row counts, and a PostgreSQL server of the test's own.

A test that stops or freezes PostgreSQL owns its server (`own_postgres`): the session's server
(tests/conftest.py) is shared by every other PostgreSQL test on the same worker.
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import pgserver
import psutil
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from service.stores.models import Video, VideoClaim
from service.settings import normalize_database_url
from service.stores.engine import make_engine
from service.stores.base import as_utc


# Claim statements blocked on a lock: how many, and how long the oldest has waited (seconds).
WAITING_CLAIMS_SQL = """
SELECT count(*), coalesce(extract(epoch FROM max(clock_timestamp() - query_start)), 0)
  FROM pg_stat_activity
 WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO video_claims%'
"""


def libpq(database_url: str) -> str:
    """A libpq conninfo (for psycopg.connect) from the service's SQLAlchemy URL."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def create(url: str, prompt: str, user: int = 1, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{url}/create", json={"tg_user_id": user, "prompt": prompt}, timeout=timeout)


def video(url: str, video_id: int) -> dict:
    return httpx.get(f"{url}/videos/{video_id}", timeout=10).raise_for_status().json()


def created_at(answer: dict) -> datetime:
    value = as_utc(answer["created_at"])
    assert value is not None
    return value


def count(database_url: str, model: type = Video, **where: object) -> int:
    """Rows of `model` (Video or VideoClaim) matching `where`, read with SQLAlchemy."""
    query = select(func.count()).select_from(model)
    for column, value in where.items():
        query = query.where(getattr(model, column) == value)
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(query).scalar_one()
    finally:
        engine.dispose()


def attempts(database_url: str) -> list[int]:
    """Every claim's attempt number: a takeover shows as an attempt above 1."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return sorted(conn.execute(select(VideoClaim.attempt)).scalars())
    finally:
        engine.dispose()


class OwnPostgres:
    """A throwaway PostgreSQL this test may stop, restart on the same data and socket, or freeze."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.server = pgserver.get_server(pgdata, cleanup_mode="stop")
        self.url = normalize_database_url(self.server.get_uri())

    @property
    def socket(self) -> Path:
        """The server's Unix socket (pgserver listens on no TCP port): what a proxy forwards to."""
        info = self.server.get_postmaster_info()
        return Path(info.socket_dir) / f".s.PGSQL.{info.port}"

    def stop(self) -> None:
        self.server.cleanup()  # pg_ctl stop -w: every connection is dropped

    def start(self) -> None:
        # The same data directory and socket directory: the same URL answers again.
        self.server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        assert normalize_database_url(self.server.get_uri()) == self.url

    def processes(self) -> list[psutil.Process]:
        postmaster = psutil.Process(self.server.get_pid())
        return [postmaster, *postmaster.children(recursive=True)]

    def freeze(self) -> None:
        # The postmaster first, so it forks no backend that would escape the SIGSTOP.
        for process in self.processes():
            process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        for process in reversed(self.processes()):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGCONT)


@contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    with tempfile.TemporaryDirectory(prefix="claimfirst-pg-") as pgdata:
        own = OwnPostgres(Path(pgdata))
        try:
            yield own
        finally:
            with contextlib.suppress(psutil.NoSuchProcess):
                own.thaw()  # a test that failed mid-freeze must not leave a server that cannot stop
            own.stop()
