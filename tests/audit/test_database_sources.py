"""Database sources that must agree with the pandas path: stale stored keys under the
PostgreSQL pushdown, ISO-text timestamps in SQLite, stuck claims outside the period, and the
hint when the default period is empty."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from audit.cli import main
from audit.pipeline import run_audit
from audit.sources import load_database, load_files, load_supabase
from audit.sources.base import Period
from audit.synthetic import synthetic_videos
from tests.audit.conftest import AS_OF, EXPECTED_DUPLICATES, REQUESTS_CSV, VIDEOS_CSV, seed_external_db, seed_service_db


def _duplicates(loaded, period: Period) -> list[tuple[int, int]]:
    result = run_audit(loaded.videos, as_of=AS_OF, since=period.since, until=period.until,
                       window=period.window, videos_scanned=loaded.videos_scanned)
    return sorted(zip(result.duplicates["video_id"], result.duplicates["original_id"]))


def _execute(url: str, sql: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in sql.split(";"):
            conn.execute(sa.text(statement))
    engine.dispose()


@pytest.mark.parametrize(
    "backfill",
    ["UPDATE videos SET prompt_key = lower(btrim(prompt))",
     # An adopted table whose key column was added nullable and never fully backfilled.
     "ALTER TABLE videos ALTER COLUMN prompt_key DROP NOT NULL; UPDATE videos SET prompt_key = NULL WHERE id % 7 = 0",
     "UPDATE videos SET prompt_key = lower(btrim(prompt)) WHERE id % 3 = 0"],
)
def test_pushdown_never_finds_fewer_than_pandas_when_stored_keys_are_stale(pg_url, backfill):
    videos = synthetic_videos(2000, seed=11, users=30, prompts_per_user=5, days=6)
    seed_service_db(pg_url, videos)
    period = Period(since=datetime(2025, 1, 2, tzinfo=UTC), until=datetime(2025, 1, 6, tzinfo=UTC))
    trusted = load_database(pg_url, period=period)
    assert trusted.pushed_down and trusted.notes == []
    expected = _duplicates(load_database(pg_url, period=period, pushdown=False), period)
    assert _duplicates(trusted, period) == expected

    _execute(pg_url, backfill)
    loaded = load_database(pg_url, period=period)
    assert not loaded.pushed_down
    [note] = loaded.notes
    assert "stored prompt_key differs" in note and "ran in pandas" in note
    assert _duplicates(loaded, period) == expected and expected


def test_the_fallback_is_said_in_the_sweeps_output(pg_url, tmp_path, capsys):
    seed_service_db(pg_url, pd.read_csv(VIDEOS_CSV, dtype=str))
    _execute(pg_url, "UPDATE videos SET prompt_key = lower(btrim(prompt))")
    out = tmp_path / "out"
    assert main(["sweep", "--database-url", pg_url, "--as-of", "2025-10-16T00:00:00+00:00", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Note: stored prompt_key differs from the service's definition on" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert {d["video_id"] for d in summary["duplicates"]} == EXPECTED_DUPLICATES
    assert "ran in pandas" in summary["notes"][0]


def _iso_text_sqlite(url: str, videos: pd.DataFrame, formats: list[str]) -> None:
    """An adopted SQLite table: TEXT timestamps, each row in one of ``formats``."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE videos (id INTEGER PRIMARY KEY, tg_user_id INTEGER, prompt TEXT, status TEXT, "
            "created_at TEXT, updated_at TEXT)"
        ))
        for i, row in enumerate(videos.itertuples(index=False)):
            moment = pd.Timestamp(row.created_at)
            text = moment.tz_convert(formats[i % len(formats)][1]).strftime(formats[i % len(formats)][0])
            conn.execute(sa.text("INSERT INTO videos VALUES (:id, :u, :p, :s, :t, :t)"),
                         {"id": int(row.id), "u": int(row.tg_user_id), "p": row.prompt, "s": row.status, "t": text})
    engine.dispose()


def test_sqlite_iso_text_timestamps_filter_by_time_not_text(sqlite_url):
    videos = synthetic_videos(1500, seed=5, users=25, prompts_per_user=4, days=14)
    formats = [("%Y-%m-%dT%H:%M:%S+00:00", "UTC"), ("%Y-%m-%d %H:%M:%S.%f", "UTC"),
               ("%Y-%m-%dT%H:%M:%S%z", "Europe/Berlin"), ("%Y-%m-%d %H:%M:%S", "UTC")]
    _iso_text_sqlite(sqlite_url, videos, formats)
    reference = videos.assign(created_at=pd.to_datetime(videos["created_at"], utc=True).map(lambda t: t.isoformat()))
    start = pd.Timestamp(videos["created_at"].min()).tz_convert("UTC").floor("D")
    for days in range(0, 14, 3):
        period = Period(since=(start + timedelta(days=days)).to_pydatetime(),
                        until=(start + timedelta(days=days + 7)).to_pydatetime())
        loaded = load_database(sqlite_url, period=period)
        frame = reference[
            (pd.to_datetime(reference["created_at"]) >= period.load_from)
            & (pd.to_datetime(reference["created_at"]) <= period.until)
        ]
        expected = run_audit(frame, as_of=AS_OF, since=period.since, until=period.until)
        assert loaded.videos_scanned == expected.summary["videos_scanned"]
        assert _duplicates(loaded, period) == sorted(zip(expected.duplicates["video_id"], expected.duplicates["original_id"]))


def _with_old_generating_row(frame: pd.DataFrame) -> pd.DataFrame:
    old = {"id": 999, "tg_user_id": 1, "prompt": "left behind", "status": "generating",
           "created_at": "2025-10-01T00:00:00+00:00", "updated_at": "2025-10-01T00:00:00+00:00"}
    return pd.concat([frame, pd.DataFrame([old])], ignore_index=True)


def test_stuck_claims_are_the_same_from_every_source(db_url, tmp_path):
    frame = _with_old_generating_row(pd.read_csv(VIDEOS_CSV, dtype=str))
    csv = tmp_path / "videos.csv"
    frame.to_csv(csv, index=False)
    seed_service_db(db_url, frame)
    period = Period(since=datetime(2025, 10, 14, tzinfo=UTC), until=datetime(2025, 10, 15, 23, 59, tzinfo=UTC))
    sources = {"csv": load_files(csv, REQUESTS_CSV, period=period), "database": load_database(db_url, period=period)}
    stuck = {}
    for name, loaded in sources.items():
        result = run_audit(loaded.videos, loaded.requests, as_of=AS_OF, since=period.since, until=period.until,
                           videos_scanned=loaded.videos_scanned)
        stuck[name] = list(result.stuck_claims["id"])
        assert result.summary["videos_scanned"] == 17  # 40-56: the old claim is not counted
    assert stuck == {name: [999] for name in sources}


def test_supabase_lists_the_same_stuck_claims(pg_url):
    # The user's Supabase: PostgREST stood in for at the HTTP boundary, over the same rows.
    from tests.audit.test_supabase import KEY, URL, PostgrestOnPostgres, client

    seed_external_db(pg_url, _with_old_generating_row(pd.read_csv(VIDEOS_CSV, dtype=str)))
    period = Period(since=datetime(2025, 10, 14, tzinfo=UTC), until=datetime(2025, 10, 15, 23, 59, tzinfo=UTC))
    loaded = load_supabase(URL, KEY, period=period, http_client=client(PostgrestOnPostgres(pg_url)))
    result = run_audit(loaded.videos, as_of=AS_OF, since=period.since, until=period.until)
    assert list(result.stuck_claims["id"]) == [999]
    assert result.summary["videos_scanned"] == 17


def test_an_empty_default_period_says_older_videos_exist(db_url, tmp_path, capsys):
    seed_service_db(db_url, pd.read_csv(VIDEOS_CSV, dtype=str))
    out = tmp_path / "out"
    assert main(["sweep", "--database-url", db_url, "--as-of", "2025-11-30T00:00:00+00:00", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Scanned 0 videos" in printed
    assert "Note: no video was created in the period (2025-11-23T00:00:00+00:00 to 2025-11-30T00:00:00+00:00), " \
           "but the table has 56 older video(s), the latest created 2025-10-15T05:40:00+00:00" in printed
    assert json.loads((out / "summary.json").read_text())["notes"] == [printed.split("Note: ")[1].split("\n")[0]]
