"""``python -m audit``: outputs, exit codes 0/1/2, one-line errors, and the cleanup."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import sqlalchemy as sa

from audit.cli import main
from tests.audit.conftest import EXPECTED_DUPLICATES, REQUESTS_CSV, VIDEOS_CSV, seed_external_db, seed_service_db

AS_OF = "2025-10-16T00:00:00+00:00"


def sweep(*args: str) -> int:
    return main(["sweep", "--as-of", AS_OF, "--no-progress", *args])


def test_sweep_of_the_fixtures_writes_three_files(tmp_path, capsys):
    out = tmp_path / "out"
    assert sweep("--videos", str(VIDEOS_CSV), "--requests", str(REQUESTS_CSV), "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "Scanned 56 videos: 11 duplicates (7 sequential, 4 race), $44.00 wasted" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["videos_scanned"] == 56 and summary["duplicate_count"] == 11 and summary["wasted_usd"] == 44.0
    assert summary["by_class"] == {"sequential": 7, "race": 4}
    assert {d["video_id"] for d in summary["duplicates"]} == EXPECTED_DUPLICATES
    assert {"video_id", "original_id", "class"} <= set(summary["duplicates"][0])
    assert summary["stuck_claims"] == []
    table = pd.read_csv(out / "duplicates.csv")
    assert set(table["video_id"]) == EXPECTED_DUPLICATES
    assert table.set_index("video_id").loc[56, "original_id"] == 54
    page = (out / "report.html").read_text()
    assert "video 55 (chain 54)" in page and "video 56 (chain 54)" in page
    # Offline: plotly.js inline, no script fetched from a CDN.
    assert '<script src="http' not in page and "plotly.js v" in page


def test_fail_on_duplicates_exits_1_only_when_there_are_some(tmp_path):
    assert sweep("--videos", str(VIDEOS_CSV), "--out", str(tmp_path / "a"), "--fail-on-duplicates") == 1
    clean = tmp_path / "clean.csv"
    pd.read_csv(VIDEOS_CSV, dtype=str).query("id.astype('int') <= 44").to_csv(clean, index=False)
    assert sweep("--videos", str(clean), "--out", str(tmp_path / "b"), "--fail-on-duplicates") == 0


def _bad_csv(tmp_path, change) -> str:
    frame = change(pd.read_csv(VIDEOS_CSV, dtype=str))
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda p: ["--videos", str(p / "missing.csv")], "videos file not found"),
        (lambda p: ["--videos", _bad_csv(p, lambda f: f.drop(columns="tg_user_id"))], "missing column(s) tg_user_id"),
        (lambda p: ["--videos", _bad_csv(p, lambda f: f.assign(created_at="2025-10-15 05:37:00"))], "without a UTC offset"),
        (lambda p: ["--videos", _bad_csv(p, lambda f: f.assign(status="done"))], "unknown value(s) ['done']"),
        (lambda p: ["--database-url", "postgresql+psycopg://u:secret@127.0.0.1:1/x"], "cannot read database"),
        (lambda p: ["--database-url", f"sqlite:///{p / 'typo.db'}"], "database file not found"),
        (lambda p: ["--videos", str(VIDEOS_CSV), "--since", "2025-10-15", "--until", "2025-10-14"], "is after --until"),
    ],
)
def test_errors_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, make_args, message):
    out = tmp_path / "out"
    assert sweep(*make_args(tmp_path), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("audit: error: ") and message in err
    assert err.count("\n") == 1
    assert "secret" not in err
    assert not out.exists()


def test_supabase_without_credentials_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    monkeypatch.delenv("SUPABASE_SERVICE_KEY", raising=False)
    assert sweep("--supabase", "--out", str(tmp_path)) == 2
    assert "SUPABASE_URL and SUPABASE_SERVICE_KEY" in capsys.readouterr().err


def test_database_sweep_defaults_to_the_last_seven_days(db_url, tmp_path):
    seed_service_db(db_url, pd.read_csv(VIDEOS_CSV, dtype=str))
    assert sweep("--database-url", db_url, "--out", str(tmp_path)) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["since"] == "2025-10-09T00:00:00+00:00"
    assert {d["video_id"] for d in summary["duplicates"]} == EXPECTED_DUPLICATES  # all are after 10-09
    assert summary["videos_scanned"] == 56 - 10  # videos 1-10 are from 10-08
    assert summary["classification_basis"] == "estimate"


def test_module_entry_point(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "audit", "sweep", "--videos", str(VIDEOS_CSV), "--requests", str(REQUESTS_CSV),
         "--out", str(tmp_path), "--as-of", AS_OF, "--fail-on-duplicates"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "11 duplicates" in done.stdout


# --- cleanup -------------------------------------------------------------------------------


def _duplicate_of(url: str) -> dict[int, int | None]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, duplicate_of FROM videos ORDER BY id")).all()
    engine.dispose()
    return {int(r.id): r.duplicate_of for r in rows}


def test_cleanup_dry_run_changes_nothing_and_apply_marks_exactly_the_duplicates(db_url, tmp_path, capsys):
    seed_service_db(db_url, pd.read_csv(VIDEOS_CSV, dtype=str))
    backups = tmp_path / "backups"
    assert main(["cleanup", "--database-url", db_url, "--as-of", AS_OF, "--backup-dir", str(backups)]) == 0
    assert "11 duplicate(s) to mark" in capsys.readouterr().out
    assert set(_duplicate_of(db_url).values()) == {None} and not backups.exists()

    assert main(["cleanup", "--database-url", db_url, "--as-of", AS_OF, "--backup-dir", str(backups), "--apply"]) == 0
    marks = {k: v for k, v in _duplicate_of(db_url).items() if v is not None}
    assert marks == {45: 43, 46: 44, 47: 34, 48: 35, 49: 35, 50: 36, 51: 38, 52: 37, 53: 37, 55: 54, 56: 54}
    [backup] = list(backups.iterdir())
    saved = [json.loads(line) for line in backup.read_text().splitlines()]
    assert sorted(r["id"] for r in saved) == sorted(EXPECTED_DUPLICATES)
    assert all(r["duplicate_of"] is None for r in saved)  # the rows as they were

    capsys.readouterr()
    later = "2025-10-16T01:00:00+00:00"
    assert main(["cleanup", "--database-url", db_url, "--as-of", later, "--backup-dir", str(backups), "--apply"]) == 0
    assert "0 duplicate(s) to mark, 11 already marked" in capsys.readouterr().out
    assert len(list(backups.iterdir())) == 1


def test_cleanup_needs_a_duplicate_of_column(sqlite_url, tmp_path, capsys):
    seed_external_db(sqlite_url, pd.read_csv(VIDEOS_CSV, dtype=str))
    assert main(["cleanup", "--database-url", sqlite_url, "--as-of", AS_OF, "--apply", "--backup-dir", str(tmp_path / "b")]) == 2
    assert "no column 'duplicate_of'" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_near_duplicates_flag_and_period_flags(tmp_path):
    args = ["--videos", str(VIDEOS_CSV), "--requests", str(REQUESTS_CSV), "--out", str(tmp_path)]
    # A bare --until date runs through the end of that day: 10-14 holds 45-53, not 54-56.
    assert sweep(*args, "--since", "2025-10-14", "--until", "2025-10-14", "--near-duplicates") == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {d["video_id"] for d in summary["duplicates"]} == EXPECTED_DUPLICATES - {55, 56}
    assert summary["until"] == "2025-10-14T23:59:59.999999+00:00"
    assert summary["near_duplicates"] == []  # 22/23 are from 10-10, outside the period
    assert sweep(*args, "--near-duplicates", "90") == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(n["earlier_id"], n["video_id"]) for n in summary["near_duplicates"]] == [(22, 23)]
    assert summary["duplicate_count"] == 11


def test_a_reader_that_goes_away_does_not_stop_the_sweep(tmp_path):
    """`audit sweep … | head`: stdout closed before the first line; the files are still written
    and the exit code is the sweep's own, not 3 for a BrokenPipeError."""
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "audit", "sweep", "--videos", str(VIDEOS_CSV), "--requests", str(REQUESTS_CSV),
         "--out", str(out), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    process.stdout.close()  # the reader is gone before anything was printed
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=120) == 0, stderr
    assert "internal error" not in stderr
    assert {p.name for p in out.iterdir()} >= {"summary.json", "duplicates.csv", "report.html"}


@pytest.mark.parametrize("env_pool", [None, "jemalloc"])
def test_the_cli_picks_arrows_allocator_unless_the_environment_does(env_pool):
    # A fresh process, as cron runs it: the allocator is the process's, chosen in `main`.
    probe = (
        "import pyarrow as pa; from audit.cli import main; before = pa.default_memory_pool().backend_name; "
        "main(['sql', '--dialect', 'duckdb']); print(before, pa.default_memory_pool().backend_name)"
    )
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if env_pool:
        env["ARROW_DEFAULT_MEMORY_POOL"] = env_pool
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    before, after = done.stdout.split()[-2:]
    assert after == (env_pool or "system")
    if env_pool is None:
        assert before != "system"  # the default pool it replaces (mimalloc or jemalloc)
