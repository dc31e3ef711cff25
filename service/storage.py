"""Storage: the engine, the schema upgrade, and the claim's few primitives in SQL.

`SqlStore` is the only place that speaks SQL for the claim. Its `try_claim` is one
conditional statement per dialect,

    INSERT INTO video_claims … ON CONFLICT (tg_user_id, prompt_key)
        DO UPDATE SET … WHERE <the holder no longer blocks> RETURNING attempt

so the decision "may this request generate?" is made by the database, atomically, never by
reading and then writing. Everything else (renew, complete, fail, sweep) is fenced by the
claim's `attempt` number, so a worker whose claim was taken over cannot write over the
attempt that replaced it.

Concurrency notes, per backend:
- PostgreSQL (READ COMMITTED): concurrent upserts on one key serialise on the row lock; the
  loser re-evaluates the WHERE against the winner's committed row and gets no row back.
- SQLite: every transaction starts with BEGIN IMMEDIATE, which takes the write lock up front.
  Deferred transactions would deadlock (SQLITE_BUSY) when two readers both try to upgrade.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, and_, create_engine, event, func, or_, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from service.claim import FAILED, GENERATING, READY, ClaimRule, ClaimState, ClaimTicket, Holder, NewVideo
from service.errors import StorageUnavailable, VideoNotFound
from service.generators import GenerationResult
from service.models import Video, VideoClaim

__all__ = ["SqlStore", "VideoRecord", "make_engine", "migrate", "translate_db_errors"]

# SQLite: how long a writer waits for the lock before giving up. Generous, because under a
# burst of identical requests every one queues for the same lock and each holds it for one
# short transaction; 30 s of queueing means the machine is in trouble anyway.
SQLITE_BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class VideoRecord:
    id: int
    tg_user_id: int
    prompt: str
    prompt_key: str
    category: str | None
    status: str
    attempt: int
    video_url: str | None
    thumbnail_url: str | None
    error: str | None
    cost_usd: Decimal | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> VideoRecord:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine for `url`; SQLite files get their folder, WAL and BEGIN IMMEDIATE."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_size=pool_size, max_overflow=20)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    else:
        # pool_pre_ping: a connection the server dropped (restart, failover) is replaced
        # instead of failing the next request; a server that is really down still fails
        # fast and maps to 503. pool_timeout bounds how long a request queues for a connection.
        engine = create_engine(
            url, pool_size=pool_size, max_overflow=20, pool_pre_ping=True, pool_timeout=10,
            connect_args={"connect_timeout": 5},
        )
    return engine


def _sqlite_on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # Hand transaction control to SQLAlchemy's "begin" event below (pysqlite's own implicit
    # BEGIN is deferred, which is what deadlocks).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (safe to call from many processes)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with translate_db_errors(), engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


@contextlib.contextmanager
def translate_db_errors() -> Iterator[None]:
    """Map "the database did not answer" to StorageUnavailable (HTTP 503)."""
    try:
        yield
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as exc:
        raise StorageUnavailable(f"database unavailable: {_first_line(exc)}") from exc
    except sa_exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise StorageUnavailable(f"database connection lost: {_first_line(exc)}") from exc
        raise


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


class SqlStore:
    """The claim's primitives on one SQLAlchemy engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine, *, round_trip_latency_ms: float = 0.0) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._latency_s = round_trip_latency_ms / 1000

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        if self._latency_s:
            # Incident replay only: each store call is one round trip, as each Supabase call
            # was one HTTP request. The delay comes before the transaction opens, so it is not
            # spent holding SQLite's write lock (which would queue every other request).
            time.sleep(self._latency_s)
        with translate_db_errors(), self.engine.begin() as conn:
            yield conn

    def ping(self) -> None:
        with self._transaction() as conn:
            conn.execute(text("SELECT 1"))

    # -- the claim -------------------------------------------------------------------------

    def try_claim(self, request: NewVideo, *, now: datetime, rule: ClaimRule) -> ClaimTicket | None:
        claims = VideoClaim.__table__
        lease_expires_at = rule.lease_expiry(now)
        insert = self._insert(claims).values(
            tg_user_id=request.tg_user_id,
            prompt_key=request.prompt_key,
            video_id=None,
            attempt=1,
            status=GENERATING,
            claimed_at=now,
            lease_expires_at=lease_expires_at,
        )
        # The WHERE is ClaimRule.blocks negated; keep the two in step.
        holder_is_free = or_(
            claims.c.status == FAILED,
            claims.c.claimed_at < rule.window_start(now),
            and_(
                claims.c.status == GENERATING,
                or_(claims.c.lease_expires_at.is_(None), claims.c.lease_expires_at <= now),
            ),
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[claims.c.tg_user_id, claims.c.prompt_key],
            set_={
                "video_id": None,
                "attempt": claims.c.attempt + 1,
                "status": GENERATING,
                "claimed_at": insert.excluded.claimed_at,
                "lease_expires_at": insert.excluded.lease_expires_at,
            },
            where=holder_is_free,
        ).returning(claims.c.attempt)

        with self._transaction() as conn:
            attempt = conn.execute(upsert).scalar_one_or_none()
            if attempt is None:
                return None
            # Won. The video row and the claim's pointer to it commit together with the
            # claim: no durable claim, no generation; no claim, no row.
            video_id = conn.execute(self._insert_video(request, GENERATING, now, attempt)).scalar_one()
            conn.execute(
                update(VideoClaim)
                .where(*self._claim_pk(request.tg_user_id, request.prompt_key))
                .values(video_id=video_id)
            )
            if attempt > 1:
                # A takeover: an earlier attempt still marked generating lost its lease (its
                # worker died or stalled). Fence it off now rather than wait for the sweep.
                conn.execute(
                    update(Video)
                    .where(
                        Video.tg_user_id == request.tg_user_id,
                        Video.prompt_key == request.prompt_key,
                        Video.status == GENERATING,
                        Video.attempt < attempt,
                    )
                    .values(
                        status=FAILED,
                        error=f"lease expired; superseded by attempt {attempt} (video {video_id})",
                        updated_at=now,
                    )
                )
        return ClaimTicket(video_id, request.tg_user_id, request.prompt_key, attempt, now)

    def holder(self, tg_user_id: int, prompt_key: str) -> Holder | None:
        with self._transaction() as conn:
            row = conn.execute(
                select(
                    VideoClaim.status.label("claim_status"),
                    VideoClaim.attempt.label("claim_attempt"),
                    VideoClaim.claimed_at,
                    VideoClaim.lease_expires_at,
                    *Video.__table__.c,
                )
                .join(Video, Video.id == VideoClaim.video_id)
                .where(*self._claim_pk(tg_user_id, prompt_key))
            ).mappings().one_or_none()
        if row is None:
            return None
        state = ClaimState(row["claim_status"], row["claim_attempt"], row["claimed_at"], row["lease_expires_at"])
        return Holder(state, VideoRecord.from_mapping(row))

    # -- the worker's side, every write fenced by attempt --------------------------------

    def renew(self, ticket: ClaimTicket, *, now: datetime, rule: ClaimRule) -> bool:
        """Extend the lease; False when the claim is no longer this attempt's."""
        with self._transaction() as conn:
            ours = conn.execute(
                update(VideoClaim)
                .where(*self._fenced(ticket))
                .values(lease_expires_at=rule.lease_expiry(now))
            ).rowcount == 1
            if ours:
                # The video's updated_at doubles as "last heard from its worker", so a store
                # read without video_claims (the audit's stuck-claim report, a Supabase
                # dashboard) can tell a long generation from a dead one.
                conn.execute(update(Video).where(Video.id == ticket.video_id).values(updated_at=now))
        return ours

    def complete(self, ticket: ClaimTicket, result: GenerationResult, *, now: datetime) -> bool:
        """Record a finished video; False (and this attempt marked failed) when fenced off."""
        with self._transaction() as conn:
            won = conn.execute(
                update(VideoClaim)
                .where(*self._fenced(ticket))
                .values(status=READY, lease_expires_at=None)
            ).rowcount == 1
            if won:
                conn.execute(
                    update(Video)
                    .where(Video.id == ticket.video_id)
                    .values(status=READY, updated_at=now, **self._result_values(result))
                )
            else:
                # Too late: the claim was taken over or swept. The money is spent, so the
                # cost is kept on this attempt's row, but its result is not published.
                conn.execute(
                    update(Video)
                    .where(Video.id == ticket.video_id, Video.status != READY)
                    .values(status=FAILED, cost_usd=result.cost_usd, updated_at=now,
                            error=func.coalesce(Video.error, "late result rejected: claim lost"))
                )
        return won

    def fail(self, ticket: ClaimTicket, error: str, *, now: datetime) -> None:
        """Mark this attempt failed and, if the claim is still its own, free the key."""
        with self._transaction() as conn:
            conn.execute(
                update(VideoClaim).where(*self._fenced(ticket)).values(status=FAILED, lease_expires_at=None)
            )
            conn.execute(
                update(Video)
                .where(Video.id == ticket.video_id, Video.status == GENERATING)
                .values(status=FAILED, error=error[:2000], updated_at=now)
            )

    def expire_abandoned(self, *, now: datetime) -> list[int]:
        """The sweep: mark claims whose lease ran out (and their videos) failed."""
        with self._transaction() as conn:
            video_ids = list(
                conn.execute(
                    update(VideoClaim)
                    .where(VideoClaim.status == GENERATING, VideoClaim.lease_expires_at <= now)
                    .values(status=FAILED, lease_expires_at=None)
                    .returning(VideoClaim.video_id)
                ).scalars()
            )
            if video_ids:
                conn.execute(
                    update(Video)
                    .where(Video.id.in_(video_ids), Video.status == GENERATING)
                    .values(status=FAILED, error="abandoned: lease expired, worker gone", updated_at=now)
                )
        return sorted(video_ids)

    # -- incident replay only: the legacy policies' separate round trips (service.policies) --

    def find_recent_by_prompt(
        self, tg_user_id: int, prompt: str, *, since: datetime, statuses: tuple[str, ...] | None = None
    ) -> VideoRecord | None:
        """The bot's duplicate check: the exact prompt, the window, optionally some statuses."""
        query = select(Video.__table__).where(
            Video.tg_user_id == tg_user_id, Video.prompt == prompt, Video.created_at >= since
        )
        if statuses is not None:
            query = query.where(Video.status.in_(statuses))
        with self._transaction() as conn:
            row = conn.execute(query.order_by(Video.created_at, Video.id).limit(1)).mappings().one_or_none()
        return None if row is None else VideoRecord.from_mapping(row)

    def insert_video(
        self, request: NewVideo, status: str, *, now: datetime, result: GenerationResult | None = None
    ) -> VideoRecord:
        with self._transaction() as conn:
            video_id = conn.execute(self._insert_video(request, status, now, 1, result)).scalar_one()
        return self.get(video_id)

    def set_outcome(
        self, video_id: int, status: str, *, now: datetime,
        result: GenerationResult | None = None, error: str | None = None,
    ) -> None:
        """An unfenced update, exactly as the write-up's fix wrote its result."""
        with self._transaction() as conn:
            conn.execute(update(Video).where(Video.id == video_id).values(
                status=status, updated_at=now, error=error, **self._result_values(result)))

    # -- reads -----------------------------------------------------------------------------

    def get(self, video_id: int) -> VideoRecord:
        with self._transaction() as conn:
            row = conn.execute(select(Video.__table__).where(Video.id == video_id)).mappings().one_or_none()
        if row is None:
            raise VideoNotFound(f"no video with id {video_id}")
        return VideoRecord.from_mapping(row)

    def _insert_video(
        self, request: NewVideo, status: str, now: datetime, attempt: int,
        result: GenerationResult | None = None,
    ):  # type: ignore[no-untyped-def]
        return (
            self._insert(Video.__table__)
            .values(
                tg_user_id=request.tg_user_id,
                prompt=request.prompt,
                enhanced_prompt=request.prompt,
                category=request.category,
                status=status,
                prompt_key=request.prompt_key,
                attempt=attempt,
                created_at=now,
                updated_at=now,
                **self._result_values(result),
            )
            .returning(Video.__table__.c.id)
        )

    @staticmethod
    def _result_values(result: GenerationResult | None) -> dict[str, Any]:
        if result is None:
            return {}
        return {"video_url": result.video_url, "thumbnail_url": result.thumbnail_url, "cost_usd": result.cost_usd}

    @staticmethod
    def _claim_pk(tg_user_id: int, prompt_key: str) -> tuple:
        return (VideoClaim.tg_user_id == tg_user_id, VideoClaim.prompt_key == prompt_key)

    @classmethod
    def _fenced(cls, ticket: ClaimTicket) -> tuple:
        return (
            *cls._claim_pk(ticket.tg_user_id, ticket.prompt_key),
            VideoClaim.attempt == ticket.attempt,
            VideoClaim.status == GENERATING,
        )
