"""The streaming sweep of a database's ``videos`` table: the chunked load of
`audit.sources.database` (SQLite, a table without ``prompt_key``, or stored keys that
disagree with the service's), its chunks handed to `audit.stream.sweep_frames` as they arrive
instead of gathered into one frame.

PostgreSQL with good stored keys keeps its pushdown (`load_database`): the rule runs in SQL
and only the groups with a duplicate come back, already a bounded load. Supabase keeps its
own loader too: it reads pages over HTTP, a week at a time, far below the sizes this is for.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from audit.pipeline import AuditResult
from audit.sources.base import Period, SourceError
from audit.sources.database import chunked_query, empty_frame, older_rows_note, open_engine, plan_load, redacted_url
from audit.stream import sweep_frames
from audit.stream.partition import FRAME_ROWS

__all__ = ["sweep_database"]


def sweep_database(url: str, out: Path, *, period: Period, **options) -> tuple[AuditResult, dict[str, Path], str] | None:
    """Sweep the database at ``url`` into ``out`` (options: `sweep_frames`'s); returns the
    result, the paths and the source's description, or None when the table is for the
    pushdown (then `load_database` is the way, and nothing was written)."""
    engine = open_engine(url)
    source = f"database {redacted_url(url)}"
    notes: list[str] = []
    try:
        with engine.connect() as conn:
            use_sql, wanted, table, sqlite = plan_load(conn, period, pushdown=True, notes=notes)
            if use_sql:
                return None
            query = chunked_query(table, wanted, period, sqlite=sqlite)
            estimate = int(conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one())

            def chunks():
                any_read = False
                for chunk in pd.read_sql(query, conn, chunksize=FRAME_ROWS):
                    any_read = any_read or len(chunk) > 0
                    yield chunk
                if not any_read:
                    yield empty_frame(wanted)

            def notes_for(scanned: int) -> list[str]:
                note = older_rows_note(conn, period) if scanned == 0 and period.since is not None else None
                return [*notes, *([note] if note else [])]

            result, paths = sweep_frames(chunks(), None, out, estimate=estimate, videos_source=source,
                                         requests_source=None, period=period, source=source, notes=notes_for, **options)
    except sa.exc.DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        raise SourceError(f"cannot read database {redacted_url(url)}: {first}") from exc
    finally:
        engine.dispose()
    return result, paths, source
