"""The duplicate rule as SQL: one text, printed by ``python -m audit sql`` for a warehouse or a
dbt test, and run by the PostgreSQL pushdown (`audit.sources.database`).

The rule of `audit.detect` as window functions over one ``(tg_user_id, prompt_key)`` group
ordered by ``(created_at, id)``. PostgreSQL has no ``LAG … IGNORE NULLS``, so "the nearest
earlier non-failed video" is built from islands: ``ok_seq`` counts non-failed rows so far,
each island starts at a non-failed row, ``FIRST_VALUE`` over the island is the last
non-failed row at or before each row, and ``LAG`` of that is the nearest non-failed row
strictly before it. Chains are islands again, started by each non-failed non-duplicate.

**Input**: a table with ``id, tg_user_id, prompt_key, status, created_at``. ``prompt_key``
must be `service.prompt_key.prompt_key` of ``prompt`` (NFKC, casefold, whitespace runs to one
space, strip, trailing ``. ! ? …`` stripped): Unicode normalisation is Python's, and no SQL
engine here reproduces it exactly, so the keys are computed before the SQL runs (the service
stores them; ``python -m audit`` computes them for files). Only the dialects differ in how a
gap is compared with the window: an interval in PostgreSQL and DuckDB, epoch milliseconds in
SQLite (timestamps stored as ISO text in UTC; precision one millisecond). DuckDB gets the
same rule written with ``IGNORE NULLS`` (below), which it runs much faster; the tests hold
every dialect's text to the pandas answer.
"""

from __future__ import annotations

import re
from datetime import timedelta

from audit.detect import DEFAULT_WINDOW

__all__ = ["DIALECTS", "DUPLICATES_SQL", "rule_sql"]

DIALECTS = ("postgresql", "duckdb", "sqlite")

_TEMPLATE = """
WITH scoped AS (
    SELECT id, tg_user_id, prompt_key, status, created_at,
           COUNT(*) FILTER (WHERE status <> 'failed') OVER w AS ok_seq
    FROM {table}
    WHERE {scope}
    WINDOW w AS (PARTITION BY tg_user_id, prompt_key ORDER BY created_at, id ROWS UNBOUNDED PRECEDING)
),
last_ok AS (
    SELECT *,
           CASE WHEN ok_seq > 0 THEN FIRST_VALUE(id) OVER island END AS last_ok_id,
           CASE WHEN ok_seq > 0 THEN FIRST_VALUE(created_at) OVER island END AS last_ok_at
    FROM scoped
    WINDOW island AS (PARTITION BY tg_user_id, prompt_key, ok_seq ORDER BY created_at, id)
),
flagged AS (
    SELECT *,
           LAG(last_ok_id) OVER w AS previous_id,
           COALESCE({within}, FALSE) AS is_duplicate
    FROM last_ok
    WINDOW w AS (PARTITION BY tg_user_id, prompt_key ORDER BY created_at, id)
),
chained AS (
    SELECT *,
           COUNT(*) FILTER (WHERE status <> 'failed' AND NOT is_duplicate) OVER w AS chain_seq
    FROM flagged
    WINDOW w AS (PARTITION BY tg_user_id, prompt_key ORDER BY created_at, id ROWS UNBOUNDED PRECEDING)
),
duplicates AS (
    SELECT id AS video_id, previous_id, tg_user_id, prompt_key, created_at, is_duplicate,
           FIRST_VALUE(id) OVER (PARTITION BY tg_user_id, prompt_key, chain_seq ORDER BY created_at, id)
               AS original_id
    FROM chained
)
"""

# DuckDB (like most warehouses: Snowflake, BigQuery) has IGNORE NULLS, and the rule reads as
# it is stated: the nearest earlier non-failed video is the last non-null id of the rows before.
# On 1 M rows DuckDB runs this about 5x faster than the island form above.
_IGNORE_NULLS_TEMPLATE = """
WITH ordered AS (
    SELECT id, tg_user_id, prompt_key, status, created_at,
           LAST_VALUE(CASE WHEN status <> 'failed' THEN id END IGNORE NULLS) OVER before AS previous_id,
           LAST_VALUE(CASE WHEN status <> 'failed' THEN created_at END IGNORE NULLS) OVER before AS last_ok_at
    FROM {table}
    WHERE {scope}
    WINDOW before AS (PARTITION BY tg_user_id, prompt_key ORDER BY created_at, id
                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
),
flagged AS (
    SELECT *, COALESCE({within}, FALSE) AS is_duplicate
    FROM ordered
),
duplicates AS (
    SELECT id AS video_id, previous_id, tg_user_id, prompt_key, created_at, is_duplicate,
           LAST_VALUE(CASE WHEN status <> 'failed' AND NOT is_duplicate THEN id END IGNORE NULLS) OVER upto
               AS original_id
    FROM flagged
    WINDOW upto AS (PARTITION BY tg_user_id, prompt_key ORDER BY created_at, id ROWS UNBOUNDED PRECEDING)
)
"""

_INTERVAL_GAP = "created_at - LAG(last_ok_at) OVER w <= {window}"
# strftime('%s') is whole seconds and '%f' is "SS.SSS": together, epoch milliseconds.
_SQLITE_MS = "(CAST(strftime('%s', {t}) AS INTEGER) * 1000 + CAST(substr(strftime('%f', {t}), 4) AS INTEGER))"
_SQLITE_GAP = f"{_SQLITE_MS.format(t='created_at')} - {_SQLITE_MS.format(t='LAG(last_ok_at) OVER w')} <= {{window}}"

# The pushdown's form (PostgreSQL): {scope} bounds the rows read, :window is a bound interval.
DUPLICATES_SQL = _TEMPLATE.replace("{within}", _INTERVAL_GAP.replace("{window}", ":window")).replace("{table}", "videos")

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def rule_sql(dialect: str, *, window: timedelta = DEFAULT_WINDOW, table: str = "videos",
             key_params: tuple[str, ...] = ()) -> str:
    """The rule as one ``SELECT`` in ``dialect``: one row per duplicate, ``video_id,
    previous_id, original_id, tg_user_id, prompt_key, created_at``, ordered by
    ``(created_at, video_id)``. Raises ValueError for an unknown dialect or a table name that
    is not a plain (optionally schema-qualified) identifier.

    ``key_params`` (the service's CLAIMFIRST_KEY_PARAMS) changes no SQL: the params are in
    ``prompt_key`` already, as the service stores it; the header says what that key must be."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {', '.join(DIALECTS)}")
    if not _IDENTIFIER.match(table):
        raise ValueError(f"not a table name: {table!r}")
    if window <= timedelta(0):
        raise ValueError("the window must be positive")
    micros = window // timedelta(microseconds=1)
    # Whole seconds read better; a window with microseconds is still written exactly.
    interval = f"INTERVAL '{micros // 1_000_000} seconds'" if micros % 1_000_000 == 0 else f"INTERVAL '{micros} microseconds'"
    template = _IGNORE_NULLS_TEMPLATE if dialect == "duckdb" else _TEMPLATE
    if dialect == "sqlite":
        millis = micros // 1000 if micros % 1000 == 0 else micros / 1000
        within = _SQLITE_GAP.replace("{window}", str(millis))
    elif dialect == "duckdb":
        within = f"created_at - last_ok_at <= {interval}"
    else:
        within = _INTERVAL_GAP.replace("{window}", interval)
    keyed = (
        "-- service.prompt_key.prompt_key(prompt) (NFKC, casefold, ...), computed outside SQL.\n"
        if not key_params else
        "-- service.prompt_key.key_with_params(prompt_key(prompt), params, KEY_PARAMS) with KEY_PARAMS\n"
        f"-- {','.join(key_params)} (the service stores it so), computed outside SQL.\n"
    )
    header = (
        f"-- The duplicate rule of claimfirst's audit ({dialect}); window {window.total_seconds() / 3600:g} h.\n"
        f"-- Input: {table}(id, tg_user_id, prompt_key, status, created_at); prompt_key must be\n"
        + keyed +
        "-- A video is a duplicate when an earlier (created_at, id) non-failed video of the same\n"
        "-- user and prompt_key was created at most the window before it. One row per duplicate:\n"
        "-- previous_id = that nearest earlier video, original_id = the first video of its chain.\n"
    )
    body = template.replace("{within}", within).replace("{table}", table).replace("{scope}", "TRUE")
    return (
        header
        + body.strip("\n")
        + "\nSELECT video_id, previous_id, original_id, tg_user_id, prompt_key, created_at\n"
        "FROM duplicates\nWHERE is_duplicate\nORDER BY created_at, video_id;\n"
    )
