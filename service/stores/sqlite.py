"""The SQLite store (the embedded default): stdlib sqlite3 on dedicated threads.

SQLite has one writer at a time per file, so a claim is one transaction that takes the write
lock up front (BEGIN IMMEDIATE) and then runs the conditional upsert

    INSERT INTO video_claims … ON CONFLICT (tg_user_id, key_digest)
        DO UPDATE SET … WHERE <the holder no longer blocks> RETURNING …

followed, in the same transaction, by the winner's video row (or the loser's holder read).
A duplicate whose holder visibly blocks is answered from a read first, without the lock.
Deferred transactions would deadlock (SQLITE_BUSY) when two readers both try to upgrade.

Threads, each with its own connection: one for request writes (claims), one for the workers'
writes (heartbeats, outcomes: they never queue behind a burst of claims in this process), and
a small pool for reads, which never take the write lock (WAL lets them run beside a writer),
so `/healthz` and `GET /videos/{id}` answer while claims queue.

Time: SQLite's own clock, `strftime(…, 'now')`, read inside each statement, in the same text
form SQLAlchemy stores (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC), so stored times compare as text.
SQLite has no server: its 'now' is the OS clock of the process running the statement. The
processes sharing one file share a host and its clock, so this is one clock in practice; a
process with a faked clock (libfaketime) does see its own (tests/service/test_failures_time.py).

A claim that gets the write lock after its request gave up (the request timeout) is rolled
back rather than committed: nobody would generate it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from service.claim import ClaimRule, ClaimTicket, Holder, NewVideo
from service.errors import StorageUnavailable, VideoNotFound
from service.params import params_json
from service.records import GenerationResult
from service.stores.base import (
    ABANDONED_ERROR, LATE_ERROR, SUPERSEDED_ERROR, KeyBegun, VideoRecord, as_utc, holder_from_row, key_digest,
    video_record,
)
from service.stores import limits as lim
from service.stores.idempotency import (
    SQLITE_BEGIN_SQL, SQLITE_FINISH_SQL, SQLITE_FORGET_SQL, SQLITE_HOLDER_SQL, SQLITE_RELEASE_SQL,
)
from service.stores.outbox import (
    FAILED_EVENT, READY_EVENT, SQLITE_REPORT_SET, CallbackState, DueCallback, sqlite_finish, sqlite_state, sqlite_take,
)

__all__ = ["SqliteStore"]

T = TypeVar("T")

READER_THREADS = 2

# The database's "now", and "now" moved by a modifier such as '+30.000000 seconds'.
NOW = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"


def _now_plus(param: str) -> str:
    return f"strftime('%Y-%m-%d %H:%M:%f000', 'now', :{param})"


def _seconds(delta: timedelta, sign: str) -> str:
    return f"{sign}{delta.total_seconds():.6f} seconds"


# `ClaimRule.blocks` negated, with `{now}` and `{window_start}` (= now - window) the database's;
# tests/service/test_claim_rule.py evaluates it beside the Python rule on the same rows.
FREE_TEMPLATE = """(c.status = 'failed'
       OR (c.status = 'generating' AND (c.lease_expires_at IS NULL OR c.lease_expires_at <= {now}))
       OR (c.status <> 'generating' AND c.claimed_at < {window_start}))"""
FREE = FREE_TEMPLATE.format(now=NOW, window_start=_now_plus("window_ago"))

UPSERT_SQL = f"""
INSERT INTO video_claims AS c (tg_user_id, key_digest, video_id, attempt, status, claimed_at, lease_expires_at)
VALUES (:user, :digest, NULL, 1, 'generating', {NOW}, {_now_plus('lease_ahead')})
ON CONFLICT (tg_user_id, key_digest) DO UPDATE
   SET video_id = NULL, attempt = c.attempt + 1, status = 'generating',
       claimed_at = {NOW}, lease_expires_at = {_now_plus('lease_ahead')}
 WHERE {FREE}
RETURNING attempt, claimed_at
"""

INSERT_CLAIMED_VIDEO_SQL = """
INSERT INTO videos (tg_user_id, prompt, enhanced_prompt, category, status, prompt_key, attempt, created_at, updated_at,
                    params)
VALUES (:user, :prompt, :prompt, :category, 'generating', :key, :attempt, :claimed_at, :claimed_at, :params)
RETURNING id
"""

SUPERSEDE_SQL = """
UPDATE videos SET status = 'failed', error = :error, updated_at = :claimed_at
 WHERE tg_user_id = :user AND prompt_key = :key AND status = 'generating' AND attempt < :attempt
RETURNING id, provider_job_id, job_requested_at, attempt, params
"""

# A job handed on to a newer attempt is that attempt's to pay for (see the PostgreSQL store).
HANDED_ON = """EXISTS (SELECT 1 FROM videos n WHERE n.provider_job_id = videos.provider_job_id
                 AND n.id <> videos.id AND n.tg_user_id = videos.tg_user_id AND n.attempt > videos.attempt)"""

HOLDER_SQL = f"""
SELECT c.status AS claim_status, c.attempt AS claim_attempt, c.claimed_at AS claim_claimed_at,
       c.lease_expires_at AS claim_lease_expires_at, NOT {FREE} AS blocks, v.*
  FROM video_claims c JOIN videos v ON v.id = c.video_id
 WHERE c.tg_user_id = :user AND c.key_digest = :digest
"""

_FENCE = "tg_user_id = :user AND key_digest = :digest AND attempt = :attempt"

# The sweep's question, answered from the partial index on live claims (ix_claims_generating_lease).
# Claims with a provider job (or a recovery point) are not failed but adopted (see the
# PostgreSQL store's SWEEP_SQL and ADOPTABLE_SQL).
_HAS_JOB = """EXISTS (SELECT 1 FROM videos j WHERE j.id = c.video_id
                  AND (j.provider_job_id IS NOT NULL OR j.job_requested_at IS NOT NULL))"""
SWEEP_SQL = f"""
UPDATE video_claims AS c SET status = 'failed', lease_expires_at = NULL
 WHERE status = 'generating' AND lease_expires_at <= {NOW} AND NOT {_HAS_JOB}
   AND video_id NOT IN (SELECT value FROM json_each(:mine)) RETURNING video_id
"""
ADOPTABLE_SQL = f"""
SELECT v.tg_user_id, v.prompt, v.prompt_key, v.category, v.params
  FROM video_claims c JOIN videos v ON v.id = c.video_id
 WHERE c.status = 'generating' AND c.lease_expires_at <= {NOW} AND {_HAS_JOB}
   AND c.video_id NOT IN (SELECT value FROM json_each(:mine))
 ORDER BY c.lease_expires_at LIMIT :limit
"""


def _fence(ticket: ClaimTicket) -> dict[str, Any]:
    return {"user": ticket.tg_user_id, "digest": key_digest(ticket.prompt_key), "attempt": ticket.attempt,
            "video_id": ticket.video_id}


def _result_params(result: GenerationResult | None) -> dict[str, Any]:
    if result is None:
        return {"url": None, "thumb": None, "cost": None}
    return {"url": result.video_url, "thumb": result.thumbnail_url, "cost": _money(result.cost_usd)}


def _params_text(params: Mapping[str, Any] | None) -> str | None:
    return None if params is None else params_json(params)


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


class SqliteStore:
    dialect = "sqlite"

    def __init__(self, path: str, *, timeout_seconds: float) -> None:
        self._path = path
        self._busy_ms = int(timeout_seconds * 1000)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._claims = ThreadPoolExecutor(1, thread_name_prefix="sqlite-claims")
        self._leases = ThreadPoolExecutor(1, thread_name_prefix="sqlite-leases")
        self._reads = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="sqlite-reads")

    # -- plumbing ------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._path != ":memory:" and not Path(self._path).exists():
                # sqlite3 would create an empty file and fail later on a missing table.
                raise sqlite3.OperationalError(f"no database file at {self._path}")
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _write(self, work: Callable[[sqlite3.Connection], T], deadline: float | None = None) -> T:
        conn = self._conn()
        _check(deadline)
        conn.execute("BEGIN IMMEDIATE")
        try:
            _check(deadline)
            result = work(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def _run(self, executor: ThreadPoolExecutor, work: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, work)
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(f"database unavailable: {_first_line(exc)}") from exc
        except sqlite3.DatabaseError as exc:
            raise StorageUnavailable("database unavailable: not a usable SQLite database") from exc

    def _read_one(self, sql: str, params: dict[str, Any]) -> sqlite3.Row | None:
        return self._conn().execute(sql, params).fetchone()

    def _read_all(self, sql: str, params: dict[str, Any]) -> list[sqlite3.Row]:
        return self._conn().execute(sql, params).fetchall()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        for executor in (self._claims, self._leases, self._reads):
            executor.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    async def ping(self) -> None:
        await self._run(self._reads, partial(self._read_one, "SELECT 1", {}))

    # -- the claim -----------------------------------------------------------------------

    def _claim(self, conn: sqlite3.Connection, request: NewVideo, rule: ClaimRule) -> ClaimTicket | Holder | None:
        params = {"user": request.tg_user_id, "digest": key_digest(request.prompt_key), "key": request.prompt_key,
                  "prompt": request.prompt, "category": request.category, "params": _params_text(request.params),
                  "lease_ahead": _seconds(rule.lease, "+"), "window_ago": _seconds(rule.window, "-")}
        before = conn.execute(HOLDER_SQL, params).fetchone()
        if rule.limits is not None and rule.limits.on and not (before is not None and before["blocks"]):
            lim.check_sqlite(conn, rule.limits, before, params)
        won = conn.execute(UPSERT_SQL, params).fetchone()
        if won is None:
            return None if before is None else holder_from_row(before)
        params.update(attempt=won["attempt"], claimed_at=won["claimed_at"])
        video_id = conn.execute(INSERT_CLAIMED_VIDEO_SQL, params).fetchone()["id"]
        conn.execute("UPDATE video_claims SET video_id = :video_id WHERE tg_user_id = :user AND key_digest = :digest",
                     {**params, "video_id": video_id})
        error = SUPERSEDED_ERROR.format(attempt=won["attempt"], video_id=video_id)
        # A first attempt has no earlier one to fence off.
        superseded = conn.execute(SUPERSEDE_SQL, {**params, "error": error}).fetchall() if won["attempt"] > 1 else []
        jobs = sorted((row["attempt"], row["provider_job_id"]) for row in superseded if row["provider_job_id"])
        # The job to adopt: the attempt fenced off just now, or the holder's if it failed without
        # its cost recorded; on the new row at once, so its cost is the new attempt's (see the
        # PostgreSQL store's CLAIM_SQL). Else the moment an attempt asked for a job it never recorded.
        adopt = jobs[-1][1] if jobs else None
        if adopt is None and before is not None and before["status"] == "failed" and before["cost_usd"] is None:
            adopt = before["provider_job_id"]
        requested = None
        if adopt is None:
            requested = max((row["job_requested_at"] for row in superseded if row["job_requested_at"]), default=None)
        video_params = params["params"]
        if adopt is not None or requested is not None:
            # A handed-on job keeps the params it was asked with: those of the attempt taken over.
            earlier = [(row["attempt"], row["params"]) for row in superseded]
            earlier += [(before["attempt"], before["params"])] if before is not None else []
            video_params = max(earlier, key=lambda pair: pair[0])[1] if earlier else None
            conn.execute("UPDATE videos SET provider_job_id = :job, job_requested_at = :requested, params = :params"
                         " WHERE id = :id", {"job": adopt, "requested": requested, "params": video_params, "id": video_id})
        _attach_callback(conn, video_id, request.callback_url, [row["id"] for row in superseded])
        return ClaimTicket(video_id, request.tg_user_id, request.prompt_key, won["attempt"],
                           as_utc(won["claimed_at"]), adopt, as_utc(requested),
                           None if video_params is None else json.loads(video_params))

    async def claim(self, request: NewVideo, rule: ClaimRule, deadline: float | None = None) -> ClaimTicket | Holder | None:
        # A holder that visibly blocks is answered from a read, without queueing for the write
        # lock (the PostgreSQL store does the same inside its one statement); anything else is
        # the conditional upsert's to decide.
        holder = await self.holder(request, rule)
        if holder is not None and holder.blocks:
            return holder
        # The request stops waiting at its deadline (503); a claim that got the write lock (or
        # its turn on the claims thread) later than that must not commit: nobody would generate
        # it, and a takeover would supersede a live holder. SQLite's clock is this host's, so the
        # monotonic deadline is checked as it is.
        if deadline is None:
            deadline = time.monotonic() + self._busy_ms / 1000
        return await self._run(self._claims, partial(
            self._write, partial(self._claim, request=request, rule=rule), deadline=deadline))

    async def holder(self, request: NewVideo, rule: ClaimRule) -> Holder | None:
        params = {"user": request.tg_user_id, "digest": key_digest(request.prompt_key),
                  "window_ago": _seconds(rule.window, "-")}
        row = await self._run(self._reads, partial(self._read_one, HOLDER_SQL, params))
        return None if row is None else holder_from_row(row)

    # -- the worker's side ---------------------------------------------------------------

    def _renew(self, conn: sqlite3.Connection, tickets: Sequence[ClaimTicket], lease: timedelta) -> set[int]:
        # Fenced on the attempt; a claim the sweep marked abandoned during an outage is taken
        # back if nobody took it over since (see the PostgreSQL store's RENEW_SQL).
        held: set[int] = set()
        ahead = _seconds(lease, "+")
        for ticket in tickets:
            row = conn.execute(
                f"UPDATE video_claims AS c SET status = 'generating', lease_expires_at = {_now_plus('lease_ahead')}"
                f" WHERE {_FENCE} AND (status = 'generating' OR (status = 'failed' AND EXISTS ("
                "   SELECT 1 FROM videos v WHERE v.id = c.video_id AND v.status = 'failed' AND v.error = :abandoned)))"
                " RETURNING video_id",
                {**_fence(ticket), "lease_ahead": ahead, "abandoned": ABANDONED_ERROR}).fetchone()
            if row is not None:
                held.add(row["video_id"])
                conn.execute(f"UPDATE videos SET updated_at = {NOW},"
                             " status = CASE WHEN status = 'failed' THEN 'generating' ELSE status END,"
                             " error = CASE WHEN status = 'failed' THEN NULL ELSE error END WHERE id = :id",
                             {"id": row["video_id"]})
        return held

    async def renew(self, tickets: Sequence[ClaimTicket], lease: timedelta) -> set[int]:
        if not tickets:
            return set()
        return await self._run(self._leases, partial(self._write, partial(self._renew, tickets=tickets, lease=lease)))

    def _request_job(self, conn: sqlite3.Connection, ticket: ClaimTicket) -> bool:
        live = conn.execute(f"SELECT 1 FROM video_claims WHERE {_FENCE} AND status = 'generating'"
                            f" AND video_id = :video_id AND lease_expires_at > {NOW}", _fence(ticket)).fetchone()
        if live is not None:
            conn.execute(f"UPDATE videos SET job_requested_at = {NOW}, updated_at = {NOW} WHERE id = :id",
                         {"id": ticket.video_id})
        return live is not None

    async def request_job(self, ticket: ClaimTicket) -> bool:
        return await self._run(self._leases, partial(self._write, partial(self._request_job, ticket=ticket)))

    def _record_job(self, conn: sqlite3.Connection, ticket: ClaimTicket, job_id: str) -> bool:
        # On this attempt's own row whether or not it still holds the claim (see the PostgreSQL store).
        conn.execute(f"UPDATE videos SET provider_job_id = :job, job_requested_at = NULL, updated_at = {NOW}"
                     " WHERE id = :id AND attempt = :attempt", {"job": job_id, "id": ticket.video_id,
                                                               "attempt": ticket.attempt})
        # An earlier attempt's late cost for the same job is given up: now this attempt's to pay
        # for (see the PostgreSQL store's RECORD_JOB_SQL).
        conn.execute(f"UPDATE videos SET cost_usd = NULL, updated_at = {NOW} WHERE provider_job_id = :job"
                     " AND tg_user_id = :user AND attempt < :attempt AND cost_usd IS NOT NULL",
                     {"job": job_id, "user": ticket.tg_user_id, "attempt": ticket.attempt})
        held = conn.execute(f"SELECT 1 FROM video_claims WHERE {_FENCE} AND status = 'generating'",
                            _fence(ticket)).fetchone()
        return held is not None

    async def record_job(self, ticket: ClaimTicket, job_id: str) -> bool:
        return await self._run(self._leases, partial(self._write, partial(self._record_job, ticket=ticket, job_id=job_id)))

    async def release(self, ticket: ClaimTicket) -> None:
        await self._run(self._leases, partial(self._write, partial(
            self._execute, sql=f"UPDATE video_claims SET lease_expires_at = {NOW}"
                               f" WHERE {_FENCE} AND status = 'generating' AND video_id = :video_id",
            params=_fence(ticket))))

    async def adoptable(self, limit: int, mine: Sequence[int] = ()) -> list[NewVideo]:
        rows = await self._run(self._reads, partial(self._read_all, ADOPTABLE_SQL,
                                                    {"limit": limit, "mine": json.dumps(list(mine))}))
        return [NewVideo(row["tg_user_id"], row["prompt"], row["prompt_key"], row["category"],
                         None if row["params"] is None else json.loads(row["params"])) for row in rows]

    def _complete(self, conn: sqlite3.Connection, ticket: ClaimTicket, result: GenerationResult) -> bool:
        # Fenced on the attempt only (see the PostgreSQL store): a late result nobody
        # superseded is accepted even after the sweep marked its claim failed.
        params = {**_fence(ticket), **_result_params(result), "late": LATE_ERROR}
        won = conn.execute(f"UPDATE video_claims SET status = 'ready', lease_expires_at = NULL WHERE {_FENCE}",
                           params).rowcount == 1
        if won:
            conn.execute(f"UPDATE videos SET status = 'ready', video_url = :url, thumbnail_url = :thumb, cost_usd = :cost,"
                         f" error = NULL, updated_at = {NOW} WHERE id = :video_id", params)
            # The callback, in the outcome's transaction; a result written again is not a new event.
            conn.execute(f"UPDATE video_callbacks SET {_REPORT_READY} WHERE video_id = :video_id"
                         f" AND event IS NOT '{READY_EVENT}'", params)
        else:
            conn.execute(f"UPDATE videos SET status = 'failed', updated_at = {NOW}, error = coalesce(error, :late),"
                         f" cost_usd = CASE WHEN {HANDED_ON} THEN cost_usd ELSE :cost END"
                         " WHERE id = :video_id AND status <> 'ready'", params)
        return won

    async def complete(self, ticket: ClaimTicket, result: GenerationResult) -> bool:
        return await self._run(self._leases, partial(self._write, partial(self._complete, ticket=ticket, result=result)))

    def _fail(self, conn: sqlite3.Connection, ticket: ClaimTicket, error: str, cost_usd: Decimal | None) -> None:
        params = {**_fence(ticket), "error": error[:2000], "cost": _money(cost_usd), "abandoned": ABANDONED_ERROR}
        # Before the video's row changes: only its own end reports, not a superseded attempt's
        # (already failed) nor one the sweep already reported (see the PostgreSQL store).
        conn.execute(f"UPDATE video_callbacks SET {_REPORT_FAILED} WHERE video_id = :video_id AND EXISTS ("
                     "SELECT 1 FROM videos WHERE id = :video_id AND status = 'generating')", params)
        conn.execute(f"UPDATE video_claims SET status = 'failed', lease_expires_at = NULL"
                     f" WHERE {_FENCE} AND status = 'generating'", params)
        conn.execute(f"UPDATE videos SET status = 'failed', updated_at = {NOW},"
                     f" cost_usd = CASE WHEN {HANDED_ON} THEN cost_usd ELSE coalesce(:cost, cost_usd) END,"
                     # the worker's word replaces the sweep's "abandoned", never a takeover's note
                     " error = CASE WHEN status = 'generating' OR error = :abandoned THEN :error"
                     " ELSE coalesce(error, :error) END"
                     " WHERE id = :video_id AND status <> 'ready'", params)

    async def fail(self, ticket: ClaimTicket, error: str, cost_usd: Decimal | None = None) -> None:
        await self._run(self._leases, partial(self._write, partial(self._fail, ticket=ticket, error=error, cost_usd=cost_usd)))

    def _sweep(self, conn: sqlite3.Connection, mine: Sequence[int]) -> list[int]:
        expired = [row["video_id"] for row in conn.execute(SWEEP_SQL, {"mine": json.dumps(list(mine))}).fetchall()]
        for video_id in expired:
            marked = conn.execute(f"UPDATE videos SET status = 'failed', error = :error, updated_at = {NOW}"
                                  " WHERE id = :id AND status = 'generating'", {"id": video_id, "error": ABANDONED_ERROR})
            if marked.rowcount:
                conn.execute(f"UPDATE video_callbacks SET {_REPORT_FAILED} WHERE video_id = :video_id",
                             {"video_id": video_id, "error": ABANDONED_ERROR})
        return sorted(expired)

    async def expire_abandoned(self, mine: Sequence[int] = ()) -> list[int]:
        return await self._run(self._leases, partial(self._write, partial(self._sweep, mine=mine)))

    # -- completion callbacks (service.stores.outbox), on the request writer's thread --------

    async def take_callbacks(self, token: str, lease: timedelta, limit: int) -> list[DueCallback]:
        return await self._run(self._claims, partial(self._write, partial(
            sqlite_take, token=token, lease=lease, limit=limit)))

    async def finish_callback(self, due: DueCallback, token: str, *, ok: bool, error: str | None,
                              delay: timedelta, give_up: timedelta) -> str | None:
        return await self._run(self._claims, partial(self._write, partial(
            sqlite_finish, video_id=due.video_id, token=token, delivery_id=due.delivery_id, ok=ok,
            error=None if error is None else error[:500], delay=delay, give_up=give_up)))

    async def callback_state(self, video_id: int) -> CallbackState | None:
        return await self._run(self._reads, lambda: sqlite_state(self._conn(), video_id))

    # -- Idempotency-Key (service.stores.idempotency) ------------------------------------

    def _begin_key(self, conn: sqlite3.Connection, params: dict[str, Any]) -> KeyBegun:
        taken = conn.execute(SQLITE_BEGIN_SQL, params).fetchone()
        if taken is not None:
            return KeyBegun(token=taken["created_at"])
        held = conn.execute(SQLITE_HOLDER_SQL, params).fetchone()
        return KeyBegun(fingerprint=held["fingerprint"], status_code=held["status_code"],
                        response_body=held["response_body"])

    async def begin_key(self, scope: str, key: str, fingerprint: str, window: timedelta,
                        in_progress: timedelta) -> KeyBegun:
        params = {"scope": scope, "key": key, "fingerprint": fingerprint,
                  "window_ago": _seconds(window, "-"), "in_progress_ago": _seconds(in_progress, "-")}
        return await self._run(self._claims, partial(self._write, partial(self._begin_key, params=params)))

    def _execute(self, conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> int:
        return conn.execute(sql, params).rowcount

    async def finish_key(self, scope: str, key: str, token: Any, status_code: int, response_body: str) -> bool:
        params = {"scope": scope, "key": key, "token": token, "status": status_code, "body": response_body}
        return await self._run(self._claims, partial(self._write, partial(
            self._execute, sql=SQLITE_FINISH_SQL, params=params))) == 1

    async def release_key(self, scope: str, key: str, token: Any) -> None:
        await self._run(self._claims, partial(self._write, partial(
            self._execute, sql=SQLITE_RELEASE_SQL, params={"scope": scope, "key": key, "token": token})))

    async def forget_keys(self, window: timedelta) -> int:
        return await self._run(self._leases, partial(self._write, partial(
            self._execute, sql=SQLITE_FORGET_SQL, params={"window_ago": _seconds(window, "-")})))

    # -- reads ---------------------------------------------------------------------------

    async def get(self, video_id: int) -> VideoRecord:
        row = await self._run(self._reads, partial(self._read_one, "SELECT * FROM videos WHERE id = :id", {"id": video_id}))
        if row is None:
            raise VideoNotFound(f"no video with id {video_id}")
        return video_record(row)

    # -- the Telegram webhook ------------------------------------------------------------

    def _record_update(self, conn: sqlite3.Connection, update_id: int) -> bool:
        return conn.execute(
            f"INSERT INTO telegram_updates (update_id, received_at) VALUES (:update_id, {NOW})"
            " ON CONFLICT (update_id) DO NOTHING RETURNING update_id", {"update_id": update_id}).fetchone() is not None

    async def record_update(self, update_id: int) -> bool:
        # The request writer's thread: a delivery is a request like /create.
        return await self._run(self._claims, partial(self._write, partial(self._record_update, update_id=update_id)))

    async def forget_updates(self, age: timedelta, limit: int) -> int:
        sql = ("DELETE FROM telegram_updates WHERE update_id IN (SELECT update_id FROM telegram_updates"
               f" WHERE received_at < {_now_plus('age')} LIMIT :limit)")
        return await self._run(self._leases, partial(self._write, partial(
            self._execute, sql=sql, params={"age": _seconds(age, "-"), "limit": limit})))

    # -- incident replay only ------------------------------------------------------------

    async def find_recent_by_prompt(
        self, tg_user_id: int, prompt: str, window: timedelta, statuses: tuple[str, ...] | None = None
    ) -> VideoRecord | None:
        sql = f"SELECT * FROM videos WHERE tg_user_id = :user AND prompt = :prompt AND created_at >= {_now_plus('ago')}"
        params: dict[str, Any] = {"user": tg_user_id, "prompt": prompt, "ago": _seconds(window, "-")}
        if statuses is not None:
            sql += " AND status IN (" + ", ".join(f":s{i}" for i in range(len(statuses))) + ")"
            params.update({f"s{i}": status for i, status in enumerate(statuses)})
        row = await self._run(self._reads, partial(self._read_one, sql + " ORDER BY created_at, id LIMIT 1", params))
        return None if row is None else VideoRecord.from_mapping(row)

    def _insert_video(self, conn: sqlite3.Connection, request: NewVideo, status: str,
                      result: GenerationResult | None) -> sqlite3.Row:
        return conn.execute(
            "INSERT INTO videos (tg_user_id, prompt, enhanced_prompt, category, status, prompt_key, attempt,"
            " video_url, thumbnail_url, cost_usd, created_at, updated_at, params)"
            f" VALUES (:user, :prompt, :prompt, :category, :status, :key, 1, :url, :thumb, :cost, {NOW}, {NOW}, :params)"
            " RETURNING *",
            {"user": request.tg_user_id, "prompt": request.prompt, "category": request.category,
             "status": status, "key": request.prompt_key, "params": _params_text(request.params),
             **_result_params(result)}).fetchone()

    async def insert_video(self, request: NewVideo, status: str, result: GenerationResult | None = None) -> VideoRecord:
        executor = self._leases if result else self._claims
        row = await self._run(executor, partial(self._write, partial(
            self._insert_video, request=request, status=status, result=result)))
        return VideoRecord.from_mapping(row)

    def _set_outcome(self, conn: sqlite3.Connection, video_id: int, status: str,
                     result: GenerationResult | None, error: str | None) -> None:
        conn.execute(f"UPDATE videos SET status = :status, error = :error, updated_at = {NOW}, video_url = :url,"
                     " thumbnail_url = :thumb, cost_usd = :cost WHERE id = :id",
                     {"id": video_id, "status": status, "error": error, **_result_params(result)})

    async def set_outcome(
        self, video_id: int, status: str, result: GenerationResult | None = None, error: str | None = None
    ) -> None:
        await self._run(self._leases, partial(self._write, partial(
            self._set_outcome, video_id=video_id, status=status, result=result, error=error)))


_REPORT_READY = SQLITE_REPORT_SET.format(event=f"'{READY_EVENT}'", video_url=":url", error="NULL")
_REPORT_FAILED = SQLITE_REPORT_SET.format(event=f"'{FAILED_EVENT}'", video_url="NULL", error=":error")


def _attach_callback(conn: sqlite3.Connection, video_id: int, url: str | None, superseded: list[int]) -> None:
    """The claim's callback row: the request's URL, or the superseded attempt's, moved (a
    superseded attempt never reports; see the PostgreSQL store's CLAIM_SQL)."""
    if superseded:
        ids = ",".join(str(int(i)) for i in superseded)
        moved = conn.execute(f"DELETE FROM video_callbacks WHERE video_id IN ({ids}) RETURNING video_id, url").fetchall()
        if url is None and moved:
            url = max(moved, key=lambda row: row["video_id"])["url"]
    if url is not None:
        conn.execute("INSERT INTO video_callbacks (video_id, url, state, attempts) VALUES (:id, :url, 'waiting', 0)",
                     {"id": video_id, "url": url})


def _check(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise StorageUnavailable("database unavailable: the write lock came too late")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
