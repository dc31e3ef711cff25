"""A SQLAlchemy database with a ``videos`` table: the service's own, or any copy of the store.

Two ways to read it:

- **Chunked load** (SQLite, and any table without a ``prompt_key`` column, such as an
  external store with only the incident's columns): the period and its look-back are read
  with ``pd.read_sql(chunksize=…)`` and the rule runs in pandas.
- **Pushdown** (PostgreSQL with ``prompt_key``): the rule runs as window functions in SQL
  (`DUPLICATES_SQL`) and only the ``(tg_user_id, prompt_key)`` groups that contain a
  duplicate, plus any ``generating`` rows, come back. pandas then runs the same rule on those
  groups: groups are independent, so the result is the same as for the whole table, and a
  table of millions of rows is never pulled. `detect_duplicates_sql` exposes the SQL's own
  answer so a test can hold it against pandas.

The pushdown groups by the *stored* ``prompt_key``, so it first checks those keys against
`service.prompt_key` (one call per distinct prompt in scope). A key written by another
normalisation (``lower(btrim(prompt))`` backfills) or left NULL would split a group and hide
its duplicates; then the load falls back to pandas, which recomputes every key, and says so
in ``Loaded.notes``. The pushdown never finds fewer duplicates than the pandas path.

SQLite has no time type: a table adopted from elsewhere may hold ISO text
(``2025-10-15T05:37:00+00:00``) next to SQLAlchemy's ``2025-10-15 05:37:00.000000``, and text
comparison orders ``T`` after the space. Period filters there compare ``julianday()`` (which
parses both and applies offsets), a second wider than asked, and the exact period is then
cut in pandas on the parsed times.

Stuck claims are current state: every ``generating`` row is loaded whatever the period, from
every source (`audit.sources.files` and `audit.sources.supabase` do the same).

Nothing here writes: the sweep never modifies data (`audit.cleanup` is the only writer).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from audit.frames import REQUIRED_VIDEO_COLUMNS, VIDEO_COLUMNS, SchemaError, normalise_videos
from audit.rule_sql import DUPLICATES_SQL
from audit.sources.base import Loaded, Period, SourceError, in_period, progress_bar
from service.stores.models import UTCDateTime
from service.prompt_key import key_with_params, prompt_key
from service.redact import redact_url
from service.settings import normalize_database_url

__all__ = ["open_engine", "redacted_url", "video_columns", "load_database", "detect_duplicates_sql", "DUPLICATES_SQL",
           "plan_load", "chunked_query", "empty_frame", "older_rows_note", "CHUNK_ROWS"]

# Rows per round trip: large enough that latency does not dominate, small enough that a
# chunk of wide rows (prompts are a few hundred bytes) stays a few MB.
CHUNK_ROWS = 50_000

# The rule's SQL lives in `audit.rule_sql` (also printed by `python -m audit sql`). {scope} bounds
# the rows read (the period plus one window of look-back); {counted} bounds the duplicates reported.


# SQLite's julianday() is a double: about 50 µs of resolution at today's dates. Its filters
# reach this much further than asked, and the exact cut is made in pandas.
_SQLITE_MARGIN = pd.Timedelta(seconds=1)
_UNIX_EPOCH_JULIAN_DAY = 2440587.5


def open_engine(url: str) -> Engine:
    """An engine for ``url`` (``postgres://`` accepted), or `SourceError` for a bad URL."""
    try:
        parsed = sa.engine.make_url(normalize_database_url(url))
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise SourceError(f"bad database URL: {' '.join(str(exc).split())}") from exc
    # normalize_database_url refuses anything but SQLite and PostgreSQL (the service's rule).
    try:
        engine = sa.create_engine(parsed)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError, ValueError) as exc:
        raise SourceError(f"bad database URL {redacted_url(url)}: {' '.join(str(exc).split())}") from exc
    # SQLite creates a missing file on connect: a typo in the path would "audit" a new, empty
    # database (and leave it behind). A sweep never creates anything.
    path = parsed.database
    if parsed.get_backend_name() == "sqlite" and path and path != ":memory:" and not path.startswith("file:"):
        if not Path(path).is_file():
            engine.dispose()
            raise SourceError(f"database file not found: {path}")
    return engine


def redacted_url(url: str) -> str:
    """The URL with its password and secret query parameters masked, for messages (the
    service's rule, `service.redact`: `hide_password` masked the user-info only)."""
    return redact_url(sa.engine.make_url(normalize_database_url(url)).render_as_string(hide_password=False))


def video_columns(conn: Connection) -> list[str]:
    """The ``videos`` table's columns, or `SchemaError` when the table or a column is missing."""
    inspector = sa.inspect(conn)
    if not inspector.has_table("videos"):
        raise SchemaError("database has no table 'videos'")
    columns = [c["name"] for c in inspector.get_columns("videos")]
    missing = [c for c in REQUIRED_VIDEO_COLUMNS if c not in columns]
    if missing:
        raise SchemaError(f"table 'videos' is missing column(s) {', '.join(missing)}")
    return columns


def _typed_videos(columns: list[str]) -> sa.TableClause:
    # UTCDateTime turns SQLite's naive text back into UTC-aware times, and binds aware ones.
    typed = {"created_at": UTCDateTime(), "updated_at": UTCDateTime()}
    return sa.table("videos", *(sa.column(c, typed.get(c)) for c in columns))


def _scope(period: Period, alias: str = "") -> tuple[str, dict]:
    clauses, params = ["TRUE"], {}
    if period.load_from is not None:
        clauses.append(f"{alias}created_at >= :load_from")
        params["load_from"] = period.load_from
    if period.until is not None:
        clauses.append(f"{alias}created_at <= :until")
        params["until"] = period.until
    return " AND ".join(clauses), params


def _counted(period: Period) -> tuple[str, dict]:
    if period.since is None:
        return "TRUE", {}
    return "created_at >= :since", {"since": period.since}


def detect_duplicates_sql(conn: Connection, period: Period) -> list[dict]:
    """The duplicates of ``period`` according to PostgreSQL: ``video_id, previous_id,
    original_id`` per duplicate, ordered by ``(created_at, video_id)``."""
    scope, params = _scope(period)
    counted, more = _counted(period)
    query = DUPLICATES_SQL.format(scope=scope) + (
        f"SELECT video_id, previous_id, original_id FROM duplicates WHERE is_duplicate AND {counted} "
        "ORDER BY created_at, video_id"
    )
    rows = conn.execute(sa.text(query), {**params, **more, "window": period.window})
    return [dict(r._mapping) for r in rows]


def _count_in_period(conn: Connection, table: sa.TableClause, period: Period) -> int:
    query = sa.select(sa.func.count()).select_from(table)
    if period.since is not None:
        query = query.where(table.c.created_at >= period.since)
    if period.until is not None:
        query = query.where(table.c.created_at <= period.until)
    return int(conn.execute(query).scalar_one())


def _julian_day(moment) -> float:
    return (pd.Timestamp(moment) - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(days=1) + _UNIX_EPOCH_JULIAN_DAY


def _between(table: sa.TableClause, start, end, *, sqlite: bool) -> list:
    """WHERE clauses for ``start <= created_at <= end`` (either open when None): exact on
    PostgreSQL; a superset on SQLite (see the module docstring)."""
    clauses = []
    if not sqlite:
        if start is not None:
            clauses.append(table.c.created_at >= start)
        if end is not None:
            clauses.append(table.c.created_at <= end)
        return clauses
    day = sa.func.julianday(table.c.created_at)
    # julianday() is NULL for text it cannot parse (an offset written +0100): such rows are
    # read and cut in pandas, which parses them, rather than silently left out.
    if start is not None:
        clauses.append(sa.or_(day >= _julian_day(start - _SQLITE_MARGIN), day.is_(None)))
    if end is not None:
        clauses.append(sa.or_(day <= _julian_day(end + _SQLITE_MARGIN), day.is_(None)))
    return clauses


def stale_prompt_keys(conn: Connection, period: Period, *, with_params: bool = False) -> tuple[int, int]:
    """``(rows whose stored prompt_key is not the service's key of their prompt (and, with
    ``period.key_params``, their ``params``), rows with a NULL key or prompt)`` among the rows
    the pushdown would group, on PostgreSQL. ``with_params``: the table has a ``params`` column."""
    scope, params = _scope(period)
    names = period.key_params if with_params else ()
    extra = ", params" if names else ""
    rows = conn.execute(
        sa.text(f"SELECT prompt, prompt_key, COUNT(*) AS n{extra} FROM videos WHERE {scope}"
                f" GROUP BY prompt, prompt_key{extra}"),
        params,
    )
    wrong = missing = 0
    for row in rows:
        prompt, key, n = row[0], row[1], row[2]
        if prompt is None or key is None:
            missing += n
        elif key != key_with_params(prompt_key(prompt), row[3] if names else None, names):
            wrong += n
    return wrong, missing


def _read_chunks(conn: Connection, query, total: int | None, *, progress: bool) -> list[pd.DataFrame]:
    chunks = []
    with progress_bar("loading videos", total, enabled=progress) as advance:
        for chunk in pd.read_sql(query, conn, chunksize=CHUNK_ROWS):
            chunks.append(chunk)
            advance(len(chunk))
    return chunks


def _pushdown_query(period: Period, wanted: list[str]):
    scope, params = _scope(period)
    counted, more = _counted(period)
    vscope, _ = _scope(period, alias="v.")
    query = sa.text(
        DUPLICATES_SQL.format(scope=scope)
        + ", groups AS (SELECT DISTINCT tg_user_id, prompt_key FROM duplicates "
        + f"WHERE is_duplicate AND {counted}) "
        + f"SELECT {', '.join('v.' + c for c in wanted)} FROM videos v "
        + "WHERE (v.status = 'generating' OR ("
        + f"(v.tg_user_id, v.prompt_key) IN (SELECT tg_user_id, prompt_key FROM groups) AND {vscope})) "
        + "ORDER BY v.id"
    ).bindparams(**params, **more, window=period.window)
    return query.columns(*(sa.column(c, _typed_videos(wanted).c[c].type) for c in wanted))


def _older_rows_note(conn: Connection, table: sa.TableClause, period: Period, *, sqlite: bool) -> str | None:
    """When the period holds no video but the table does: how many are older, and the latest."""
    older = _between(table, None, period.since, sqlite=sqlite)
    count = int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*older)).scalar_one())
    if not count:
        return None
    order = sa.func.julianday(table.c.created_at) if sqlite else table.c.created_at
    latest = conn.execute(sa.select(table.c.created_at).where(*older).order_by(order.desc()).limit(1)).scalar_one()
    return (
        f"no video was created in the period ({period.since.isoformat()} to "
        f"{period.until.isoformat() if period.until else 'now'}), but the table has {count} older "
        f"video(s), the latest created {pd.Timestamp(latest).isoformat()}: widen the period with --since"
    )


def plan_load(conn: Connection, period: Period, *, pushdown: bool, notes: list[str]) -> tuple[bool, list[str], sa.TableClause, bool]:
    """How `load_database` reads: ``(pushdown in SQL?, columns to read, the typed table, SQLite?)``;
    a note for the user when stale keys forbid the pushdown."""
    columns = video_columns(conn)
    wanted = [c for c in VIDEO_COLUMNS if c in columns and c != "prompt_key"]
    # A table with params, swept with key params: the key needs them (the service's rule).
    with_params = bool(period.key_params) and "params" in columns
    wanted += ["params"] if with_params else []
    table = _typed_videos(columns)
    sqlite = conn.dialect.name == "sqlite"
    use_sql = pushdown and conn.dialect.name == "postgresql" and "prompt_key" in columns
    if use_sql:
        wrong, missing = stale_prompt_keys(conn, period, with_params=with_params)
        if wrong or missing:
            use_sql = False
            notes.append(
                f"stored prompt_key differs from the service's definition on {wrong} row(s) and is "
                f"missing on {missing}: the duplicate search ran in pandas on recomputed keys, not in SQL"
            )
    return use_sql, wanted, table, sqlite


def chunked_query(table: sa.TableClause, wanted: list[str], period: Period, *, sqlite: bool):
    """The chunked load's query: the period and its look-back (a superset on SQLite), and every
    ``generating`` row."""
    query = sa.select(*(table.c[c] for c in wanted)).where(*_between(table, period.load_from, period.until, sqlite=sqlite))
    # Stuck claims are current state: include generating rows from before the look-back.
    if period.load_from is not None or period.until is not None:
        query = query.union(sa.select(*(table.c[c] for c in wanted)).where(table.c.status == "generating"))
    return query


def empty_frame(wanted: list[str]) -> pd.DataFrame:
    """A source frame without rows that normalisation accepts."""
    frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in wanted})
    frame["created_at"] = frame["created_at"].astype(str)
    return frame


def older_rows_note(conn: Connection, period: Period) -> str | None:
    """`_older_rows_note` for the videos table of ``conn``."""
    return _older_rows_note(conn, _typed_videos(video_columns(conn)), period, sqlite=conn.dialect.name == "sqlite")


def load_database(url: str, *, period: Period, pushdown: bool = True, progress: bool = False) -> Loaded:
    """Load the period's videos (and look-back) from ``url``; see the module docstring."""
    engine = open_engine(url)
    source = f"database {redacted_url(url)}"
    notes: list[str] = []
    try:
        with engine.connect() as conn:
            use_sql, wanted, table, sqlite = plan_load(conn, period, pushdown=pushdown, notes=notes)
            if use_sql:
                scanned = _count_in_period(conn, table, period)
                chunks = _read_chunks(conn, _pushdown_query(period, wanted), total=None, progress=progress)
            else:
                chunks = _read_chunks(conn, chunked_query(table, wanted, period, sqlite=sqlite), total=None, progress=progress)
            frame = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=wanted)
            if frame.empty:
                frame = empty_frame(wanted)
            videos = normalise_videos(frame, source=source, key_params=period.key_params)
            if not use_sql:
                # The exact period, on parsed times (SQLite's filter was a superset).
                keep = in_period(videos["created_at"], period.load_from, period.until)
                videos = videos.loc[keep | (videos["status"] == "generating")].reset_index(drop=True)
                scanned = int(in_period(videos["created_at"], period.since, period.until).sum())
            if scanned == 0 and period.since is not None:
                note = _older_rows_note(conn, table, period, sqlite=sqlite)
                notes.extend([note] if note else [])
    except sa.exc.DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        raise SourceError(f"cannot read database {redacted_url(url)}: {first}") from exc
    finally:
        engine.dispose()
    return Loaded(
        videos=videos,
        requests=None,
        description=source + (" (duplicate search in SQL)" if use_sql else ""),
        videos_scanned=scanned,
        pushed_down=use_sql,
        notes=notes,
    )
