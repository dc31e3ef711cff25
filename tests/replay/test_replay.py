"""Replaying against the service: the issue's expectations on the incident and on a burst."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from audit.frames import AuditError
from audit.replay import POLICIES, replay
from audit.replay.schedule import burst_requests
from audit.replay.service import ServiceUnavailable, free_port

# The expectation for the incident's three requests.
INCIDENT_GENERATIONS = {"none": 3, "check": 3, "pending": 1, "claim": 1}
# Only `check` depends on the timescale: its third request must pass its check 25 s (in
# history) before the first save; at 60x that is 0.4 s, far above the send lag. The others
# decide at request time, so they replay at 600x to keep the suite fast.
INCIDENT_SPEEDUP = {"none": 600, "check": 60, "pending": 600, "claim": 600}
# Supabase over HTTP: tens of milliseconds per round trip. The burst needs it: without the
# gap, the pending policy's SELECT and INSERT would run back to back.
SUPABASE_LATENCY_MS = 50.0


@pytest.mark.parametrize("policy", POLICIES)
def test_incident_generations_per_policy(policy, incident_requests, videos):
    result = replay(incident_requests, videos, policy=policy, speedup=INCIDENT_SPEEDUP[policy])
    summary = result.summary
    expected = INCIDENT_GENERATIONS[policy]
    assert summary["generations_started"] == expected
    assert summary["generations_source"] == "service_stats"
    assert summary["accepted"] == expected
    assert summary["duplicates_blocked"] == 3 - expected
    assert summary["duplicates_generated"] == expected - 1
    assert summary["errors"] == 0
    assert summary["ready"] == expected
    assert result.requests["outcome"].tolist()[0] == "accepted"
    assert summary["send_lag_p50_ms"] <= summary["send_lag_p99_ms"]


def test_incident_windows_match_history_for_what_was_generated(incident_requests, videos):
    result = replay(incident_requests, videos, policy="claim", speedup=600)
    windows = result.windows()
    assert windows["history_video_id"].tolist() == [54, 55, 56]
    assert windows.loc[0, "saved_at"] == datetime(2025, 10, 15, 5, 37, tzinfo=UTC)
    assert windows.loc[1:, "saved_at"].isna().all()


def _burst(policy: str):
    requests, videos = burst_requests(10, tg_user_id=7, prompt="Smart wallets as digital assistants...",
                                      at=datetime(2025, 10, 15, 5, 32, 11, tzinfo=UTC))
    return replay(requests, videos, policy=policy, speedup=600, db_latency_ms=SUPABASE_LATENCY_MS).summary


def test_burst_passes_the_pending_fix_more_than_once():
    summary = _burst("pending")
    assert summary["generations_started"] > 1
    assert summary["duplicates_generated"] == summary["generations_started"] - 1


def test_burst_under_claim_generates_exactly_once():
    summary = _burst("claim")
    assert summary["generations_started"] == 1
    assert summary["duplicates_blocked"] == 9
    assert summary["duplicates_generated"] == 0


def test_replay_against_a_running_service(running_service, incident_requests, videos):
    result = replay(incident_requests, videos, policy="claim", speedup=600, url=running_service + "/")
    summary = result.summary
    assert summary["service"] == running_service
    assert summary["generations_source"] == "accepted_responses"
    assert summary["generations_started"] == 1
    assert summary["duplicates_blocked"] == 2
    assert result.requests["status_code"].tolist() == [202, 409, 409]
    # The service's own counters agree: one generation, finished.
    assert result.requests["replay_video_id"].nunique() == 1


def test_running_service_with_another_policy_is_refused(running_service, incident_requests):
    with pytest.raises(ServiceUnavailable, match="runs policy 'claim', not 'pending'"):
        replay(incident_requests, policy="pending", url=running_service)


def test_unreachable_url_is_reported(incident_requests):
    with pytest.raises(ServiceUnavailable, match="cannot reach"):
        replay(incident_requests, policy="claim", url=f"http://127.0.0.1:{free_port()}")


def test_db_latency_with_url_is_refused(incident_requests):
    # The latency belongs to the service; one given by URL was started with its own.
    with pytest.raises(AuditError, match="--db-latency-ms"):
        replay(incident_requests, policy="claim", url="http://127.0.0.1:1", db_latency_ms=50)


def test_skipping_idle_time_keeps_every_decision(videos):
    """Days of history replayed in seconds, still deciding as history: the fixture's "Neon
    city skyline" 24 h 7 min apart is generated twice (outside the window), "Robot chef" again
    3.5 min after its first generation failed (the failure comes first, as in history), and
    the incident's burst once."""
    from audit.replay import read_csv

    from .conftest import FIXTURES

    log = read_csv(FIXTURES / "requests.csv", kind="requests")
    picked = log[log["request_id"].isin(["req-0005", "req-0008", "req-0009", "req-0014",
                                          "req-0056", "req-0057", "req-0058"])]
    result = replay(picked, videos, policy="claim", speedup=60, max_gap=0.5)
    summary = result.summary
    assert summary["schedule_seconds"] < 15  # 6 days at 60x: 2.4 hours uncompressed
    assert summary["window_seconds"] < 24 * 60
    outcome = result.requests.set_index("request_id")["outcome"]
    assert outcome.to_dict() == {
        "req-0005": "accepted", "req-0008": "accepted", "req-0009": "accepted", "req-0014": "accepted",
        "req-0056": "accepted", "req-0057": "blocked", "req-0058": "blocked",
    }
    assert summary["duplicates_generated"] == 0
    # The race windows are history's, not the shortened replay's.
    assert result.windows().set_index("request_id").loc["req-0056", "saved_at"] == datetime(
        2025, 10, 15, 5, 37, tzinfo=UTC)
