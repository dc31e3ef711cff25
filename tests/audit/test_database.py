"""The database source: chunked loads on SQLite and PostgreSQL, and the SQL pushdown on a real
PostgreSQL agreeing with pandas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from audit.detect import mark_duplicates
from audit.frames import SchemaError, normalise_videos
from audit.pipeline import run_audit
from audit.sources import SourceError, detect_duplicates_sql, load_database
from audit.sources.base import Period
from audit.synthetic import synthetic_videos
from tests.audit.conftest import AS_OF, EXPECTED_DUPLICATES, seed_external_db, seed_service_db


def _pandas_answer(videos: pd.DataFrame, period: Period) -> list[dict]:
    frame = normalise_videos(videos)
    if period.load_from is not None:
        frame = frame[frame["created_at"] >= period.load_from]
    if period.until is not None:
        frame = frame[frame["created_at"] <= period.until]
    marked = mark_duplicates(frame, window=period.window)
    dups = marked[marked["is_duplicate"]]
    if period.since is not None:
        dups = dups[dups["created_at"] >= period.since]
    return [
        {"video_id": int(r.id), "previous_id": int(r.previous_id), "original_id": int(r.original_id)}
        for r in dups.itertuples(index=False)
    ]


def test_fixtures_through_service_schema(db_url, fixture_videos):
    seed_service_db(db_url, fixture_videos)
    loaded = load_database(db_url, period=Period())
    result = run_audit(loaded.videos, as_of=AS_OF, videos_scanned=loaded.videos_scanned)
    assert set(result.duplicates["video_id"]) == EXPECTED_DUPLICATES
    assert result.summary["videos_scanned"] == 56
    assert result.summary["wasted_usd"] == 44.0
    assert loaded.pushed_down == db_url.startswith("postgresql")


def test_external_store_without_prompt_key_loads_in_pandas(db_url, fixture_videos):
    seed_external_db(db_url, fixture_videos)
    loaded = load_database(db_url, period=Period())
    assert not loaded.pushed_down
    result = run_audit(loaded.videos, as_of=AS_OF)
    assert set(result.duplicates["video_id"]) == EXPECTED_DUPLICATES


def test_period_counts_only_its_duplicates_but_sees_the_lookback(db_url, fixture_videos):
    seed_service_db(db_url, fixture_videos)
    # From 10-14 10:00: 48's original (35, 10-13 12:00) lies in the look-back, not the period.
    period = Period(since=datetime(2025, 10, 14, 10, 0, tzinfo=UTC), until=datetime(2025, 10, 15, 23, 59, tzinfo=UTC))
    loaded = load_database(db_url, period=period)
    result = run_audit(
        loaded.videos, as_of=AS_OF, since=period.since, until=period.until, videos_scanned=loaded.videos_scanned
    )
    assert set(result.duplicates["video_id"]) == {48, 49, 50, 51, 52, 53, 55, 56}
    assert dict(zip(result.duplicates["video_id"], result.duplicates["original_id"]))[48] == 35
    expected_scanned = int((normalise_videos(fixture_videos)["created_at"] >= period.since).sum())
    assert result.summary["videos_scanned"] == expected_scanned


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pushdown_agrees_with_pandas_on_postgres(pg_url, seed):
    # Dense: few users and prompts over a few days, whole-second times, so ties, failed
    # originals, chains and window edges all occur.
    videos = synthetic_videos(3000, seed=seed, users=20, prompts_per_user=4, days=10)
    seed_service_db(pg_url, videos)
    engine = sa.create_engine(pg_url)
    periods = [
        Period(),
        Period(since=datetime(2025, 1, 4, tzinfo=UTC), until=datetime(2025, 1, 8, tzinfo=UTC)),
        Period(window=timedelta(hours=3)),
    ]
    with engine.connect() as conn:
        for period in periods:
            assert detect_duplicates_sql(conn, period) == _pandas_answer(videos, period)
    engine.dispose()


def test_pushdown_load_gives_the_same_audit_as_a_full_load(pg_url):
    videos = synthetic_videos(3000, seed=7, users=400, prompts_per_user=8, days=30)
    seed_service_db(pg_url, videos)
    pushed = load_database(pg_url, period=Period())
    full = load_database(pg_url, period=Period(), pushdown=False)
    assert pushed.pushed_down and not full.pushed_down
    assert len(pushed.videos) < len(full.videos)
    a = run_audit(pushed.videos, as_of=AS_OF, videos_scanned=pushed.videos_scanned)
    b = run_audit(full.videos, as_of=AS_OF)
    assert a.summary == b.summary


def test_sqlite_edge_ties_equal_timestamps(sqlite_url):
    same = "2025-10-15T05:37:00+00:00"
    videos = pd.DataFrame(
        {
            "id": [2, 1, 3],
            "tg_user_id": [7, 7, 7],
            "prompt": ["x", "X", "x!"],
            "status": ["ready", "ready", "failed"],
            "created_at": [same, same, same],
        }
    )
    seed_service_db(sqlite_url, videos)
    loaded = load_database(sqlite_url, period=Period())
    marked = mark_duplicates(loaded.videos)
    # (created_at, id) orders 1 before 2 before 3: 1 is the original, 2 and failed 3 duplicates.
    assert list(marked.loc[marked["is_duplicate"], "id"]) == [2, 3]
    assert list(marked.loc[marked["is_duplicate"], "original_id"]) == [1, 1]


def test_missing_table_and_column_are_schema_errors(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE other (id INTEGER)"))
    with pytest.raises(SchemaError, match="no table 'videos'"):
        load_database(sqlite_url, period=Period())
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE videos (id INTEGER, prompt TEXT, status TEXT, created_at TEXT)"))
    engine.dispose()
    with pytest.raises(SchemaError, match="missing column.*tg_user_id"):
        load_database(sqlite_url, period=Period())


def test_unreachable_database_is_a_source_error():
    with pytest.raises(SourceError, match="cannot read database"):
        load_database("postgresql+psycopg://nobody:secret@127.0.0.1:1/none", period=Period())


def test_sweep_reads_without_writing(pg_url, fixture_videos):
    seed_service_db(pg_url, fixture_videos)
    engine = sa.create_engine(pg_url)
    before = pd.read_sql("SELECT * FROM videos ORDER BY id", engine)
    load_database(pg_url, period=Period())
    after = pd.read_sql("SELECT * FROM videos ORDER BY id", engine)
    engine.dispose()
    pd.testing.assert_frame_equal(before, after)


def test_pushdown_agrees_with_brute_force_on_edge_cases(pg_url):
    """The hypothesis histories of `test_detect` (equal timestamps, exact 24 h gaps, failed
    originals), run through PostgreSQL's window functions."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.audit.test_detect import brute_force, rows_strategy

    seed_service_db(pg_url, pd.DataFrame(columns=["id", "tg_user_id", "prompt", "status", "created_at"]))
    engine = sa.create_engine(pg_url)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(rows=rows_strategy, window_hours=st.sampled_from([1, 24]), ids=st.randoms(use_true_random=False))
    def check(rows, window_hours, ids):
        numbers = list(range(1, len(rows) + 1))
        ids.shuffle(numbers)
        for row, number in zip(rows, numbers):
            row["id"] = number
        with engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE videos CASCADE"))
        seed_service_db(pg_url, pd.DataFrame(rows, columns=["id", "tg_user_id", "prompt", "status", "created_at"]))
        window = timedelta(hours=window_hours)
        with engine.connect() as conn:
            got = detect_duplicates_sql(conn, Period(window=window))
        expected = brute_force(rows, window)
        assert {r["video_id"]: (r["previous_id"], r["original_id"]) for r in got} == expected

    try:
        check()
    finally:
        engine.dispose()
