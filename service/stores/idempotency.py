"""The SQL of the Idempotency-Key table (`idempotency_keys`), for both stores.

Begin is one conditional write, after Powertools' DynamoDB condition
`attribute_not_exists(id) OR expiry < :now OR (status = INPROGRESS AND in_progress_expiry < :now)`:

    INSERT INTO idempotency_keys … ON CONFLICT (scope, idem_key) DO UPDATE SET …
     WHERE <the row is older than the window>
        OR <the row is still in progress, and older than the in-progress timeout>
    RETURNING created_at

A returned `created_at` means this request holds the key; it is also the fencing token of
the writes that finish or release it. No row returned: the key is held, and the holder's row
is read (PostgreSQL: in the same statement; SQLite: in the same BEGIN IMMEDIATE transaction).

Time is the database's, as for claims: PostgreSQL `clock_timestamp()` (evaluated after the
row lock is taken), SQLite `strftime(…, 'now')` in the stored text form.

PostgreSQL's statement snapshot is taken before the INSERT waits on a concurrent insert of
the same key, so the holder read can miss a row that committed during the wait: the result
is then all NULL, which `service.http.idempotency` reads as "in progress" (that row is seconds old).
"""

from __future__ import annotations

__all__ = ["PG_BEGIN_SQL", "PG_FINISH_SQL", "PG_RELEASE_SQL", "PG_FORGET_SQL",
           "SQLITE_BEGIN_SQL", "SQLITE_HOLDER_SQL", "SQLITE_FINISH_SQL", "SQLITE_RELEASE_SQL", "SQLITE_FORGET_SQL"]

_TAKE = """
INSERT INTO idempotency_keys AS k (scope, idem_key, fingerprint, status_code, response_body, created_at)
VALUES ({scope}, {key}, {fingerprint}, NULL, NULL, {now})
ON CONFLICT (scope, idem_key) DO UPDATE
   SET fingerprint = excluded.fingerprint, status_code = NULL, response_body = NULL, created_at = {now}
 WHERE k.created_at < {window_start}
    OR (k.status_code IS NULL AND k.created_at < {in_progress_start})
RETURNING created_at
"""

PG_BEGIN_SQL = f"""
WITH taken AS ({_TAKE.format(
    scope="%(scope)s", key="%(key)s", fingerprint="%(fingerprint)s", now="clock_timestamp()",
    window_start="clock_timestamp() - %(window)s", in_progress_start="clock_timestamp() - %(in_progress)s")})
SELECT taken.created_at AS token, k.fingerprint, k.status_code, k.response_body
  FROM (SELECT 1) AS one
  LEFT JOIN taken ON true
  LEFT JOIN idempotency_keys k
    ON NOT EXISTS (SELECT 1 FROM taken) AND k.scope = %(scope)s AND k.idem_key = %(key)s
"""

_FENCE_PG = "scope = %(scope)s AND idem_key = %(key)s AND created_at = %(token)s AND status_code IS NULL"

PG_FINISH_SQL = f"""
UPDATE idempotency_keys SET status_code = %(status)s, response_body = %(body)s WHERE {_FENCE_PG} RETURNING 1 AS done
"""

PG_RELEASE_SQL = f"DELETE FROM idempotency_keys WHERE {_FENCE_PG}"

PG_FORGET_SQL = "DELETE FROM idempotency_keys WHERE created_at < clock_timestamp() - %(window)s"


_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"


def _sqlite_now_plus(param: str) -> str:
    return f"strftime('%Y-%m-%d %H:%M:%f000', 'now', :{param})"


SQLITE_BEGIN_SQL = _TAKE.format(
    scope=":scope", key=":key", fingerprint=":fingerprint", now=_SQLITE_NOW,
    window_start=_sqlite_now_plus("window_ago"), in_progress_start=_sqlite_now_plus("in_progress_ago"))

SQLITE_HOLDER_SQL = """
SELECT fingerprint, status_code, response_body FROM idempotency_keys WHERE scope = :scope AND idem_key = :key
"""

_FENCE_SQLITE = "scope = :scope AND idem_key = :key AND created_at = :token AND status_code IS NULL"

SQLITE_FINISH_SQL = f"UPDATE idempotency_keys SET status_code = :status, response_body = :body WHERE {_FENCE_SQLITE}"

SQLITE_RELEASE_SQL = f"DELETE FROM idempotency_keys WHERE {_FENCE_SQLITE}"

SQLITE_FORGET_SQL = f"DELETE FROM idempotency_keys WHERE created_at < {_sqlite_now_plus('window_ago')}"
