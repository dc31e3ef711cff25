"""The PostgreSQL store: psycopg 3's async pools and hand-written SQL, one statement per decision.

`claim` is one round trip: a data-modifying CTE that reads the holder, tries the conditional upsert

    INSERT INTO video_claims … ON CONFLICT (tg_user_id, key_digest)
        DO UPDATE SET … WHERE <the holder no longer blocks> RETURNING …

and, in the same statement, inserts the winner's video and fences off the attempt it took
over. The upsert alone decides who wins; the read only spares it the work (and the row lock)
when the holder visibly blocks. Autocommit: the statement is its own transaction, so the
video row commits with the claim, before any money is spent.

Time: every decision uses `clock_timestamp()`, the moment of evaluation. `now()` would be the
transaction's start, before any lock wait; a lease computed from it could be born expired
behind a slow lock. An ON CONFLICT DO UPDATE's SET and WHERE are evaluated after the row lock
is taken; a fresh INSERT's VALUES after the table lock. The lease therefore runs from the
moment the claim is decided, milliseconds before it commits.

Ids: the video id is drawn from its sequence inside the upsert, so one statement can write
both rows (PostgreSQL cannot update the claim row twice in one statement). The INSERT branch
evaluates it even when it then conflicts, so takeovers and races leave gaps in the sequence; gaps are
harmless (a bigint lasts centuries at any rate this service can serve). A duplicate whose
holder is visible skips the INSERT and draws nothing.

Pools: requests and workers never share connections. The request pool (`db_pool_size` +
`db_max_overflow`) may be exhausted by a burst; heartbeats and outcome writes use their own
small pool, so a burst can never starve a lease into expiry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from service.claim import ClaimRule, ClaimTicket, Holder, Limits, NewVideo
from service.errors import InvalidRequest, StorageUnavailable, VideoNotFound
from service.records import GenerationResult
from service.stores.base import (
    ABANDONED_ERROR, LATE_ERROR, SUPERSEDED_ERROR, KeyBegun, VideoRecord, holder_from_row, key_digest, video_record,
)
from service.stores.idempotency import PG_BEGIN_SQL, PG_FINISH_SQL, PG_FORGET_SQL, PG_RELEASE_SQL
from service.stores.outbox import (
    FAILED_EVENT, PG_FINISH_SQL as PG_CALLBACK_FINISH_SQL, PG_RELEASE_SQL as PG_CALLBACK_RELEASE_SQL, PG_REPORT_SET,
    PG_STATE_SQL, PG_TAKE_SQL, READY_EVENT, CallbackState, DueCallback, due_from_row, state_from_row,
)
from service.stores import limits as lim

__all__ = ["PostgresStore"]

log = logging.getLogger("claimfirst.store")

T = TypeVar("T")

# Connections that sat idle longer than this are checked before use. A server restart kills
# every pooled connection; checking the idle ones replaces them without failing a request,
# while connections in steady use (the hot path) pay no extra round trip.
IDLE_CHECK_SECONDS = 5.0
# The workers' own pool: one connection for the heartbeat batch, one for outcome writes.
LEASE_POOL_SIZE = 2
# How long the best anchor of the database's clock is kept before a newer one replaces it
# whatever it says (see PostgresStore._observe).
CLOCK_ANCHOR_SECONDS = 60.0

# The rule, in SQL: `ClaimRule.blocks` negated, with the database's clock (`{now}`). Keep in
# step with service.claim; tests/service/test_claim_rule.py evaluates both on the same rows.
FREE_TEMPLATE = """(c.status = 'failed'
       OR (c.status = 'generating' AND (c.lease_expires_at IS NULL OR c.lease_expires_at <= {now}))
       OR (c.status <> 'generating' AND c.claimed_at < {now} - %(window)s))"""
_FREE_NOW = FREE_TEMPLATE.format(now="clock_timestamp()")

_HOLDER_COLUMNS = f"""c.status AS claim_status, c.attempt AS claim_attempt, c.claimed_at AS claim_claimed_at,
       c.lease_expires_at AS claim_lease_expires_at, NOT {_FREE_NOW} AS blocks, v.*"""

# A claim carries the moment its request gives up, on the database's clock (`until`): a
# statement that only runs after that (a frozen server, a slow network, a lock) changes
# nothing. Without it, a duplicate that had already answered 503 could, on thaw, find the live
# holder's lease expired and take the key over with nobody to generate it.
_IN_TIME = "(%(until)s::timestamptz IS NULL OR clock_timestamp() <= %(until)s::timestamptz)"

CLAIM_SQL = f"""
WITH held AS (
    -- The current holder, as this statement's snapshot sees it, judged on the database's clock.
    SELECT {_HOLDER_COLUMNS}
      FROM video_claims c JOIN videos v ON v.id = c.video_id
     WHERE c.tg_user_id = %(user)s AND c.key_digest = %(digest)s
), claimed AS (
    -- The one conditional write. A holder that visibly blocks makes it write (and lock) nothing:
    -- a duplicate of a claimed prompt, the common case, takes no row lock and burns no id.
    -- Any other case, including a holder committed after our snapshot, is the upsert's to decide.
    INSERT INTO video_claims AS c (tg_user_id, key_digest, video_id, attempt, status, claimed_at, lease_expires_at)
    SELECT %(user)s, %(digest)s, nextval(%(seq)s::regclass), 1, 'generating',
           clock_timestamp(), clock_timestamp() + %(lease)s
     WHERE NOT EXISTS (SELECT 1 FROM held WHERE held.blocks) AND {_IN_TIME}
    ON CONFLICT (tg_user_id, key_digest) DO UPDATE
       SET video_id = nextval(%(seq)s::regclass), attempt = c.attempt + 1, status = 'generating',
           claimed_at = clock_timestamp(), lease_expires_at = clock_timestamp() + %(lease)s
     WHERE {_FREE_NOW} AND {_IN_TIME}
    RETURNING c.video_id, c.attempt, c.claimed_at
), superseded AS (
    -- A takeover: an earlier attempt still marked generating lost its lease (its worker died or
    -- stalled). Fence it off now rather than wait for the sweep, and hand its provider job on.
    UPDATE videos AS s
       SET status = 'failed', updated_at = claimed.claimed_at,
           error = replace(replace(%(superseded)s, '{{attempt}}', claimed.attempt::text),
                           '{{video_id}}', claimed.video_id::text)
      FROM claimed
     -- A first attempt fences nothing. Written as a subquery, so that it is a one-time filter
     -- evaluated before the scan of the user's generating videos, not a join condition after it.
     WHERE (SELECT attempt FROM claimed) > 1
       AND s.tg_user_id = %(user)s AND s.prompt_key = %(key)s AND s.status = 'generating'
       AND s.attempt < claimed.attempt
    RETURNING s.id, s.provider_job_id, s.job_requested_at, s.attempt, s.params
), handed AS (
    -- The job the new attempt adopts instead of paying again: that of the attempt fenced off
    -- just now, or the holder's when it failed without its cost recorded (its outcome was never
    -- written: the job may run on). It goes on the new row in this statement, so the job's cost
    -- is the new attempt's from the moment it is handed on (outcome writes look it up by id).
    -- An attempt that asked for a job and never recorded its id hands on that moment instead.
    SELECT coalesce(
             (SELECT provider_job_id FROM superseded WHERE provider_job_id IS NOT NULL ORDER BY attempt DESC LIMIT 1),
             (SELECT h.provider_job_id FROM held h WHERE h.status = 'failed' AND h.cost_usd IS NULL)) AS job_id,
           (SELECT max(job_requested_at) FROM superseded WHERE provider_job_id IS NULL) AS requested_at
), video AS (
    INSERT INTO videos (id, tg_user_id, prompt, enhanced_prompt, category, status, prompt_key, attempt,
                        created_at, updated_at, provider_job_id, job_requested_at, params)
    SELECT video_id, %(user)s, %(prompt)s, %(prompt)s, %(category)s, 'generating', %(key)s, attempt,
           claimed_at, claimed_at, handed.job_id, CASE WHEN handed.job_id IS NULL THEN handed.requested_at END,
           -- A handed-on job keeps the params it was asked with: those of the attempt taken over.
           CASE WHEN handed.job_id IS NULL AND handed.requested_at IS NULL THEN %(params)s::jsonb
                ELSE (SELECT e.params FROM (SELECT params, attempt FROM superseded
                                            UNION ALL SELECT params, attempt FROM held) AS e
                       ORDER BY e.attempt DESC LIMIT 1) END
      FROM claimed, handed
    RETURNING id, attempt, created_at, provider_job_id, job_requested_at, params
), moved AS (
    -- A superseded attempt never reports (service.stores.outbox): its callback moves to the
    -- attempt that took it over, unless the new request named its own.
    DELETE FROM video_callbacks k USING superseded WHERE k.video_id = superseded.id
    RETURNING k.url, superseded.attempt
), callback AS (
    INSERT INTO video_callbacks (video_id, url, state, attempts)
    SELECT video.id, url, 'waiting', 0
      FROM video, (SELECT coalesce(%(callback_url)s::text, (SELECT url FROM moved ORDER BY attempt DESC LIMIT 1)) AS url) u
     WHERE u.url IS NOT NULL
)
SELECT video.id AS won_id, video.attempt AS won_attempt, video.created_at AS won_created_at,
       video.provider_job_id AS adopt_job_id, video.job_requested_at AS adopt_requested_at,
       video.params AS won_params,
       clock_timestamp() AS db_now, held.*
  FROM (SELECT 1) AS one LEFT JOIN video ON true LEFT JOIN held ON video.id IS NULL
"""

# With limits on, a claim is a short pipelined transaction: an advisory lock, then CLAIM_SQL with
# the limits spliced in (`limits.limited_claim_sql`; service.stores.limits says why, and what counts).


HOLDER_SQL = f"""
SELECT {_HOLDER_COLUMNS}
  FROM video_claims c JOIN videos v ON v.id = c.video_id
 WHERE c.tg_user_id = %(user)s AND c.key_digest = %(digest)s
"""

_FENCE = "c.tg_user_id = %(user)s AND c.key_digest = %(digest)s AND c.attempt = %(attempt)s"

# Fenced on the attempt. A claim the sweep marked abandoned while this worker could not reach
# the database (an outage longer than the lease) is still this attempt's if nobody took it
# over since: the beat takes it back rather than cancel a generation that is being paid for.
# A claim its own worker marked failed or ready is never revived.
# The arrays go in binary (`%(…)b`): as text, psycopg quotes each element with a regex, and
# with ten thousand leases held that was 20 ms of the event loop per beat (half its cost).
RENEW_SQL = """
WITH renewed AS (
    UPDATE video_claims c SET status = 'generating', lease_expires_at = clock_timestamp() + %(lease)s
      FROM unnest(%(users)b::bigint[], %(digests)b::bytea[], %(attempts)b::int[]) AS t(u, d, a), videos v
     WHERE c.tg_user_id = t.u AND c.key_digest = t.d AND c.attempt = t.a AND v.id = c.video_id
       AND (c.status = 'generating' OR (c.status = 'failed' AND v.status = 'failed' AND v.error = %(abandoned)s))
    RETURNING c.video_id
), touched AS (
    -- updated_at doubles as "last heard from its worker", so a reader of `videos` alone (the
    -- audit's stuck-claim report, a Supabase dashboard) can tell a long generation from a dead one.
    UPDATE videos v SET updated_at = clock_timestamp(),
           status = CASE WHEN v.status = 'failed' THEN 'generating' ELSE v.status END,
           error = CASE WHEN v.status = 'failed' THEN NULL ELSE v.error END
      FROM renewed WHERE v.id = renewed.video_id
)
SELECT video_id FROM renewed
"""

# The recovery point before a provider is asked for a job: only while this attempt holds a
# live lease. A successor that finds it without a job id looks for the job before paying again.
REQUEST_JOB_SQL = f"""
UPDATE videos v SET job_requested_at = clock_timestamp(), updated_at = clock_timestamp()
  FROM video_claims c
 WHERE v.id = %(video_id)s AND c.video_id = v.id AND {_FENCE} AND c.status = 'generating'
   AND c.lease_expires_at > clock_timestamp()
RETURNING v.id
"""

# The job's id goes on this attempt's own row whether or not the attempt still holds the claim:
# the job exists and is paid for, and the books must know it. Whether the claim is still held
# is the answer (a lost claim's job is left running: its successor may have adopted it).
#
# A job found at the provider from a recovery point can be one an earlier attempt asked for:
# paused before it recorded the id, it woke after this attempt took the claim over, recorded the
# job on its own row and wrote its late result's cost there. From now on the job is this
# attempt's to pay for, as a job the claim hands on is, so that earlier row gives its cost up
# (the other order, this record first, is `_HANDED_ON`'s). One job, one cost.
RECORD_JOB_SQL = f"""
WITH recorded AS (
    UPDATE videos v SET provider_job_id = %(job)s, job_requested_at = NULL, updated_at = clock_timestamp()
     WHERE v.id = %(video_id)s AND v.attempt = %(attempt)s
), earlier AS (
    UPDATE videos o SET cost_usd = NULL, updated_at = clock_timestamp()
     WHERE o.provider_job_id = %(job)s AND o.tg_user_id = %(user)s AND o.attempt < %(attempt)s
       AND o.cost_usd IS NOT NULL
)
SELECT EXISTS (SELECT 1 FROM video_claims c WHERE {_FENCE} AND c.status = 'generating') AS held
"""

# A job handed on to a newer attempt is that attempt's to pay for: this row keeps no cost for it.
_HANDED_ON = """EXISTS (SELECT 1 FROM videos n WHERE n.provider_job_id = v.provider_job_id AND n.id <> v.id
                 AND n.tg_user_id = v.tg_user_id AND n.attempt > v.attempt)"""

# Fenced on the attempt only, not on status = 'generating': a result that arrives after an
# outage, when the sweep has already marked its claim failed, is still this attempt's and
# nobody superseded it, so it is accepted. Only a newer attempt (a takeover) fences it off.
COMPLETE_SQL = f"""
WITH won AS (
    UPDATE video_claims c SET status = 'ready', lease_expires_at = NULL WHERE {_FENCE}
    RETURNING c.video_id
), published AS (
    UPDATE videos v SET status = 'ready', video_url = %(url)s, thumbnail_url = %(thumb)s, cost_usd = %(cost)s,
           error = NULL, updated_at = clock_timestamp()
     WHERE v.id = %(video_id)s AND EXISTS (SELECT 1 FROM won)
), rejected AS (
    -- Too late: the claim was taken over. The money is spent, so the cost is kept on this
    -- attempt's row, but its result is not published.
    UPDATE videos v SET status = 'failed', updated_at = clock_timestamp(), error = coalesce(v.error, %(late)s),
           cost_usd = CASE WHEN {_HANDED_ON} THEN v.cost_usd ELSE %(cost)s END
     WHERE v.id = %(video_id)s AND v.status <> 'ready' AND NOT EXISTS (SELECT 1 FROM won)
), reported AS (
    -- The completion callback, due with the outcome that makes it (service.stores.outbox); a
    -- result written again (a retried write whose first try landed) is not a new event.
    UPDATE video_callbacks k SET {PG_REPORT_SET.format(event=f"'{READY_EVENT}'", video_url="%(url)s", error="NULL")}
     WHERE k.video_id = %(video_id)s AND EXISTS (SELECT 1 FROM won) AND k.event IS DISTINCT FROM '{READY_EVENT}'
)
SELECT EXISTS (SELECT 1 FROM won) AS won
"""

FAIL_SQL = f"""
WITH freed AS (
    UPDATE video_claims c SET status = 'failed', lease_expires_at = NULL WHERE {_FENCE} AND c.status = 'generating'
), reported AS (
    -- Only the video's own end reports: `g` is the row as it was before this statement, so a
    -- superseded attempt (already failed) or one the sweep already reported does not.
    UPDATE video_callbacks k SET {PG_REPORT_SET.format(event=f"'{FAILED_EVENT}'", video_url="NULL", error="%(error)s")}
      FROM videos g WHERE k.video_id = %(video_id)s AND g.id = k.video_id AND g.status = 'generating'
)
UPDATE videos v SET updated_at = clock_timestamp(), status = 'failed',
       cost_usd = CASE WHEN {_HANDED_ON} THEN v.cost_usd ELSE coalesce(%(cost)s, v.cost_usd) END,
       -- The worker's own word replaces the sweep's "abandoned" (so no late heartbeat revives
       -- it) but never a takeover's "superseded".
       error = CASE WHEN v.status = 'generating' OR v.error = %(abandoned)s THEN %(error)s
                    ELSE coalesce(v.error, %(error)s) END
 WHERE v.id = %(video_id)s AND v.status <> 'ready'
"""

# The sweep fails only abandoned claims that never asked a provider for a job: nothing was
# paid, nothing is lost. A claim with a job (or a recovery point) stays generating until it is
# adopted (ADOPTABLE_SQL): marking it failed would throw away a paid result nobody asks for again.
_NO_JOB = """NOT EXISTS (SELECT 1 FROM videos j WHERE j.id = video_claims.video_id
                     AND (j.provider_job_id IS NOT NULL OR j.job_requested_at IS NOT NULL))"""

SWEEP_SQL = f"""
WITH expired AS (
    UPDATE video_claims SET status = 'failed', lease_expires_at = NULL
     WHERE status = 'generating' AND lease_expires_at <= clock_timestamp() AND {_NO_JOB}
       AND NOT video_id = ANY(%(mine)s)
    RETURNING video_id
), marked AS (
    UPDATE videos v SET status = 'failed', error = %(error)s, updated_at = clock_timestamp()
      FROM expired WHERE v.id = expired.video_id AND v.status = 'generating'
    RETURNING v.id
), reported AS (
    UPDATE video_callbacks k SET {PG_REPORT_SET.format(event=f"'{FAILED_EVENT}'", video_url="NULL", error="%(error)s")}
      FROM marked WHERE k.video_id = marked.id
)
SELECT video_id FROM expired ORDER BY video_id
"""

# Abandoned claims whose job may still be running or done: the sweeping process claims each on
# its user's behalf (the same conditional upsert as a request) and adopts the job. Oldest first,
# through the partial index on live claims.
ADOPTABLE_SQL = """
SELECT v.tg_user_id, v.prompt, v.prompt_key, v.category, v.params
  FROM video_claims c JOIN videos v ON v.id = c.video_id
 WHERE c.status = 'generating' AND c.lease_expires_at <= clock_timestamp()
   AND (v.provider_job_id IS NOT NULL OR v.job_requested_at IS NOT NULL) AND NOT c.video_id = ANY(%(mine)s)
 ORDER BY c.lease_expires_at
 LIMIT %(limit)s
"""

# A stopping worker hands its running job over: its lease ends now, the job runs on, and the
# next sweep anywhere (or the user's retry) adopts it. Its row stays generating, so the
# takeover hands the job (and its cost) on to the adopter.
RELEASE_SQL = f"""
UPDATE video_claims c SET lease_expires_at = clock_timestamp()
 WHERE {_FENCE} AND c.status = 'generating' AND c.video_id = %(video_id)s
"""

# Two deliveries of one update racing each other: the primary key lets exactly one insert
# through; the other conflicts, returns no row, and is told it is a redelivery.
RECORD_UPDATE_SQL = """
INSERT INTO telegram_updates (update_id, received_at) VALUES (%(update_id)s, clock_timestamp())
ON CONFLICT (update_id) DO NOTHING
RETURNING update_id
"""

FORGET_UPDATES_SQL = """
DELETE FROM telegram_updates WHERE update_id IN (
    SELECT update_id FROM telegram_updates WHERE received_at < clock_timestamp() - %(age)s LIMIT %(limit)s)
"""

_INSERT_VIDEO_SQL = """
INSERT INTO videos (tg_user_id, prompt, enhanced_prompt, category, status, prompt_key, attempt,
                    video_url, thumbnail_url, cost_usd, created_at, updated_at, params)
VALUES (%(user)s, %(prompt)s, %(prompt)s, %(category)s, %(status)s, %(key)s, 1, %(url)s, %(thumb)s, %(cost)s,
        clock_timestamp(), clock_timestamp(), %(params)s::jsonb)
RETURNING *
"""


def _jsonb(params: Mapping[str, Any] | None) -> Jsonb | None:
    return None if params is None else Jsonb(params)


def _result_params(result: GenerationResult | None) -> dict[str, Any]:
    if result is None:
        return {"url": None, "thumb": None, "cost": None}
    return {"url": result.video_url, "thumb": result.thumbnail_url, "cost": result.cost_usd}


def _fence(ticket: ClaimTicket) -> dict[str, Any]:
    return {"user": ticket.tg_user_id, "digest": key_digest(ticket.prompt_key), "attempt": ticket.attempt,
            "video_id": ticket.video_id}


class PostgresStore:
    dialect = "postgresql"

    def __init__(self, conninfo: str, *, pool_size: int, max_overflow: int, timeout_seconds: float,
                 prepare: bool = True) -> None:
        self._timeout = timeout_seconds
        self._seq: str | None = None
        self._clock: tuple[float, float] | None = None  # (monotonic when seen, database epoch - monotonic)
        self._returned: dict[int, float] = {}
        self._limited: dict[Limits, str] = {}  # the limited claim statement, per configuration
        common = dict(
            kwargs={"autocommit": True, "connect_timeout": max(1, round(timeout_seconds)), "row_factory": dict_row,
                    # None: never prepared on the server, for a transaction-mode pooler (settings.db_prepare).
                    **({} if prepare else {"prepare_threshold": None})},
            configure=self._configure, open=False, reconnect_timeout=0,
        )
        self._requests = AsyncConnectionPool(
            conninfo, min_size=1, max_size=pool_size + max_overflow, timeout=timeout_seconds,
            check=self._check_if_idle, name="requests", **common,
        )
        self._leases = AsyncConnectionPool(
            conninfo, min_size=1, max_size=LEASE_POOL_SIZE, timeout=timeout_seconds,
            check=self._check_if_idle, name="leases", **common,
        )
        # Callers queue here, not in the pool: a pool wait is an `asyncio.wait_for`, a task per
        # waiting caller, and with 32 clients on 8 connections most requests wait. A semaphore
        # wait is a future. One slot per connection the pool may open, so the pool's own wait
        # (and its PoolTimeout) is left for a connection being (re)opened.
        self._slots = {id(self._requests): asyncio.Semaphore(pool_size + max_overflow),
                       id(self._leases): asyncio.Semaphore(LEASE_POOL_SIZE)}

    # -- pool plumbing -------------------------------------------------------------------

    async def _configure(self, conn: psycopg.AsyncConnection) -> None:
        # The server gives up too, so a statement abandoned by a timed-out request does not
        # hold its locks; UTC so timestamps come back in one zone.
        await conn.execute(f"SET statement_timeout = {int(self._timeout * 1000)}")
        await conn.execute("SET TIME ZONE 'UTC'")

    async def _check_if_idle(self, conn: psycopg.AsyncConnection) -> None:
        returned = self._returned.pop(id(conn), None)
        if returned is None or time.monotonic() - returned > IDLE_CHECK_SECONDS:
            await conn.execute("SELECT 1")

    async def open(self) -> None:
        # Not waiting for the pools to fill: a database that is down at start is reported by
        # the first request (503) and by /healthz, never by a crash.
        await self._requests.open(wait=False)
        await self._leases.open(wait=False)

    async def close(self) -> None:
        await self._requests.close()
        await self._leases.close()

    async def _execute(self, pool: AsyncConnectionPool, sql: str, params: dict[str, Any],
                       fetch: Callable[[psycopg.AsyncCursor[Any]], Awaitable[T]]) -> T:
        """Run one statement on a connection of `pool`; what `fetch` reads from its cursor.

        One coroutine, not the pool's `connection()` inside a context manager of our own: on
        the hot path each layer of those was a generator to step in and out of. The pool's
        own context also commits or rolls back on the way out, which autocommit makes a no-op,
        except after a cancelled statement, where its rollback would wait on the server.
        `putconn` instead discards a connection left mid-statement.
        """
        try:
            # Unbounded here: every store call the service makes runs under `within` with the
            # request's deadline (service.deadlines), started before this wait and as long as
            # the pool's timeout, so a bound of our own would never fire first and would cost
            # each contended call a timer. A cancelled waiter takes no slot with it.
            slots = self._slots[id(pool)]
            await slots.acquire()
            try:
                conn = await pool.getconn()
                try:
                    return await fetch(await conn.execute(sql, params))
                finally:
                    # When it goes back, for `_check_if_idle`. Not the pool's `reset` hook:
                    # with one, every return is a task for the pool's worker, on every request.
                    self._returned[id(conn)] = time.monotonic()
                    await pool.putconn(conn)
            finally:
                slots.release()
        except (PoolTimeout, psycopg.DataError, psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._translated(pool, exc) from exc

    async def _with_connection(self, pool: AsyncConnectionPool,
                               work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        """`_execute` for work of several statements on one connection (a transaction); the
        same slots and error mapping. Separate, so the one-statement hot path stays as it is."""
        try:
            slots = self._slots[id(pool)]
            await slots.acquire()
            try:
                conn = await pool.getconn()
                try:
                    return await work(conn)
                finally:
                    self._returned[id(conn)] = time.monotonic()
                    await pool.putconn(conn)
            finally:
                slots.release()
        except (PoolTimeout, psycopg.DataError, psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._translated(pool, exc) from exc

    def _translated(self, pool: AsyncConnectionPool, exc: Exception) -> Exception:
        """The service's error for a database error met on `pool` (the module's docstring says which)."""
        if isinstance(exc, PoolTimeout):
            log.warning("%s pool: no connection within %.1f s (%s)", pool.name, self._timeout, exc)
            return StorageUnavailable("database unavailable: no connection in time")
        if isinstance(exc, psycopg.DataError):
            return InvalidRequest(f"the database cannot store this value: {_first_line(exc)}")
        log.warning("database error: %s", _first_line(exc))
        return StorageUnavailable("database unavailable")

    async def _one(self, pool: AsyncConnectionPool, sql: str, params: dict[str, Any]) -> dict[str, Any] | None:
        return await self._execute(pool, sql, params, psycopg.AsyncCursor.fetchone)

    async def _all(self, pool: AsyncConnectionPool, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return await self._execute(pool, sql, params, psycopg.AsyncCursor.fetchall)

    async def _rowcount(self, pool: AsyncConnectionPool, sql: str, params: dict[str, Any]) -> int:
        return await self._execute(pool, sql, params, _rowcount)

    async def _sequence(self) -> str:
        if self._seq is None:
            row = await self._one(self._requests, "SELECT pg_get_serial_sequence('videos', 'id') AS seq", {})
            assert row is not None and row["seq"], "videos.id has no sequence: is the schema migrated?"
            self._seq = row["seq"]
        return self._seq

    async def ping(self) -> None:
        await self._one(self._requests, "SELECT 1", {})

    # -- the claim -----------------------------------------------------------------------

    async def claim(self, request: NewVideo, rule: ClaimRule, deadline: float | None = None) -> ClaimTicket | Holder | None:
        if deadline is not None and self._clock is None:
            await self._read_clock()  # once per process: what "until" means on the database's clock
        params = {
            "user": request.tg_user_id, "digest": key_digest(request.prompt_key), "key": request.prompt_key,
            "prompt": request.prompt, "category": request.category, "lease": rule.lease, "window": rule.window,
            "seq": await self._sequence(), "superseded": SUPERSEDED_ERROR, "until": self._until(deadline),
            "params": _jsonb(request.params),
            "callback_url": request.callback_url,
        }
        if rule.limits is not None and rule.limits.on:
            return await self._claim_limited(request, rule, rule.limits, params)
        row = await self._one(self._requests, CLAIM_SQL, params)
        assert row is not None  # the statement always returns its one row
        self._observe(row["db_now"])
        if row["won_id"] is not None:
            return ClaimTicket(row["won_id"], request.tg_user_id, request.prompt_key, row["won_attempt"],
                               row["won_created_at"], row["adopt_job_id"], row["adopt_requested_at"],
                               row["won_params"])
        return None if row["claim_status"] is None else holder_from_row(row)

    def _claimed(self, request: NewVideo, row: dict[str, Any]) -> ClaimTicket | Holder | None:
        # As `claim` reads CLAIM_SQL's row (inlined there: the hot path).
        self._observe(row["db_now"])
        if row["won_id"] is not None:
            return ClaimTicket(row["won_id"], request.tg_user_id, request.prompt_key, row["won_attempt"],
                               row["won_created_at"], row["adopt_job_id"], row["adopt_requested_at"])
        return None if row["claim_status"] is None else holder_from_row(row)

    async def _claim_limited(self, request: NewVideo, rule: ClaimRule, limits: Limits,
                             params: dict[str, Any]) -> ClaimTicket | Holder | None:
        # A duplicate is answered from a plain read, without the lock or any limit: it starts
        # nothing, so it answers 409 even when the user is over a limit.
        holder = await self.holder(request, rule)
        if holder is not None and holder.blocks:
            return holder
        sql = self._limited.get(limits)
        if sql is None:
            sql = self._limited[limits] = lim.limited_claim_sql(CLAIM_SQL, limits)
        # One lock for everyone with a budget (it is everyone's), else one per user.
        lock = ":claimfirst.limits.budget" if limits.budget_usd is not None else f":claimfirst.limits.user.{request.tg_user_id}"
        params = {**params, **lim.limit_params(limits), "lock": lock}

        async def claim(conn: psycopg.AsyncConnection) -> dict[str, Any] | None:
            # Pipelined: BEGIN, the lock, the claim and COMMIT go in one round trip, so the lock
            # is held for the server's work only, never across a round trip to this process.
            async with conn.pipeline():
                async with conn.transaction():
                    await conn.execute(lim.PG_LOCK_SQL, params)
                    cursor = await conn.execute(sql, params)
            return await cursor.fetchone()

        row = await self._with_connection(self._requests, claim)
        assert row is not None  # the statement always returns its one row
        if row["won_id"] is None and not (row["claim_status"] is not None and row["blocks"]) and not row["lim_ok"]:
            usage = lim.Usage(False, row["lim_daily"], row["lim_running"], row["lim_spent"])
            raise lim.refusal(limits, usage, {limit: await self._wait(limit, limits, usage, params)
                                              for limit in lim.exceeded(limits, usage)})
        return self._claimed(request, row)

    async def _wait(self, limit: str, limits: Limits, usage: lim.Usage, params: dict[str, Any]) -> float | None:
        """Seconds until `limit` has room, as the stored rows say (for Retry-After)."""
        if limit == lim.DAILY:
            row = await self._one(self._requests, lim.PG["daily_wait"],
                                  {**params, "skip": max(0, (usage.daily or 0) - (limits.user_daily or 0))})
            return None if row is None else float(row["wait"])
        if limit == lim.CONCURRENT:
            row = await self._one(self._requests, lim.PG["running_age"], params)
            return None if row is None or row["oldest"] is None else (row["now"] - row["oldest"]).total_seconds()
        row = await self._one(self._requests, lim.PG["budget_wait"], params)
        return None if row is None else float(row["wait"])

    # -- the database's clock, as seen from here -------------------------------------------
    #
    # A deadline is a moment on this process's monotonic clock; the claim statement needs it on
    # the database's. Each claim brings back `clock_timestamp()`: anchored at the moment its answer
    # arrived, it is at most one round trip behind the database's clock, so "until" computed
    # from it is early, never late. The best (latest) anchor is kept for a minute, then the next
    # one replaces it, so a database clock that was stepped back is followed within a minute.

    async def _read_clock(self) -> None:
        row = await self._one(self._requests, "SELECT clock_timestamp() AS db_now", {})
        assert row is not None
        self._observe(row["db_now"])

    def _observe(self, db_now: datetime) -> None:
        received = time.monotonic()
        offset = db_now.timestamp() - received
        if self._clock is None or offset > self._clock[1] or received - self._clock[0] > CLOCK_ANCHOR_SECONDS:
            self._clock = (received, offset)

    def _until(self, deadline: float | None) -> datetime | None:
        if deadline is None or self._clock is None:
            return None
        return datetime.fromtimestamp(deadline + self._clock[1], UTC)

    async def holder(self, request: NewVideo, rule: ClaimRule) -> Holder | None:
        row = await self._one(self._requests, HOLDER_SQL, {
            "user": request.tg_user_id, "digest": key_digest(request.prompt_key), "window": rule.window})
        return None if row is None else holder_from_row(row)

    # -- the worker's side ---------------------------------------------------------------

    async def renew(self, tickets: Sequence[ClaimTicket], lease: timedelta) -> set[int]:
        if not tickets:
            return set()
        rows = await self._all(self._leases, RENEW_SQL, {
            "lease": lease, "users": [t.tg_user_id for t in tickets],
            "digests": [key_digest(t.prompt_key) for t in tickets], "attempts": [t.attempt for t in tickets],
            "abandoned": ABANDONED_ERROR,
        })
        return {row["video_id"] for row in rows}

    async def request_job(self, ticket: ClaimTicket) -> bool:
        return await self._one(self._leases, REQUEST_JOB_SQL, _fence(ticket)) is not None

    async def record_job(self, ticket: ClaimTicket, job_id: str) -> bool:
        row = await self._one(self._leases, RECORD_JOB_SQL, {**_fence(ticket), "job": job_id})
        return bool(row and row["held"])

    async def release(self, ticket: ClaimTicket) -> None:
        await self._rowcount(self._leases, RELEASE_SQL, _fence(ticket))

    async def adoptable(self, limit: int, mine: Sequence[int] = ()) -> list[NewVideo]:
        rows = await self._all(self._leases, ADOPTABLE_SQL, {"limit": limit, "mine": list(mine)})
        return [NewVideo(row["tg_user_id"], row["prompt"], row["prompt_key"], row["category"], row["params"])
                for row in rows]

    async def complete(self, ticket: ClaimTicket, result: GenerationResult) -> bool:
        row = await self._one(self._leases, COMPLETE_SQL, {**_fence(ticket), **_result_params(result), "late": LATE_ERROR})
        return bool(row and row["won"])

    async def fail(self, ticket: ClaimTicket, error: str, cost_usd: Decimal | None = None) -> None:
        await self._rowcount(self._leases, FAIL_SQL, {**_fence(ticket), "error": error[:2000], "cost": cost_usd,
                                                      "abandoned": ABANDONED_ERROR})

    async def expire_abandoned(self, mine: Sequence[int] = ()) -> list[int]:
        rows = await self._all(self._leases, SWEEP_SQL, {"error": ABANDONED_ERROR, "mine": list(mine)})
        return [row["video_id"] for row in rows]

    # -- completion callbacks (service.stores.outbox) -------------------------------------
    #
    # On the request pool: deliveries are background work, and the two reserved connections are
    # for heartbeats and outcomes, which must never wait behind them.

    async def take_callbacks(self, token: str, lease: timedelta, limit: int) -> list[DueCallback]:
        rows = await self._all(self._requests, PG_TAKE_SQL, {"token": token, "lease": lease, "limit": limit})
        return [due_from_row(row) for row in rows]

    async def finish_callback(self, due: DueCallback, token: str, *, ok: bool, error: str | None,
                              delay: timedelta, give_up: timedelta) -> str | None:
        row = await self._one(self._requests, PG_CALLBACK_FINISH_SQL, {
            "video_id": due.video_id, "token": token, "delivery_id": due.delivery_id, "ok": ok,
            "error": None if error is None else error[:500], "delay": delay, "give_up": give_up})
        if row is None:  # its event was replaced while it was being sent: the new one goes next
            await self._rowcount(self._requests, PG_CALLBACK_RELEASE_SQL, {"video_id": due.video_id, "token": token})
            return None
        return str(row["state"])

    async def callback_state(self, video_id: int) -> CallbackState | None:
        return state_from_row(await self._one(self._requests, PG_STATE_SQL, {"id": video_id}))

    # -- Idempotency-Key (service.stores.idempotency) ------------------------------------

    async def begin_key(self, scope: str, key: str, fingerprint: str, window: timedelta,
                        in_progress: timedelta) -> KeyBegun:
        row = await self._one(self._requests, PG_BEGIN_SQL, {
            "scope": scope, "key": key, "fingerprint": fingerprint, "window": window, "in_progress": in_progress})
        assert row is not None  # the statement always returns its one row
        return KeyBegun(**row)

    async def finish_key(self, scope: str, key: str, token: Any, status_code: int, response_body: str) -> bool:
        row = await self._one(self._requests, PG_FINISH_SQL, {
            "scope": scope, "key": key, "token": token, "status": status_code, "body": response_body})
        return row is not None

    async def release_key(self, scope: str, key: str, token: Any) -> None:
        await self._rowcount(self._requests, PG_RELEASE_SQL, {"scope": scope, "key": key, "token": token})

    async def forget_keys(self, window: timedelta) -> int:
        return await self._rowcount(self._leases, PG_FORGET_SQL, {"window": window})

    # -- reads ---------------------------------------------------------------------------

    async def get(self, video_id: int) -> VideoRecord:
        row = await self._one(self._requests, "SELECT * FROM videos WHERE id = %(id)s", {"id": video_id})
        if row is None:
            raise VideoNotFound(f"no video with id {video_id}")
        return video_record(row)

    # -- the Telegram webhook ------------------------------------------------------------

    async def record_update(self, update_id: int) -> bool:
        # On the request pool: a delivery is a request like /create, and must not take the
        # connections reserved for heartbeats.
        row = await self._one(self._requests, RECORD_UPDATE_SQL, {"update_id": update_id})
        return row is not None

    async def forget_updates(self, age: timedelta, limit: int) -> int:
        return await self._rowcount(self._leases, FORGET_UPDATES_SQL, {"age": age, "limit": limit})

    # -- incident replay only ------------------------------------------------------------

    async def find_recent_by_prompt(
        self, tg_user_id: int, prompt: str, window: timedelta, statuses: tuple[str, ...] | None = None
    ) -> VideoRecord | None:
        sql = ("SELECT * FROM videos WHERE tg_user_id = %(user)s AND prompt = %(prompt)s"
               " AND created_at >= clock_timestamp() - %(window)s")
        if statuses is not None:
            sql += " AND status = ANY(%(statuses)s)"
        row = await self._one(self._requests, sql + " ORDER BY created_at, id LIMIT 1",
                              {"user": tg_user_id, "prompt": prompt, "window": window, "statuses": list(statuses or ())})
        return None if row is None else VideoRecord.from_mapping(row)

    async def insert_video(self, request: NewVideo, status: str, result: GenerationResult | None = None) -> VideoRecord:
        row = await self._one(self._leases if result else self._requests, _INSERT_VIDEO_SQL, {
            "user": request.tg_user_id, "prompt": request.prompt, "category": request.category,
            "status": status, "key": request.prompt_key, "params": _jsonb(request.params), **_result_params(result)})
        assert row is not None
        return VideoRecord.from_mapping(row)

    async def set_outcome(
        self, video_id: int, status: str, result: GenerationResult | None = None, error: str | None = None
    ) -> None:
        await self._rowcount(
            self._leases,
            "UPDATE videos SET status = %(status)s, error = %(error)s, updated_at = clock_timestamp(),"
            " video_url = %(url)s, thumbnail_url = %(thumb)s, cost_usd = %(cost)s WHERE id = %(id)s",
            {"id": video_id, "status": status, "error": error, **_result_params(result)})


async def _rowcount(cursor: psycopg.AsyncCursor[Any]) -> int:
    return cursor.rowcount


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]

