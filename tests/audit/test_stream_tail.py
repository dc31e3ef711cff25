"""The streaming sweep's end with workers: a writer process writes ``summary.json`` and
``duplicates.csv`` while the sweep's own process draws the page (`audit.stream`'s
``meanwhile``). The files are the in-memory sweep's bytes; a page that fails leaves them
written; a write that fails is the error raised, whatever the page did."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

import audit.stream
from audit.sources.base import Period
from audit.stream import sweep_files
from tests.audit.conftest import AS_OF, REQUESTS_CSV, VIDEOS_CSV
from tests.audit.test_stream import LEASE, SOURCE, assert_same_files, reference
from tests.audit.test_sweep_never_dies import _history, _sweep


def _streamed(out, **kwargs):
    return sweep_files(VIDEOS_CSV, REQUESTS_CSV, out, period=Period(), as_of=AS_OF, cost_per_video=4.0, lease=LEASE,
                       source=SOURCE, shards=3, jobs=2, **kwargs)


def test_the_page_is_drawn_in_this_process_and_the_files_in_another(tmp_path):
    seen = []

    def meanwhile(result):
        seen.append((os.getpid(), result.summary["duplicate_count"]))

    result, paths = _streamed(tmp_path / "stream", meanwhile=meanwhile)
    assert seen == [(os.getpid(), result.summary["duplicate_count"])]
    assert result.summary["duplicate_count"] > 0
    assert set(paths) == {"summary", "duplicates"}
    assert_same_files(tmp_path / "stream", reference(VIDEOS_CSV, REQUESTS_CSV, tmp_path / "memory", Period()))


def test_a_page_that_fails_leaves_the_files_written(tmp_path):
    def meanwhile(result):
        raise RuntimeError("the page broke")

    with pytest.raises(RuntimeError, match="the page broke"):
        _streamed(tmp_path / "stream", meanwhile=meanwhile)
    assert_same_files(tmp_path / "stream", reference(VIDEOS_CSV, REQUESTS_CSV, tmp_path / "memory", Period()))


def test_a_failed_write_is_the_error_raised_even_when_the_page_fails_too(tmp_path):
    out = tmp_path / "stream"
    (out / "duplicates.csv").mkdir(parents=True)  # the writer process cannot open it

    def meanwhile(result):
        raise RuntimeError("the page broke")

    with pytest.raises(IsADirectoryError):
        _streamed(out, meanwhile=meanwhile)


def test_the_cli_reports_a_failed_page_after_the_writer_wrote_the_findings(tmp_path, capsys, monkeypatch):
    import audit.report_page

    def refuse(*args, **kwargs):
        raise ValueError("Vertical spacing cannot be greater than (1 / (rows - 1))")

    monkeypatch.setattr(audit.report_page, "timeline_figure", refuse)
    monkeypatch.setattr(audit.stream, "SHARD_ROWS", 2)  # several shards, so workers and a writer
    out = tmp_path / "out"
    assert _sweep([*_history(tmp_path, race_chains=3), "--jobs", "2"], out) == 3
    captured = capsys.readouterr()
    assert captured.err.startswith("audit: internal error: report.html not written (ValueError: Vertical spacing")
    assert captured.err.count("\n") == 1 and captured.err.endswith("duplicates.csv were written\n")
    assert json.loads((out / "summary.json").read_text())["duplicate_count"] == 3
    assert len(pd.read_csv(out / "duplicates.csv")) == 3
    assert not (out / "report.html").exists()


def test_the_cli_with_workers_writes_the_page_and_the_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(audit.stream, "SHARD_ROWS", 2)
    out = tmp_path / "out"
    assert _sweep([*_history(tmp_path, race_chains=3, sequential=4), "--jobs", "2"], out) == 0
    assert "report.html" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["duplicate_count"] == 7
    assert "<html" in (out / "report.html").read_text()
