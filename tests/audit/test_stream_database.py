"""The streaming sweep of a database (`audit.stream.database`) against ``--in-memory``: the same
``summary.json`` and ``duplicates.csv`` from SQLite and PostgreSQL, in several user shards."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import audit.stream
import audit.stream.partition as partition
from audit.cli import main
from audit.synthetic import synthetic_videos, to_iso_text
from tests.audit.conftest import REQUESTS_CSV, VIDEOS_CSV, seed_external_db, seed_service_db

AS_OF = "2025-10-16T00:00:00+00:00"


def both(tmp_path: Path, *args: str) -> tuple[Path, Path]:
    common = ["sweep", "--as-of", AS_OF, "--no-progress", *args]
    assert main([*common, "--out", str(tmp_path / "stream")]) == 0
    assert main([*common, "--out", str(tmp_path / "memory"), "--in-memory"]) == 0
    return tmp_path / "stream", tmp_path / "memory"


def assert_same_files(a: Path, b: Path) -> None:
    for name in ("summary.json", "duplicates.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("period", [["--since", "2025-10-01"], ["--since", "2025-10-15T05:00:00", "--until", "2025-10-15T06:00"]])
def test_an_external_store_streams_to_the_same_bytes(db_url, tmp_path, monkeypatch, period):
    """No prompt_key column: the chunked load, on both engines; several shards and frames."""
    monkeypatch.setattr(audit.stream, "SHARD_ROWS", 10)
    monkeypatch.setattr(partition, "FRAME_ROWS", 16)
    seed_external_db(db_url, pd.read_csv(VIDEOS_CSV, dtype=str))
    stream, memory = both(tmp_path, "--database-url", db_url, *period)
    assert_same_files(stream, memory)
    assert "database" in (stream / "summary.json").read_text()


def test_an_empty_period_says_so_in_both(tmp_path):
    url = f"sqlite:///{tmp_path / 'v.db'}"
    seed_service_db(url, pd.read_csv(VIDEOS_CSV, dtype=str))
    stream, memory = both(tmp_path, "--database-url", url, "--since", "2025-11-01", "--until", "2025-11-02")
    assert_same_files(stream, memory)
    assert "no video was created in the period" in (stream / "summary.json").read_text()


def test_the_service_database_on_postgresql_keeps_its_pushdown(pg_url, tmp_path):
    seed_service_db(pg_url, pd.read_csv(VIDEOS_CSV, dtype=str))
    stream, memory = both(tmp_path, "--database-url", pg_url, "--since", "2025-10-01")
    assert_same_files(stream, memory)
    assert "duplicate search in SQL" in (stream / "summary.json").read_text()


def test_a_synthetic_sqlite_history_in_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(audit.stream, "SHARD_ROWS", 2_500)
    monkeypatch.setattr(partition, "FRAME_ROWS", 3_000)
    url = f"sqlite:///{tmp_path / 'v.db'}"
    seed_service_db(url, to_iso_text(synthetic_videos(8_000, seed=5, users=100)).astype(str))
    stream, memory = both(tmp_path, "--database-url", url, "--since", "2025-01-01", "--until", "2025-03-01")
    assert_same_files(stream, memory)
    assert len((stream / "duplicates.csv").read_text().splitlines()) > 300


def test_files_and_database_agree(tmp_path):
    """The fixture swept from its CSV and from a database copy finds the same duplicates."""
    url = f"sqlite:///{tmp_path / 'v.db'}"
    seed_external_db(url, pd.read_csv(VIDEOS_CSV, dtype=str))
    assert main(["sweep", "--as-of", AS_OF, "--no-progress", "--database-url", url, "--since", "2025-10-01",
                 "--out", str(tmp_path / "db")]) == 0
    assert main(["sweep", "--as-of", AS_OF, "--no-progress", "--videos", str(VIDEOS_CSV), "--since", "2025-10-01",
                 "--out", str(tmp_path / "file")]) == 0
    db, file = (pd.read_csv(tmp_path / name / "duplicates.csv") for name in ("db", "file"))
    assert db["video_id"].tolist() == file["video_id"].tolist()
    assert REQUESTS_CSV.exists()
