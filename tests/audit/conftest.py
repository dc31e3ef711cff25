"""Shared pieces for the audit tests: the incident fixtures as frames, and databases seeded
with them (the service's schema, or an external store's incident-only columns)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from audit.frames import normalise_videos
from service.stores.models import Base, Video
from service.prompt_key import prompt_key

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"
VIDEOS_CSV = FIXTURES / "videos.csv"
REQUESTS_CSV = FIXTURES / "requests.csv"
# A fixed "now" just after the incident: no test depends on the wall clock.
AS_OF = datetime(2025, 10, 16, 0, 0, tzinfo=UTC)
EXPECTED_DUPLICATES = {45, 46, 47, 48, 49, 50, 51, 52, 53, 55, 56}


@pytest.fixture
def fixture_videos() -> pd.DataFrame:
    return pd.read_csv(VIDEOS_CSV, dtype=str)


@pytest.fixture
def fixture_requests() -> pd.DataFrame:
    return pd.read_csv(REQUESTS_CSV, dtype=str)


def _rows(videos: pd.DataFrame) -> list[dict]:
    frame = normalise_videos(videos)
    rows = []
    for r in frame.itertuples(index=False):
        rows.append(
            {
                "id": int(r.id),
                "tg_user_id": int(r.tg_user_id),
                "prompt": r.prompt,
                "enhanced_prompt": r.enhanced_prompt,
                "duration_seconds": None if pd.isna(r.duration_seconds) else int(r.duration_seconds),
                "category": r.category,
                "status": r.status,
                "video_url": r.video_url,
                "thumbnail_url": r.thumbnail_url,
                "created_at": r.created_at.to_pydatetime(),
                "updated_at": (r.created_at if pd.isna(r.updated_at) else r.updated_at).to_pydatetime(),
            }
        )
    return rows


def seed_service_db(url: str, videos: pd.DataFrame) -> None:
    """Create the service's schema at ``url`` and insert ``videos`` as the service would."""
    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)
    rows = _rows(videos)
    for row in rows:
        row.update(prompt_key=prompt_key(row["prompt"]), attempt=1, error=None, cost_usd=Decimal("4.00"), duplicate_of=None)
    with engine.begin() as conn:
        if rows:
            conn.execute(sa.insert(Video), rows)
    engine.dispose()


def seed_external_db(url: str, videos: pd.DataFrame) -> None:
    """An external store: a ``videos`` table with only the incident's columns (no prompt_key)."""
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    from service.stores.models import UTCDateTime

    table = sa.Table(
        "videos",
        meta,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("tg_user_id", sa.BigInteger),
        sa.Column("prompt", sa.Text),
        sa.Column("enhanced_prompt", sa.Text),
        sa.Column("duration_seconds", sa.Integer),
        sa.Column("category", sa.String(64)),
        sa.Column("status", sa.String(16)),
        sa.Column("video_url", sa.Text),
        sa.Column("thumbnail_url", sa.Text),
        sa.Column("created_at", UTCDateTime()),
        sa.Column("updated_at", UTCDateTime()),
    )
    meta.create_all(engine)
    rows = _rows(videos)
    with engine.begin() as conn:
        if rows:  # an empty list would insert one row of NULLs
            conn.execute(sa.insert(table), rows)
    engine.dispose()
