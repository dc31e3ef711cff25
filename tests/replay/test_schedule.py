"""The schedule: send times, historical durations and outcomes, scaled by the speedup."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from audit.replay.schedule import build_schedule, burst_requests


def test_incident_schedule_keeps_the_history(incident_requests, videos):
    schedule = build_schedule(incident_requests, videos, speedup=60)
    # Sent 0 s, 50 s and 264 s after the first; saved 289 s, 244 s and 205 s after asking.
    assert schedule["offset_seconds"].tolist() == pytest.approx([0, 50 / 60, 264 / 60])
    assert schedule["history_seconds"].tolist() == [289, 244, 205]
    assert schedule["sim_seconds"].tolist() == pytest.approx([289 / 60, 244 / 60, 205 / 60])
    assert schedule["duration_source"].eq("history").all()
    assert not schedule["sim_fail"].any()


def test_request_without_a_video_fails_with_a_drawn_duration(incident_requests, videos):
    requests = incident_requests.copy()
    requests.loc[1, "video_id"] = pd.NA
    schedule = build_schedule(requests, videos, speedup=10, duration_range=(120, 300), seed=7)
    assert schedule["sim_fail"].tolist() == [False, True, False]
    assert schedule["duration_source"].tolist() == ["history", "drawn", "history"]
    assert 12 <= schedule.loc[1, "sim_seconds"] <= 30


def test_without_videos_every_duration_is_drawn_in_range_and_seeded(incident_requests):
    first = build_schedule(incident_requests, speedup=1, duration_range=(120, 300), seed=3)
    again = build_schedule(incident_requests, speedup=1, duration_range=(120, 300), seed=3)
    other = build_schedule(incident_requests, speedup=1, duration_range=(120, 300), seed=4)
    assert first["duration_source"].eq("drawn").all()
    assert first["sim_seconds"].between(120, 300).all()
    assert first["sim_seconds"].tolist() == again["sim_seconds"].tolist()
    assert first["sim_seconds"].tolist() != other["sim_seconds"].tolist()


def test_failed_video_replays_as_a_failure(incident_requests, videos):
    failed = videos.copy()
    failed.loc[failed["id"] == 55, "status"] = "failed"
    schedule = build_schedule(incident_requests, failed)
    assert schedule["sim_fail"].tolist() == [False, True, False]


def test_bad_speedup_is_refused(incident_requests):
    with pytest.raises(ValueError, match="speedup"):
        build_schedule(incident_requests, speedup=0)


def test_burst_is_identical_requests_at_one_instant():
    requests, videos = burst_requests(5, tg_user_id=1, prompt="p", at=datetime(2025, 10, 15, tzinfo=UTC),
                                      generation_seconds=200)
    schedule = build_schedule(requests, videos, speedup=100)
    assert len(schedule) == 5
    assert schedule["offset_seconds"].eq(0).all()
    assert schedule["sim_seconds"].tolist() == pytest.approx([2.0] * 5)
    assert not schedule["sim_fail"].any()
    assert schedule["prompt_key"].nunique() == 1
