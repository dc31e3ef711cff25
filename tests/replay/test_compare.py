"""Side-by-side helpers of the notebooks: burst verdicts, replayed windows next to history."""

from __future__ import annotations

import pandas as pd

from audit.replay import ReplayResult
from audit.replay.compare import burst_verdict, windows_vs_history
from audit.replay.schedule import build_schedule


def test_burst_verdict_names_more_than_one_exactly_one_and_none():
    table = pd.DataFrame({"policy": ["none", "pending", "claim", "broken"], "requests": [10, 10, 10, 10],
                          "generations_started": [10, 3, 1, 0]})
    assert burst_verdict(table)["verdict"].tolist() == ["more than one", "more than one", "exactly one", "none"]


def _result(schedule: pd.DataFrame, outcomes: list[str], speedup: float) -> ReplayResult:
    frame = schedule.assign(outcome=outcomes)
    return ReplayResult(frame, {"speedup": speedup})


def test_windows_line_up_replay_with_history(incident_requests, videos):
    schedule = build_schedule(incident_requests, videos, speedup=60)
    results = {"check": _result(schedule, ["accepted"] * 3, 60),
               "claim": _result(schedule, ["accepted", "blocked", "blocked"], 60)}
    history = pd.DataFrame({"video_id": [54, 55, 56],
                            "saved_at": pd.to_datetime(["2025-10-15T05:37:00Z", "2025-10-15T05:37:05Z",
                                                        "2025-10-15T05:40:00Z"])})
    table = windows_vs_history(results, history)
    assert table["history_saved_at"].tolist() == ["05:37:00", "05:37:05", "05:40:00"]
    # A replayed generation lasts its historical duration, so it is saved when history saved it.
    assert table["check"].tolist() == table["history_saved_at"].tolist()
    assert table["claim"].tolist() == ["05:37:00", "blocked", "blocked"]
