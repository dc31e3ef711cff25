"""The completion callbacks' outbox (`video_callbacks`, migration 0009), in SQL for both stores.

A row's life, each step one write on the database's clock:

    claim ──▶ waiting ──outcome──▶ pending ──take──▶ (leased) ──2xx──▶ delivered
                                      ▲                  │
                                      └──── retry ◀──────┤ error, timeout, non-2xx
                                                         └── past the give-up time ──▶ failed

- **waiting**: written by the claim's own statement when the `/create` named a `callback_url`
  (after a takeover, the new attempt carries the superseded attempt's URL on; the superseded
  row's is moved, so it never reports).
- **pending**: set by the statement that records how the video ended (COMPLETE / FAIL / the
  sweep's abandon), in that statement: an outcome is never durable without its callback, nor a
  callback without its outcome. Each event gets a fresh `delivery_id` (the `webhook-id`), kept
  across its retries. A result written twice (a retried write whose first try landed) does not
  make a second event; a video the sweep declared abandoned whose worker comes back and
  finishes makes a new one (`video.ready` after `video.failed`; if the first was not sent yet,
  only the second is).
- **taken**: a deliverer sets `lease_token` and `lease_expires_at` in one conditional write
  (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: under its one write lock), so two deliverers
  never hold a row at once. A deliverer that dies mid-delivery leaves its lease to expire: the
  row is sent again (at least once: the receiver dedupes on `webhook-id`).
- The finish is fenced on the token and the delivery id; a row whose event was replaced while
  it was being sent only has its lease cleared, and its new event goes out next.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.records import as_utc

__all__ = ["DueCallback", "CallbackState", "READY_EVENT", "FAILED_EVENT", "PG_REPORT_SET", "SQLITE_REPORT_SET",
           "PG_TAKE_SQL", "PG_FINISH_SQL", "PG_RELEASE_SQL", "PG_STATE_SQL", "sqlite_take", "sqlite_finish",
           "sqlite_state", "state_from_row", "due_from_row"]

READY_EVENT = "video.ready"
FAILED_EVENT = "video.failed"


@dataclass(frozen=True)
class DueCallback:
    """One delivery a deliverer holds: what to send, where, under which lease."""

    video_id: int
    url: str
    event: str
    delivery_id: str
    video_url: str | None
    error: str | None
    occurred_at: datetime
    attempts: int  # including this one
    tg_user_id: int


@dataclass(frozen=True)
class CallbackState:
    """What GET /videos/{id} shows of a video's callback. `pending` until delivered, also while
    the video is generating (`event` is None until it ends)."""

    state: str
    event: str | None
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


def state_from_row(row: Any) -> CallbackState | None:
    if row is None:
        return None
    state = "pending" if row["state"] == "waiting" else row["state"]
    return CallbackState(state, row["event"], row["attempts"], row["last_error"], as_utc(row["delivered_at"]))


def due_from_row(row: Any) -> DueCallback:
    return DueCallback(row["video_id"], row["url"], row["event"], row["delivery_id"], row["video_url"], row["error"],
                       as_utc(row["occurred_at"]), row["attempts"], row["tg_user_id"])  # type: ignore[arg-type]


# -- PostgreSQL ------------------------------------------------------------------------------

# The SET of an outcome's report: {event}, {video_url} and {error} are SQL expressions of the
# statement it is part of. The lease is left alone: a row still being sent with its previous
# event is sent with this one once that delivery finishes, never both at once (in order).
_REPORT_SET = """state = 'pending', event = {event}, delivery_id = {new_id}, video_url = {video_url}, error = {error},
       occurred_at = {now}, attempts = 0, next_attempt_at = {now}, last_error = NULL, delivered_at = NULL"""
PG_NEW_ID = "'msg_' || replace(gen_random_uuid()::text, '-', '')"
PG_REPORT_SET = _REPORT_SET.replace("{new_id}", PG_NEW_ID).replace("{now}", "clock_timestamp()")

_PG_DUE = """state = 'pending' AND next_attempt_at <= clock_timestamp()
            AND (lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp())"""

# Oldest due first; rows another deliverer is taking right now are skipped, not waited for.
PG_TAKE_SQL = f"""
UPDATE video_callbacks k
   SET lease_token = %(token)s, lease_expires_at = clock_timestamp() + %(lease)s, attempts = k.attempts + 1
  FROM videos v
 WHERE v.id = k.video_id AND k.video_id IN (
       SELECT video_id FROM video_callbacks WHERE {_PG_DUE}
        ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING k.video_id, k.url, k.event, k.delivery_id, k.video_url, k.error, k.occurred_at, k.attempts, v.tg_user_id
"""

# Delivered, or due again after `delay`, or given up once the next try would come later than
# `give_up` after the video ended.
PG_FINISH_SQL = """
UPDATE video_callbacks
   SET state = CASE WHEN %(ok)s THEN 'delivered'
                    WHEN occurred_at + %(give_up)s <= clock_timestamp() + %(delay)s THEN 'failed'
                    ELSE 'pending' END,
       delivered_at = CASE WHEN %(ok)s THEN clock_timestamp() END,
       next_attempt_at = clock_timestamp() + %(delay)s,
       last_error = %(error)s, lease_token = NULL, lease_expires_at = NULL
 WHERE video_id = %(video_id)s AND lease_token = %(token)s AND delivery_id = %(delivery_id)s
RETURNING state
"""

PG_RELEASE_SQL = """
UPDATE video_callbacks SET lease_token = NULL, lease_expires_at = NULL
 WHERE video_id = %(video_id)s AND lease_token = %(token)s
"""

PG_STATE_SQL = "SELECT state, event, attempts, last_error, delivered_at FROM video_callbacks WHERE video_id = %(id)s"


# -- SQLite ------------------------------------------------------------------------------------

NOW = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
SQLITE_NEW_ID = "'msg_' || lower(hex(randomblob(16)))"
SQLITE_REPORT_SET = _REPORT_SET.replace("{new_id}", SQLITE_NEW_ID).replace("{now}", NOW)


def _seconds(delta: timedelta) -> str:
    return f"{delta.total_seconds():+.6f} seconds"


def sqlite_take(conn: sqlite3.Connection, token: str, lease: timedelta, limit: int) -> list[DueCallback]:
    """Take due rows under the write lock the caller holds (BEGIN IMMEDIATE): one deliverer at a time."""
    rows = conn.execute(
        f"UPDATE video_callbacks SET lease_token = :token, attempts = attempts + 1,"
        f" lease_expires_at = strftime('%Y-%m-%d %H:%M:%f000', 'now', :lease)"
        f" WHERE video_id IN (SELECT video_id FROM video_callbacks WHERE state = 'pending' AND next_attempt_at <= {NOW}"
        f"   AND (lease_expires_at IS NULL OR lease_expires_at <= {NOW}) ORDER BY next_attempt_at LIMIT :limit)"
        " RETURNING video_id",
        {"token": token, "lease": _seconds(lease), "limit": limit}).fetchall()
    if not rows:
        return []
    ids = ",".join(str(int(row["video_id"])) for row in rows)
    taken = conn.execute(
        "SELECT k.video_id, k.url, k.event, k.delivery_id, k.video_url, k.error, k.occurred_at, k.attempts, v.tg_user_id"
        f" FROM video_callbacks k JOIN videos v ON v.id = k.video_id WHERE k.video_id IN ({ids})"
        " ORDER BY k.next_attempt_at").fetchall()
    return [due_from_row(row) for row in taken]


def sqlite_finish(conn: sqlite3.Connection, video_id: int, token: str, delivery_id: str, ok: bool, error: str | None,
                  delay: timedelta, give_up: timedelta) -> str | None:
    params = {"id": video_id, "token": token, "delivery_id": delivery_id, "ok": ok, "error": error,
              "delay": _seconds(delay), "give_up_edge": _seconds(delay - give_up)}
    row = conn.execute(
        "UPDATE video_callbacks SET"
        " state = CASE WHEN :ok THEN 'delivered'"
        "   WHEN occurred_at <= strftime('%Y-%m-%d %H:%M:%f000', 'now', :give_up_edge) THEN 'failed'"
        "   ELSE 'pending' END,"
        f" delivered_at = CASE WHEN :ok THEN {NOW} END,"
        " next_attempt_at = strftime('%Y-%m-%d %H:%M:%f000', 'now', :delay),"
        " last_error = :error, lease_token = NULL, lease_expires_at = NULL"
        " WHERE video_id = :id AND lease_token = :token AND delivery_id = :delivery_id RETURNING state", params).fetchone()
    if row is None:
        conn.execute("UPDATE video_callbacks SET lease_token = NULL, lease_expires_at = NULL"
                     " WHERE video_id = :id AND lease_token = :token", params)
        return None
    return str(row["state"])


def sqlite_state(conn: sqlite3.Connection, video_id: int) -> CallbackState | None:
    return state_from_row(conn.execute(
        "SELECT state, event, attempts, last_error, delivered_at FROM video_callbacks WHERE video_id = :id",
        {"id": video_id}).fetchone())
