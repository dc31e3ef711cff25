"""A SQLAlchemy database with a ``videos`` table: the service's own, or any copy of the store.

Two ways to read it:

- **Chunked load** (any database, and any table without a ``prompt_key`` column, such as an
  external store with only the incident's columns): the period and its look-back are read
  with ``pd.read_sql(chunksize=…)`` and the rule runs in pandas.
- **Pushdown** (PostgreSQL with ``prompt_key``): the rule runs as window functions in SQL
  (`DUPLICATES_SQL`) and only the ``(tg_user_id, prompt_key)`` groups that contain a
  duplicate, plus any ``generating`` rows, come back. pandas then runs the same rule on those
  groups: groups are independent, so the result is the same as for the whole table, and a
  table of millions of rows is never pulled. `detect_duplicates_sql` exposes the SQL's own
  answer so a test can hold it against pandas.

Nothing here writes: the sweep never modifies data (`audit.cleanup` is the only writer).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from audit.frames import REQUIRED_VIDEO_COLUMNS, VIDEO_COLUMNS, SchemaError, normalise_videos
from audit.rule_sql import DUPLICATES_SQL
from audit.sources.base import Loaded, Period, SourceError, progress_bar
from service.models import UTCDateTime
from service.settings import normalize_database_url

__all__ = ["open_engine", "redacted_url", "video_columns", "load_database", "detect_duplicates_sql", "DUPLICATES_SQL"]

# Rows per round trip: large enough that latency does not dominate, small enough that a
# chunk of wide rows (prompts are a few hundred bytes) stays a few MB.
CHUNK_ROWS = 50_000

# The rule's SQL lives in `audit.rule_sql` (also printed by `python -m audit sql`). {scope} bounds
# the rows read (the period plus one window of look-back); {counted} bounds the duplicates reported.


def open_engine(url: str) -> Engine:
    """An engine for ``url`` (``postgres://`` accepted), or `SourceError` for a bad URL."""
    try:
        parsed = sa.engine.make_url(normalize_database_url(url))
        engine = sa.create_engine(parsed)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as exc:
        raise SourceError(f"bad database URL: {exc}") from exc
    # SQLite creates a missing file on connect: a typo in the path would "audit" a new, empty
    # database (and leave it behind). A sweep never creates anything.
    path = parsed.database
    if parsed.get_backend_name() == "sqlite" and path and path != ":memory:" and not path.startswith("file:"):
        if not Path(path).is_file():
            engine.dispose()
            raise SourceError(f"database file not found: {path}")
    return engine


def redacted_url(url: str) -> str:
    """The URL with its password masked, for messages."""
    return sa.engine.make_url(normalize_database_url(url)).render_as_string(hide_password=True)


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


def _read_chunks(conn: Connection, query, total: int | None, *, progress: bool) -> list[pd.DataFrame]:
    chunks = []
    with progress_bar("loading videos", total, enabled=progress) as advance:
        for chunk in pd.read_sql(query, conn, chunksize=CHUNK_ROWS):
            chunks.append(chunk)
            advance(len(chunk))
    return chunks


def load_database(url: str, *, period: Period, pushdown: bool = True, progress: bool = False) -> Loaded:
    """Load the period's videos (and look-back) from ``url``; see the module docstring."""
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            columns = video_columns(conn)
            wanted = [c for c in VIDEO_COLUMNS if c in columns and c != "prompt_key"]
            table = _typed_videos(columns)
            scanned = _count_in_period(conn, table, period)
            use_sql = pushdown and engine.dialect.name == "postgresql" and "prompt_key" in columns
            if use_sql:
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
                query = query.columns(*(sa.column(c, _typed_videos(wanted).c[c].type) for c in wanted))
                chunks = _read_chunks(conn, query, total=None, progress=progress)
            else:
                query = sa.select(*(table.c[c] for c in wanted))
                if period.load_from is not None:
                    query = query.where(table.c.created_at >= period.load_from)
                if period.until is not None:
                    query = query.where(table.c.created_at <= period.until)
                # Stuck claims are current state: include generating rows from before the look-back.
                if period.load_from is not None:
                    query = query.union(sa.select(*(table.c[c] for c in wanted)).where(table.c.status == "generating"))
                chunks = _read_chunks(conn, query, total=None, progress=progress)
    except sa.exc.DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        raise SourceError(f"cannot read database {redacted_url(url)}: {first}") from exc
    finally:
        engine.dispose()
    frame = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=wanted)
    if frame.empty:
        frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in wanted})
        frame["created_at"] = frame["created_at"].astype(str)
    videos = normalise_videos(frame, source=f"database {redacted_url(url)}")
    return Loaded(
        videos=videos,
        requests=None,
        description=f"database {redacted_url(url)}" + (" (duplicate search in SQL)" if use_sql else ""),
        videos_scanned=scanned,
        pushed_down=use_sql,
    )
