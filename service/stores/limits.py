"""Per-user and budget limits, decided by the claim itself (`Limits`, `LimitReached`).

What counts, on both stores, from the `videos` rows alone (no counter to drift or leak):

- A generation counts from its claim, for 24 h on the database's clock (`created_at`), unless
  its reservation was *returned*: it failed without a provider job ever being asked for
  (nothing was paid), or a takeover superseded it (the newer attempt carries on the same
  generation and counts instead). A claim abandoned by a crashed worker keeps counting: its
  worker may come back and resume it while nobody has taken the key over.
- Daily limit: the user's counting generations in the last 24 h.
- Concurrent limit: the user's videos still `generating` (a dead worker's, until the sweep or
  an adopter ends them, within about two leases).
- Budget (all users): over the last 24 h, each generation's recorded cost, or, until it is
  recorded, `reserve_usd` (`cost_per_video_usd`: set it to the most one video can cost);
  a returned reservation is 0, and a superseded attempt's recorded late cost counts.

A takeover of a lease that expired (a retry, or the sweep adopting a running job) and a claim
adopting a failed attempt's unrecorded job are not new generations: they are never refused,
and they move the reservation rather than add one (the superseded row stops counting as the
new one starts). A duplicate (409) is answered before any limit is looked at.

Atomicity: SQLite decides under BEGIN IMMEDIATE, where counts are exact (`check_sqlite`).
PostgreSQL takes a transaction-scoped advisory lock, then runs the claim statement with the
counts in it (`limited_claim_sql`, `PG_LOCK_SQL`; see there why).
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from service.claim import Limits
from service.errors import LimitReached
from service.stores.base import ABANDONED_ERROR, SUPERSEDED_ERROR, as_utc

__all__ = ["Usage", "exceeded", "limit_params", "refusal", "limited_claim_sql", "check_sqlite", "PG", "PG_LOCK_SQL",
           "SQLITE", "DAILY", "CONCURRENT", "BUDGET"]

DAILY, CONCURRENT, BUDGET = "user_daily", "user_concurrent", "daily_budget"

# A superseded attempt's error, whatever the attempt and video it names.
_SUPERSEDED_LIKE = SUPERSEDED_ERROR.split("{", 1)[0] + "%"


@dataclass(frozen=True)
class Usage:
    """What the claim saw, under its lock: whether it is a takeover, and each limit's count."""

    takeover: bool
    daily: int | None = None
    running: int | None = None
    spent: Decimal | None = None


def exceeded(limits: Limits, usage: Usage) -> list[str]:
    """The limits a new generation would break (none for a takeover). The PostgreSQL
    statement's `lim_ok` states the same conditions in SQL."""
    if usage.takeover:
        return []
    over = []
    if limits.user_daily is not None and (usage.daily or 0) >= limits.user_daily:
        over.append(DAILY)
    if limits.user_concurrent is not None and (usage.running or 0) >= limits.user_concurrent:
        over.append(CONCURRENT)
    if limits.budget_usd is not None and (usage.spent or Decimal(0)) + limits.reserve_usd > limits.budget_usd:
        over.append(BUDGET)
    return over


def limit_params(limits: Limits) -> dict[str, Any]:
    return {"day": Limits.WINDOW, "reserve": limits.reserve_usd, "daily": limits.user_daily,
            "concurrent": limits.user_concurrent, "budget": limits.budget_usd,
            "abandoned": ABANDONED_ERROR, "superseded_like": _SUPERSEDED_LIKE}


def refusal(limits: Limits, usage: Usage, waits: dict[str, float | None]) -> LimitReached:
    """The error for the limits broken, `waits` the seconds each needs (from the stored data):
    the longest, since the request fits only once every one of them has room again."""
    seconds = {limit: _retry(limit, limits, wait) for limit, wait in waits.items()}
    limit = max(seconds, key=lambda name: seconds[name])
    retry = seconds[limit]
    if limit == DAILY:
        detail = (f"This user has started {usage.daily} new videos in the last 24 hours; the limit is "
                  f"{limits.user_daily}. Nothing was started; retry in {retry} s, when the oldest leaves the window.")
    elif limit == CONCURRENT:
        detail = (f"This user has {usage.running} videos generating; the limit is {limits.user_concurrent} at once. "
                  f"Nothing was started; retry when one is done (estimated in {retry} s).")
    else:
        detail = (f"The service's spending in the last 24 hours (${usage.spent}, counting ${limits.reserve_usd} per "
                  f"generation whose cost is not recorded yet) leaves no room for another video under the daily "
                  f"budget of ${limits.budget_usd}. Nothing was started; retry in {retry} s.")
    return LimitReached(limit, detail, retry_after=retry)


def _retry(limit: str, limits: Limits, wait: float | None) -> int:
    if wait is None:  # the rows changed since the claim looked: there may be room already
        return 1
    if limit == CONCURRENT:
        # `wait` is the age of the user's oldest running generation. Its end is a guess: the
        # typical generation's length minus that age, never under a tenth of that length (a
        # generation running long does not end in a second because the typical one would have).
        return max(1, math.ceil(max(limits.typical_seconds - wait, limits.typical_seconds / 10)))
    return max(1, math.ceil(wait))


# -- SQL ----------------------------------------------------------------------------------
#
# Per dialect: `returned` (a row whose reservation was returned), the three counts the claim
# reads, and the three Retry-After reads made after a refusal (outside the claim: an estimate
# for a client, read from the same rows).


def _sql(p: Any, now: str, day_ago: str, seconds_until: str) -> dict[str, str]:
    returned = (f"(v.status = 'failed' AND (v.error LIKE {p('superseded_like')} OR (v.provider_job_id IS NULL"
                f" AND v.job_requested_at IS NULL AND v.error IS DISTINCT FROM {p('abandoned')})))")
    spend = f"coalesce(v.cost_usd, CASE WHEN {returned} THEN 0 ELSE {p('reserve')} END)"
    counting = f"v.tg_user_id = {p('user')} AND v.created_at > {day_ago} AND NOT {returned}"
    return {
        "daily": f"(SELECT count(*) FROM videos v WHERE {counting})",
        "running": f"(SELECT count(*) FROM videos v WHERE v.tg_user_id = {p('user')} AND v.status = 'generating')",
        "spent": f"(SELECT coalesce(sum({spend}), 0) FROM videos v WHERE v.created_at > {day_ago})",
        # The oldest counting generation whose leaving makes room (the first past the limit).
        "daily_wait": f"""SELECT {seconds_until} AS wait FROM videos v WHERE {counting}
                           ORDER BY v.created_at, v.id LIMIT 1 OFFSET {p('skip')}""",
        "running_age": f"""SELECT min(v.created_at) AS oldest, {now} AS now FROM videos v
                            WHERE v.tg_user_id = {p('user')} AND v.status = 'generating'""",
        # The first moment the spend still inside the window leaves room for one reservation.
        "budget_wait": f"""SELECT {seconds_until.replace('v.', 's.')} AS wait FROM (
                               SELECT v.created_at, sum({spend}) OVER (ORDER BY v.created_at, v.id) AS freed,
                                      sum({spend}) OVER () AS total
                                 FROM videos v WHERE v.created_at > {day_ago}) s
                            WHERE s.total - s.freed + {p('reserve')} <= {p('budget')}
                            ORDER BY s.created_at LIMIT 1""",
    }


PG = _sql(lambda name: f"%({name})s", "clock_timestamp()", "clock_timestamp() - %(day)s",
          "extract(epoch FROM v.created_at + %(day)s - clock_timestamp())")
_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
SQLITE = _sql(lambda name: f":{name}", _SQLITE_NOW, "strftime('%Y-%m-%d %H:%M:%f000', 'now', :day_ago)",
              "(julianday(v.created_at) - julianday('now')) * 86400.0 + :day_seconds")
# SQLite has IS NOT, null-safe, where PostgreSQL says IS DISTINCT FROM.
SQLITE = {name: sql.replace("IS DISTINCT FROM", "IS NOT") for name, sql in SQLITE.items()}


# -- PostgreSQL ---------------------------------------------------------------------------
#
# With limits on, a claim is a short transaction: an advisory lock, then CLAIM_SQL with the
# limits' counts and condition spliced in. Why a lock and not a counter row updated in the
# statement: in READ COMMITTED a count inside the statement sees only its snapshot, so two
# claims of one user would both see "2 of 3" and both pass (the seed's TOCTOU again). The
# lock, held to COMMIT, makes the claims of one user (of everyone, with a budget) take turns,
# and each statement starts after the lock is granted, so its snapshot holds every earlier
# claim, committed before that lock was released. The counts are then exact, read from the
# `videos` rows themselves: nothing to keep in step with outcomes, takeovers, the sweep or the
# old bot's rows, and nothing a lost race or a crash can leak (a counter row would need each of
# those paths to give quota back). Transaction-scoped (`_xact_`): released by COMMIT or by the
# rollback of a request that gave up, and usable behind a transaction-mode pooler. Cost: the
# transaction is pipelined (one round trip), so one more round trip per new claim than without
# limits (the duplicate read before it), and claims taking turns under the lock (per user; all
# users with a budget) for the server's own time on the claim and its COMMIT. A duplicate is
# answered from that read, without the lock. Limits off, CLAIM_SQL runs as before, alone.
PG_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || %(lock)s, 0))"


def _splice(sql: str, marker: str, replacement: str) -> str:
    if sql.count(marker) != 1:
        raise ValueError(f"CLAIM_SQL changed: {marker!r} is not in it once; update the limits' splice")
    return sql.replace(marker, replacement)


def limited_claim_sql(claim_sql: str, limits: Limits) -> str:
    """The PostgreSQL store's CLAIM_SQL plus `limits` (a CTE of the counts, and `lim_ok` on its
    INSERT): a takeover is never refused, a new generation only past a limit."""
    conds = [cond for on, cond in ((limits.user_daily is not None, "l.lim_daily < %(daily)s"),
                                   (limits.user_concurrent is not None, "l.lim_running < %(concurrent)s"),
                                   (limits.budget_usd is not None, "l.lim_spent + %(reserve)s <= %(budget)s")) if on]
    counts = {"daily": limits.user_daily is not None, "running": limits.user_concurrent is not None,
              "spent": limits.budget_usd is not None}
    cte = f"""), limits AS (
    -- Under the advisory lock: every earlier claim is in this statement's snapshot.
    SELECT l.*, l.lim_takeover OR ({" AND ".join(conds) or "true"}) AS lim_ok FROM (
        SELECT coalesce((SELECT h.claim_status = 'generating'
                                OR (h.status = 'failed' AND h.cost_usd IS NULL AND h.provider_job_id IS NOT NULL)
                           FROM held h), false) AS lim_takeover,
               {", ".join(f"{PG[name] if on else 'NULL'} AS lim_{name}" for name, on in counts.items())}) l
), claimed AS ("""
    sql = _splice(claim_sql, "), claimed AS (", cte)
    sql = _splice(sql, "WHERE NOT EXISTS (SELECT 1 FROM held WHERE held.blocks) AND ",
                  "WHERE NOT EXISTS (SELECT 1 FROM held WHERE held.blocks) AND (SELECT lim_ok FROM limits) AND ")
    sql = _splice(sql, "clock_timestamp() AS db_now, held.*", "clock_timestamp() AS db_now, limits.*, held.*")
    return _splice(sql, "LEFT JOIN held ON video.id IS NULL", "LEFT JOIN held ON video.id IS NULL CROSS JOIN limits")


# -- SQLite -------------------------------------------------------------------------------


def check_sqlite(conn: sqlite3.Connection, limits: Limits, before: sqlite3.Row | None, params: dict[str, Any]) -> None:
    """Raise LimitReached if a new generation breaks a limit (service.stores.limits). Inside
    the claim's BEGIN IMMEDIATE: no other claim runs until it commits, so the counts are exact."""
    takeover = before is not None and (before["claim_status"] == "generating" or (
        before["status"] == "failed" and before["cost_usd"] is None and before["provider_job_id"] is not None))
    if takeover:
        return
    day = Limits.WINDOW.total_seconds()
    p = {**params, **limit_params(limits), "day_ago": f"-{day:.6f} seconds", "day_seconds": day,
         "reserve": float(limits.reserve_usd), "budget": None if limits.budget_usd is None else float(limits.budget_usd)}

    def count(name: str) -> Any:
        return conn.execute(f"SELECT {SQLITE[name]}", p).fetchone()[0]

    spent = None if limits.budget_usd is None else Decimal(str(round(float(count("spent")), 6)))
    usage = Usage(False, None if limits.user_daily is None else count("daily"),
                  None if limits.user_concurrent is None else count("running"), spent)
    over = exceeded(limits, usage)
    if not over:
        return
    waits: dict[str, float | None] = {}
    for limit in over:
        if limit == DAILY:
            row = conn.execute(SQLITE["daily_wait"], {**p, "skip": max(0, (usage.daily or 0) - (limits.user_daily or 0))}).fetchone()
            waits[limit] = None if row is None else float(row["wait"])
        elif limit == CONCURRENT:
            row = conn.execute(SQLITE["running_age"], p).fetchone()
            waits[limit] = None if row["oldest"] is None else (as_utc(row["now"]) - as_utc(row["oldest"])).total_seconds()
        else:
            row = conn.execute(SQLITE["budget_wait"], p).fetchone()
            waits[limit] = None if row is None else float(row["wait"])
    raise refusal(limits, usage, waits)
