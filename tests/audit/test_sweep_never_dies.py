"""The weekly sweep never dies on its report: hundreds of race chains, thousands of duplicates,
none at all; and an unexpected failure is exit 3 with one line, with the findings on disk."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from audit.cli import main

AS_OF = "2025-10-20T00:00:00+00:00"
T0 = datetime(2025, 10, 13, tzinfo=UTC)


def _history(tmp_path, *, race_chains: int = 0, sequential: int = 0, singles: int = 0):
    """CSV files of ``race_chains`` chains (original + a duplicate requested 3 min before the
    original was saved), ``sequential`` duplicates requested an hour after their original's
    save, and ``singles`` videos with no duplicate."""
    videos, requests = [], []

    def add(user: int, prompt: str, requested: datetime, saved: datetime) -> None:
        vid = len(videos) + 1
        videos.append({"id": vid, "tg_user_id": user, "prompt": prompt, "status": "ready",
                       "created_at": saved.isoformat(), "updated_at": saved.isoformat()})
        requests.append({"request_id": f"r{vid}", "received_at": requested.isoformat(), "tg_user_id": user,
                         "prompt": prompt, "video_id": vid})

    for i in range(race_chains):
        start = T0 + timedelta(minutes=10 * i)
        add(1000 + i, "race prompt", start, start + timedelta(minutes=4))
        add(1000 + i, "Race prompt!", start + timedelta(minutes=1), start + timedelta(minutes=5))
    for i in range(sequential):
        start = T0 + timedelta(minutes=i)
        add(100_000 + i, "seq prompt", start, start + timedelta(minutes=3))
        add(100_000 + i, "seq prompt", start + timedelta(hours=1), start + timedelta(hours=1, minutes=3))
    for i in range(singles):
        start = T0 + timedelta(minutes=i)
        add(500_000 + i, f"single {i}", start, start + timedelta(minutes=3))
    pd.DataFrame(videos).to_csv(tmp_path / "videos.csv", index=False)
    pd.DataFrame(requests).to_csv(tmp_path / "requests.csv", index=False)
    return ["--videos", str(tmp_path / "videos.csv"), "--requests", str(tmp_path / "requests.csv")]


def _sweep(args, out) -> int:
    return main(["sweep", "--as-of", AS_OF, "--no-progress", *args, "--out", str(out)])


def test_hundreds_of_race_chains(tmp_path, capsys):
    out = tmp_path / "out"
    assert _sweep(_history(tmp_path, race_chains=300), out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["by_class"] == {"sequential": 0, "race": 300}
    page = (out / "report.html").read_text()
    assert "the 10 latest race chain(s)" in page
    assert "290 more race chain(s) not shown" in page
    # The gap in words, for the latest chain (videos 599 and 600: 600 asked 3 min before 599 was saved).
    assert "600 requested 3 min before 599 was saved" in page
    assert "audit: internal error" not in capsys.readouterr().err


def test_thousands_of_duplicates(tmp_path):
    out = tmp_path / "out"
    assert _sweep(_history(tmp_path, sequential=3000, race_chains=40), out) == 0
    table = pd.read_csv(out / "duplicates.csv")
    assert len(table) == 3040 and (table["class"] == "sequential").sum() == 3000
    page = (out / "report.html").read_text()
    assert "The newest 500 of 3,040" in page
    assert "$12,160</b> wasted on <b>3,040</b>" in page


def test_no_duplicates(tmp_path):
    out = tmp_path / "out"
    assert _sweep(_history(tmp_path, singles=50), out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["duplicate_count"] == 0 and summary["duplicates"] == []
    assert pd.read_csv(out / "duplicates.csv").empty
    page = (out / "report.html").read_text()
    assert "Race windows: none" in page and "<h2>Duplicates</h2>\n<p>None.</p>" in page


def test_a_failure_while_rendering_exits_3_after_writing_the_findings(tmp_path, capsys, monkeypatch):
    # The one fault injected: rendering the page raises, as plotly did at 35 race chains.
    import audit.report_page

    def refuse(*args, **kwargs):
        raise ValueError("Vertical spacing cannot be greater than (1 / (rows - 1)) = 0.025641.\nThe resulting plot…")

    monkeypatch.setattr(audit.report_page, "timeline_figure", refuse)
    out = tmp_path / "out"
    assert _sweep(_history(tmp_path, race_chains=3), out) == 3
    captured = capsys.readouterr()
    assert captured.err.startswith("audit: internal error: report.html not written (ValueError: Vertical spacing")
    assert captured.err.count("\n") == 1 and captured.err.endswith("duplicates.csv were written\n")
    assert "Scanned 6 videos: 3 duplicates" in captured.out  # the numbers still reach the cron mail
    assert json.loads((out / "summary.json").read_text())["duplicate_count"] == 3
    assert len(pd.read_csv(out / "duplicates.csv")) == 3
    assert not (out / "report.html").exists()


@pytest.mark.parametrize("flag", [[], ["--fail-on-duplicates"]])
def test_an_unexpected_error_is_exit_3_never_1(tmp_path, capsys, monkeypatch, flag):
    import audit.cli
    import audit.stream.shard

    def broken(*args, **kwargs):
        raise KeyError("class")

    monkeypatch.setattr(audit.cli, "run_audit", broken)  # the in-memory sweep's
    monkeypatch.setattr(audit.stream.shard, "run_audit", broken)  # the streaming sweep's, per shard
    assert _sweep([*_history(tmp_path, race_chains=1), *flag], tmp_path / "out") == 3
    err = capsys.readouterr().err
    assert err == "audit: internal error: KeyError: 'class'\n"
    assert not (tmp_path / "out").exists()
