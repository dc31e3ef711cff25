"""``audit cleanup``: mark historical duplicates in a database, keeping each chain's first video.

Marking, not deleting: a duplicate gets ``duplicate_of = <its original's id>``; nothing else
changes, and the original keeps ``NULL``. The write-up deleted 45-56 by id range, which also
deleted video 54, the one the user wanted; marking is reversible and keeps the history the
audit is computed from.

Safety, in order: the plan is computed read-only; without ``apply`` nothing else happens (a
dry run). With ``apply``, one transaction locks the rows to change, writes every one of them,
as it is, to a backup file (JSON lines) and flushes it to disk, and only then updates them.
A failure before the commit leaves the table as it was, and the backup names what would
have changed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from audit.detect import mark_duplicates
from audit.frames import SchemaError
from audit.sources.base import Period, SourceError
from audit.sources.database import load_database, open_engine, redacted_url, video_columns

__all__ = ["CleanupPlan", "plan_cleanup", "apply_cleanup"]


@dataclass
class CleanupPlan:
    """Rows to mark: ``video_id, original_id, current_duplicate_of`` (already-marked rows with
    the right original are left out, so a second run does nothing)."""

    url: str
    marks: pd.DataFrame
    already_marked: int


def plan_cleanup(url: str, *, period: Period, progress: bool = False) -> CleanupPlan:
    """Find the duplicates of ``period`` in the database at ``url``. Reads only."""
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            if "duplicate_of" not in video_columns(conn):
                raise SchemaError(
                    "table 'videos' has no column 'duplicate_of': cleanup marks duplicates there "
                    "(the service's schema has it; migrate the store first)"
                )
    except sa.exc.DBAPIError as exc:
        raise SourceError(f"cannot read database {redacted_url(url)}: {str(exc.orig).splitlines()[0]}") from exc
    finally:
        engine.dispose()
    loaded = load_database(url, period=period, progress=progress)
    marked = mark_duplicates(loaded.videos, window=period.window)
    if period.since is not None:
        marked.loc[marked["created_at"] < pd.Timestamp(period.since), "is_duplicate"] = False
    dups = marked.loc[marked["is_duplicate"], ["id", "original_id"]].rename(columns={"id": "video_id"})
    ids = [int(i) for i in dups["video_id"]]
    current: dict[int, int | None] = {}
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            for start in range(0, len(ids), 1000):
                batch = ids[start : start + 1000]
                rows = conn.execute(
                    sa.text("SELECT id, duplicate_of FROM videos WHERE id IN :ids").bindparams(
                        sa.bindparam("ids", expanding=True)
                    ),
                    {"ids": batch},
                )
                current.update({int(r.id): r.duplicate_of for r in rows})
    finally:
        engine.dispose()
    dups["current_duplicate_of"] = dups["video_id"].map(current).astype("Int64")
    todo = dups["current_duplicate_of"].isna() | (dups["current_duplicate_of"] != dups["original_id"])
    marks = dups.loc[todo.fillna(True)].astype({"video_id": "int64", "original_id": "int64"}).reset_index(drop=True)
    return CleanupPlan(url=url, marks=marks, already_marked=int((~todo.fillna(True)).sum()))


def apply_cleanup(plan: CleanupPlan, *, backup_dir: str | Path, as_of: datetime) -> Path | None:
    """Back up, then mark, the plan's rows in one transaction. Returns the backup's path
    (None when there was nothing to mark)."""
    if plan.marks.empty:
        return None
    backup_dir = Path(backup_dir)
    try:
        backup_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SourceError(f"cannot create the backup directory {backup_dir}: {exc.strerror or exc}; nothing changed") from exc
    stamp = pd.Timestamp(as_of).tz_convert("UTC").strftime("%Y%m%dT%H%M%SZ")
    backup = backup_dir / f"cleanup-{stamp}.jsonl"
    if backup.exists():
        raise SourceError(f"backup {backup} already exists; pass another --backup-dir or --as-of")
    ids = [int(i) for i in plan.marks["video_id"]]
    updates = [
        {"vid": int(v), "original": int(o)} for v, o in zip(plan.marks["video_id"], plan.marks["original_id"], strict=True)
    ]
    engine = open_engine(plan.url)
    try:
        with engine.begin() as conn:
            select = "SELECT * FROM videos WHERE id IN :ids ORDER BY id"
            if engine.dialect.name == "postgresql":
                select += " FOR UPDATE"
            rows = conn.execute(sa.text(select).bindparams(sa.bindparam("ids", expanding=True)), {"ids": ids})
            with open(backup, "x") as out:
                for row in rows:
                    out.write(json.dumps(dict(row._mapping), default=str) + "\n")
                out.flush()
                os.fsync(out.fileno())
            conn.execute(sa.text("UPDATE videos SET duplicate_of = :original WHERE id = :vid"), updates)
    except sa.exc.DBAPIError as exc:
        raise SourceError(f"cleanup failed, nothing changed: {str(exc.orig).splitlines()[0]}") from exc
    except OSError as exc:  # the backup could not be written: the transaction rolled back
        raise SourceError(f"cannot write the backup {backup}: {exc.strerror or exc}; nothing changed") from exc
    finally:
        engine.dispose()
    return backup
