"""`python -m audit replay`: outputs on success; exit 2, one line, nothing written on error."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from audit.replay import main
from audit.replay.service import free_port

from .conftest import FIXTURES


@pytest.fixture
def incident_csv(tmp_path: Path) -> Path:
    requests = pd.read_csv(FIXTURES / "requests.csv", dtype=str)
    path = tmp_path / "incident_requests.csv"
    requests[requests["video_id"].isin(["54", "55", "56"])].to_csv(path, index=False)
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1]


def test_replay_writes_summary_and_per_request_outcomes(tmp_path, incident_csv, capsys):
    out = tmp_path / "out"
    code = main(["--requests", str(incident_csv), "--videos", str(FIXTURES / "videos.csv"),
                 "--policy", "claim", "--speedup", "600", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("requests", "generations_started", "duplicates_blocked", "duplicates_generated", "policy",
                "send_lag_p50_ms", "send_lag_p99_ms"):
        assert key in summary
    assert (summary["policy"], summary["requests"], summary["generations_started"]) == ("claim", 3, 1)
    rows = pd.read_csv(out / "requests.csv")
    assert rows["request_id"].tolist() == ["req-0056", "req-0057", "req-0058"]
    assert rows["status_code"].tolist() == [202, 409, 409]
    assert rows["replay_video_id"].nunique() == 1
    assert rows["lag_ms"].notna().all()
    captured = capsys.readouterr()
    assert "1 generations started" in captured.out
    # Not a terminal: no bar, one line saying how long the replay takes.
    assert captured.err.splitlines() == ["replaying 3 requests over 0.8 s (idle gaps over 0.5 s skipped)"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--requests", "missing.csv"], "file not found"),
        (["--requests", "{incident}", "--videos", "missing.csv"], "file not found"),
        (["--requests", "{bad}"], "missing column(s) received_at"),
        (["--requests", "{incident}", "--url", "http://127.0.0.1:{port}"], "cannot reach"),
    ],
)
def test_errors_exit_2_with_one_line_and_write_nothing(tmp_path, incident_csv, capsys, args, message):
    bad = tmp_path / "bad.csv"
    bad.write_text("request_id,tg_user_id,prompt,video_id\nr1,1,p,\n")
    args = [a.format(incident=incident_csv, bad=bad, port=free_port()) for a in args]
    out = tmp_path / "out"
    code = main([*args, "--policy", "claim", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("audit: error: ") and message in err[0]
    assert not out.exists()


@pytest.mark.parametrize("args", [["--policy", "always"], ["--policy", "claim", "--speedup", "0"],
                                  ["--policy", "claim", "--max-gap", "0"], ["--policy", "claim", "--max-gap", "x"]])
def test_bad_arguments_exit_2(tmp_path, incident_csv, capsys, args):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["--requests", str(incident_csv), *args, "--out", str(out)])
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err
    assert not out.exists()


def test_replay_is_a_subcommand_of_python_m_audit(tmp_path, incident_csv, capsys):
    from audit.cli import main as audit_main

    out = tmp_path / "out"
    code = audit_main(["replay", "--requests", str(incident_csv), "--videos", str(FIXTURES / "videos.csv"),
                       "--policy", "none", "--speedup", "600", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["policy"], summary["generations_started"], summary["duplicates_generated"]) == ("none", 3, 2)
    assert "replay none: 3 requests, 3 generations started" in capsys.readouterr().out
