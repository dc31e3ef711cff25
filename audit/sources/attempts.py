"""The service's attempts with their provider job and cost, for the reconciliation.

Every row of ``videos`` is one attempt (the service keeps them all as history): with
``provider_job_id`` (the prediction it created or adopted, empty when it created none) and
``cost_usd`` (what it recorded as spent). The sweep reads neither, so they are loaded here,
from the same sources: a CSV/Parquet file or a SQLite/PostgreSQL URL (`audit.sources.database`).

A source without ``provider_job_id`` cannot be reconciled (the incident's fixture and an
external store lack it): `SchemaError`, which the CLI turns into exit 2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from audit.frames import SchemaError, normalise_videos
from audit.sources.base import Period, SourceError, in_period
from audit.sources.files import read_table

__all__ = ["RECONCILE_COLUMNS", "load_attempts_file", "load_attempts_database", "attempts_frame"]

RECONCILE_COLUMNS = ["provider_job_id", "cost_usd"]


def attempts_frame(frame: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """The canonical videos frame with ``provider_job_id`` (text or None) and ``cost_usd``
    (float, NaN when not recorded)."""
    missing = [c for c in RECONCILE_COLUMNS if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{source}: missing column(s) {', '.join(missing)}, needed to reconcile with the provider "
            "(the service's videos table has them)"
        )
    videos = normalise_videos(frame, source=source)
    jobs = videos["provider_job_id"]
    videos["provider_job_id"] = jobs.astype(object).where(jobs.notna() & (jobs.astype(str).str.strip() != ""), None)
    videos["provider_job_id"] = [None if j is None else str(j).strip() for j in videos["provider_job_id"]]
    cost = videos["cost_usd"].astype(object).where(videos["cost_usd"].notna(), None)
    try:
        videos["cost_usd"] = pd.to_numeric(cost.replace("", None), errors="raise").astype(float)
    except (ValueError, TypeError) as exc:
        raise SchemaError(f"{source}: column 'cost_usd' must hold numbers: {exc}") from exc
    if not np.isfinite(videos["cost_usd"].fillna(0).to_numpy()).all():
        raise SchemaError(f"{source}: column 'cost_usd' has a value that is not a finite number")
    return videos


def _cut(videos: pd.DataFrame, period: Period) -> pd.DataFrame:
    keep = in_period(videos["created_at"], period.load_from, period.until)
    return videos.loc[keep].reset_index(drop=True)


def load_attempts_file(path: str | Path, *, period: Period) -> pd.DataFrame:
    """Attempts from a CSV/Parquet export of ``videos``, the period and one window before it."""
    return _cut(attempts_frame(read_table(path, what="videos"), source=str(path)), period)


def load_attempts_database(url: str, *, period: Period) -> pd.DataFrame:
    """Attempts from the service's database: the period and one window before it."""
    from audit.frames import VIDEO_COLUMNS
    from audit.sources.database import _between, _typed_videos, open_engine, redacted_url, video_columns

    engine = open_engine(url)
    source = f"database {redacted_url(url)}"
    try:
        with engine.connect() as conn:
            columns = video_columns(conn)
            missing = [c for c in RECONCILE_COLUMNS if c not in columns]
            if missing:
                raise SchemaError(
                    f"table 'videos' is missing column(s) {', '.join(missing)}, needed to reconcile with the provider"
                )
            wanted = [c for c in VIDEO_COLUMNS if c in columns and c != "prompt_key"] + RECONCILE_COLUMNS
            table = _typed_videos(columns)
            sqlite = engine.dialect.name == "sqlite"
            query = sa.select(*(table.c[c] for c in wanted)).where(
                *_between(table, period.load_from, period.until, sqlite=sqlite)
            )
            frame = pd.read_sql(query, conn)
    except sa.exc.DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        raise SourceError(f"cannot read database {redacted_url(url)}: {first}") from exc
    finally:
        engine.dispose()
    if frame.empty:
        frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in wanted})
        frame["created_at"] = frame["created_at"].astype(str)
    # Numeric(10, 2) comes back as Decimal: the frame's money is float, like the sweep's.
    frame["cost_usd"] = [None if v is None or pd.isna(v) else float(v) for v in frame["cost_usd"]]
    return _cut(attempts_frame(frame, source=source), period)
