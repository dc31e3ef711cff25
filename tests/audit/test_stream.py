"""The streaming sweep (`audit.stream`) against the in-memory one it replaces for files:
`load_files` + `run_audit` + `write_data`, the reference, kept as it was. ``summary.json`` and
``duplicates.csv`` must be the same bytes, on the incident fixture and on synthetic histories
cut into several user shards."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

import audit.stream.partition as partition
from audit.cli import main
from audit.pipeline import run_audit
from audit.report import render_html, write_data
from audit.sources import load_files
from audit.sources.base import Period
from audit.stream import sweep_files
from audit.synthetic import synthetic_requests, synthetic_videos, to_iso_text
from tests.audit.conftest import AS_OF, REQUESTS_CSV, VIDEOS_CSV

SOURCE = "the files"
LEASE = timedelta(seconds=30)
SYNTHETIC_ROWS = 200_000
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def reference(videos: Path, requests: Path | None, out: Path, period: Period, as_of: datetime = AS_OF) -> Path:
    """What ``audit sweep --in-memory`` writes (and its page, as ``out / "page"``)."""
    loaded = load_files(videos, requests, period=period)
    result = run_audit(loaded.videos, loaded.requests, as_of=as_of, window=period.window, since=period.since,
                       until=period.until, cost_per_video=4.0, lease=LEASE)
    result.summary["notes"] = []
    write_data(result, out, source=SOURCE)
    (out / "page").write_text(render_html(result, source=SOURCE))
    return out


def streamed(videos: Path, requests: Path | None, out: Path, period: Period, *, shards: int, jobs: int = 1,
             as_of: datetime = AS_OF, **kwargs) -> Path:
    result, _ = sweep_files(videos, requests, out, period=period, as_of=as_of, cost_per_video=4.0, lease=LEASE,
                            source=SOURCE, shards=shards, jobs=jobs, **kwargs)
    (out / "page").write_text(render_html(result, source=SOURCE))
    return out


def same_page(a: Path, b: Path) -> bool:
    """The report pages alike but for plotly's random ids of its charts' elements."""
    return _UUID.sub("id", (a / "page").read_text()) == _UUID.sub("id", (b / "page").read_text())


def assert_same_files(a: Path, b: Path) -> None:
    for name in ("summary.json", "duplicates.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> dict[str, Path]:
    """A few hundred thousand rows, with a request log, as CSV and Parquet; some requests name
    another user than their video's (the log joins by video id, not by user)."""
    folder = tmp_path_factory.mktemp("history")
    videos = synthetic_videos(SYNTHETIC_ROWS, seed=3)
    requests = synthetic_requests(videos, seed=4)
    requests.loc[requests.index[::97], "tg_user_id"] += 1
    paths = {}
    for name, frame in (("videos", videos), ("requests", requests)):
        paths[f"{name}.csv"] = folder / f"{name}.csv"
        to_iso_text(frame).to_csv(paths[f"{name}.csv"], index=False)
        paths[f"{name}.parquet"] = folder / f"{name}.parquet"
        frame.to_parquet(paths[f"{name}.parquet"], index=False)
    return paths


@pytest.mark.parametrize("with_requests", [True, False])
@pytest.mark.parametrize("shards", [1, 3])
def test_the_fixture_gives_the_in_memory_sweeps_bytes(tmp_path, shards, with_requests):
    requests = REQUESTS_CSV if with_requests else None
    want = reference(VIDEOS_CSV, requests, tmp_path / "memory", Period())
    got = streamed(VIDEOS_CSV, requests, tmp_path / "stream", Period(), shards=shards)
    assert_same_files(got, want)
    assert "45" in (got / "duplicates.csv").read_text()
    assert same_page(got, want)


def test_a_period_keeps_its_look_back_and_generating_rows(tmp_path, history):
    period = Period(since=datetime(2025, 1, 20, tzinfo=UTC), until=datetime(2025, 2, 3, 12, tzinfo=UTC))
    as_of = datetime(2025, 2, 4, tzinfo=UTC)
    want = reference(history["videos.csv"], history["requests.csv"], tmp_path / "memory", period, as_of)
    got = streamed(history["videos.csv"], history["requests.csv"], tmp_path / "stream", period, shards=5, as_of=as_of)
    assert_same_files(got, want)


@pytest.mark.parametrize("form", ["csv", "parquet"])
def test_a_synthetic_history_in_shards_and_frames(tmp_path, history, monkeypatch, form):
    """Several shards, each file read in several frames: the merge puts every duplicate,
    stuck claim and policy count back where the in-memory sweep has it."""
    monkeypatch.setattr(partition, "FRAME_ROWS", 70_000)
    videos, requests = history[f"videos.{form}"], history[f"requests.{form}"]
    want = reference(videos, requests, tmp_path / "memory", Period())
    got = streamed(videos, requests, tmp_path / "stream", Period(), shards=4)
    assert_same_files(got, want)
    assert len((got / "duplicates.csv").read_text().splitlines()) > 10_000
    assert same_page(got, want)  # drawn from the merged frames: the newest rows, the figures' sums


def test_worker_processes_give_the_same_bytes(tmp_path, history):
    videos, requests = history["videos.parquet"], history["requests.parquet"]
    want = reference(videos, requests, tmp_path / "memory", Period())
    got = streamed(videos, requests, tmp_path / "stream", Period(), shards=3, jobs=2)
    assert_same_files(got, want)


def test_an_id_repeated_in_another_frame_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(partition, "FRAME_ROWS", 20)
    frame = pd.read_csv(VIDEOS_CSV, dtype=str)
    frame.loc[50, "id"] = frame.loc[3, "id"]  # far apart: in different frames
    path = tmp_path / "videos.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(Exception, match=rf"column 'id' is not unique \(id {frame.loc[3, 'id']} appears twice\)"):
        streamed(path, None, tmp_path / "out", Period(), shards=2)
    assert not (tmp_path / "out").exists()


def test_the_cli_streams_files_and_keeps_the_in_memory_sweep(tmp_path, capsys):
    common = ["sweep", "--as-of", AS_OF.isoformat(), "--no-progress", "--videos", str(VIDEOS_CSV),
              "--requests", str(REQUESTS_CSV)]
    assert main([*common, "--out", str(tmp_path / "stream")]) == 0
    assert main([*common, "--out", str(tmp_path / "memory"), "--in-memory"]) == 0
    assert_same_files(tmp_path / "stream", tmp_path / "memory")
    assert (tmp_path / "stream" / "report.html").stat().st_size > 10_000
    assert "11 duplicates" in capsys.readouterr().out


def test_jobs_must_be_a_positive_whole_number(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--videos", str(VIDEOS_CSV), "--out", str(tmp_path), "--jobs", "0"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_no_progress_bar_off_a_terminal(tmp_path):
    """Cron and CI: stderr is not a terminal, so nothing but errors goes there."""
    done = subprocess.run(
        [sys.executable, "-m", "audit", "sweep", "--videos", str(VIDEOS_CSV), "--requests", str(REQUESTS_CSV),
         "--out", str(tmp_path), "--as-of", AS_OF.isoformat()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_a_progress_bar_on_a_terminal(tmp_path):
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    streamed(VIDEOS_CSV, REQUESTS_CSV, tmp_path, Period(), shards=2, progress=True, console=console)
    drawn = screen.getvalue()
    for phase in ("reading videos", "reading requests", "sweeping user shards"):
        assert phase in drawn
    assert "\x1b[" in drawn  # drawn for a terminal


def test_without_progress_nothing_is_drawn(tmp_path):
    screen = io.StringIO()
    streamed(VIDEOS_CSV, None, tmp_path, Period(), shards=2, progress=False, console=Console(file=screen, force_terminal=True))
    assert screen.getvalue() == ""
