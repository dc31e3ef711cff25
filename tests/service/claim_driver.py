"""The stateful claim test's one door to a real store: its calls, its clock, its tables.

`ClaimDriver` is the only place `test_claim_stateful.py` names a store method, so a change of
signature (a request deadline on the claim, a cost argument on an outcome) is an edit here,
not in the model. Beside the store it keeps one plain connection of its own to the same
database, for what the store's interface does not offer and the test needs: emptying the
tables between examples, moving the clock, and reading every row to compare with the model.

The clock: both stores read "now" inside their SQL (`clock_timestamp()`, SQLite's
`strftime('now')`), which a test cannot set. Moving every stored time back by Δ
(`video_claims.claimed_at`, `lease_expires_at`, `videos.created_at`, `updated_at`) is, for every
decision a store makes, the same as its clock moving forward by Δ (`tests.stores.age` does the
same row by row; here it is one UPDATE per table, since a history moves time dozens of times).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy.engine import make_url

from service.claim import ClaimRule, ClaimTicket, Holder, NewVideo
from service.records import GenerationResult
from service.stores.base import VideoRecord, as_utc
from service.stores.sqlite import NOW
from tests.stores import SyncStore, migrated_store

__all__ = ["ClaimDriver", "StoredClaim", "StoredVideo"]

# SQLite keeps times as text in the stores' own format; strftime's %f is SS.SSS, and the stores
# write milliseconds padded to microseconds, so a shifted time keeps its exact value and format.
_SQLITE_SHIFT = "strftime('%Y-%m-%d %H:%M:%f000', {column}, :shift)"


@dataclass(frozen=True)
class StoredClaim:
    tg_user_id: int
    key_digest: bytes
    video_id: int
    attempt: int
    status: str
    claimed_at: datetime
    lease_expires_at: datetime | None


@dataclass(frozen=True)
class StoredVideo:
    record: VideoRecord
    provider_job_id: str | None


class ClaimDriver:
    def __init__(self, store: SyncStore, url: str, rule: ClaimRule) -> None:
        self.store = store
        self.rule = rule
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            self._conn: Any = sqlite3.connect(parsed.database, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
        else:
            conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            self._conn = psycopg.connect(conninfo, autocommit=True, row_factory=dict_row)

    @classmethod
    @contextmanager
    def open(cls, url: str, rule: ClaimRule) -> Iterator[ClaimDriver]:
        # One store (and one event loop, SyncStore's) for the whole run: a psycopg pool belongs to
        # the loop that opened it, and opening one per example would be most of the run's time.
        with migrated_store(url) as store:
            driver = cls(store, url, rule)
            try:
                yield driver
            finally:
                driver._conn.close()

    # -- the store's interface (every call the model makes goes through here) -----------

    def claim(self, request: NewVideo) -> ClaimTicket | Holder | None:
        return self.store.claim(request, self.rule)

    def holder(self, request: NewVideo) -> Holder | None:
        return self.store.holder(request, self.rule)

    def renew(self, tickets: Sequence[ClaimTicket]) -> set[int]:
        return self.store.renew(list(tickets), self.rule.lease)

    def record_job(self, ticket: ClaimTicket, job_id: str) -> bool:
        return self.store.record_job(ticket, job_id)

    def complete(self, ticket: ClaimTicket, result: GenerationResult) -> bool:
        return self.store.complete(ticket, result)

    def fail(self, ticket: ClaimTicket, error: str, cost_usd: Decimal | None) -> None:
        self.store.fail(ticket, error, cost_usd)

    def sweep(self) -> list[int]:
        return self.store.expire_abandoned()

    # -- the database under the store --------------------------------------------------

    def reset(self) -> None:
        """Empty the claim tables: each example starts from a database with no history."""
        # Claims first: they reference videos.
        self._conn.execute("DELETE FROM video_claims")
        self._conn.execute("DELETE FROM videos")

    def advance(self, seconds: int) -> None:
        """For the store, `seconds` pass: every stored time moves that far back."""
        if self.dialect == "sqlite":
            shift = {"shift": f"-{seconds} seconds"}
            claimed, lease, created, updated = (_SQLITE_SHIFT.format(column=c) for c in
                                                ("claimed_at", "lease_expires_at", "created_at", "updated_at"))
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(f"UPDATE video_claims SET claimed_at = {claimed}, lease_expires_at = {lease}", shift)
            self._conn.execute(f"UPDATE videos SET created_at = {created}, updated_at = {updated}", shift)
            self._conn.execute("COMMIT")
        else:
            shift = {"shift": timedelta(seconds=seconds)}
            with self._conn.transaction():
                self._conn.execute("UPDATE video_claims SET claimed_at = claimed_at - %(shift)s,"
                                   " lease_expires_at = lease_expires_at - %(shift)s", shift)
                self._conn.execute("UPDATE videos SET created_at = created_at - %(shift)s,"
                                   " updated_at = updated_at - %(shift)s", shift)

    def now(self) -> datetime:
        """The database's clock, as the stores read it."""
        sql = f"SELECT {NOW} AS now" if self.dialect == "sqlite" else "SELECT clock_timestamp() AS now"
        return as_utc(self._conn.execute(sql).fetchone()["now"])  # type: ignore[return-value]

    def claims(self) -> list[StoredClaim]:
        rows = self._conn.execute("SELECT * FROM video_claims").fetchall()
        return [StoredClaim(row["tg_user_id"], bytes(row["key_digest"]), row["video_id"], row["attempt"], row["status"],
                            as_utc(row["claimed_at"]), as_utc(row["lease_expires_at"]))  # type: ignore[arg-type]
                for row in rows]

    def videos(self) -> list[StoredVideo]:
        rows = self._conn.execute("SELECT * FROM videos ORDER BY id").fetchall()
        return [StoredVideo(VideoRecord.from_mapping(row), row["provider_job_id"]) for row in rows]
