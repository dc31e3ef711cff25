"""Classification, policies, stuck claims and near-duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from audit.near import near_duplicates
from audit.frames import normalise_videos
from audit.pipeline import run_audit
from audit.stuck import stuck_claims
from tests.audit.conftest import AS_OF


def test_policy_comparison_on_the_fixtures(fixture_videos, fixture_requests):
    result = run_audit(fixture_videos, fixture_requests, as_of=AS_OF)
    assert list(result.policies["policy"]) == ["none", "check", "pending", "claim", "check-by-key", "pending-by-key"]
    table = result.policies.set_index("policy")
    # The bot matched the exact text: check stops only the two verbatim resends (48, 50);
    # pending also the races requested more than a second after the first (45, 55, 56),
    # not 46's double tap. The case/punctuation variants (47, 49, 51-53) pass both.
    assert table["duplicates_prevented"].to_dict() == {
        "none": 0, "check": 2, "pending": 5, "claim": 11, "check-by-key": 7, "pending-by-key": 10,
    }
    assert table["wasted_usd"].to_dict() == {
        "none": 44.0, "check": 36.0, "pending": 24.0, "claim": 0.0, "check-by-key": 16.0, "pending-by-key": 4.0,
    }
    assert table.loc["claim", "generations"] == 45
    dups = result.duplicates
    assert set(dups.loc[dups["prevented_by_check"], "video_id"]) == {48, 50}
    assert set(dups.loc[dups["prevented_by_pending"], "video_id"]) == {45, 48, 50, 55, 56}
    assert set(dups.loc[dups["prevented_by_check-by-key"], "video_id"]) == set(dups.loc[dups["class"] == "sequential", "video_id"])
    summary_rows = {row["policy"]: row for row in result.summary["policies"]}
    assert summary_rows["pending"] == {"policy": "pending", "duplicates_prevented": 5, "generations": 51, "wasted_usd": 24.0}


def test_the_incident_alone_matches_the_write_up(fixture_videos, fixture_requests):
    since = datetime(2025, 10, 15, tzinfo=UTC)
    result = run_audit(fixture_videos, fixture_requests, as_of=AS_OF, since=since)
    assert set(result.duplicates["video_id"]) == {55, 56}
    assert result.summary["by_class"] == {"sequential": 0, "race": 2}
    # "$12 for 3 videos" counts the first; the waste is the two after it, and the
    # write-up's fix "saved $8 on the 2 duplicate requests".
    assert result.summary["wasted_usd"] == 8.0
    assert result.policies.set_index("policy").loc["pending", "wasted_usd"] == 0.0


def test_sequential_when_the_original_was_saved_before_the_request():
    videos = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "tg_user_id": [9, 9, 9],
            "prompt": ["p", "p", "p"],
            "status": ["ready"] * 3,
            "created_at": ["2025-10-01T10:05:00+00:00", "2025-10-01T10:06:00+00:00", "2025-10-01T11:00:00+00:00"],
        }
    )
    requests = pd.DataFrame(
        {
            "request_id": ["a", "b", "c"],
            "received_at": ["2025-10-01T10:00:00+00:00", "2025-10-01T10:01:00+00:00", "2025-10-01T10:57:00+00:00"],
            "tg_user_id": [9, 9, 9],
            "prompt": ["p"] * 3,
            "video_id": [1, 2, 3],
        }
    )
    result = run_audit(videos, requests, as_of=AS_OF)
    assert dict(zip(result.duplicates["video_id"], result.duplicates["class"])) == {2: "race", 3: "sequential"}


def test_stuck_claims_are_generating_rows_past_the_lease():
    videos = normalise_videos(
        pd.DataFrame(
            {
                "id": [1, 2, 3],
                "tg_user_id": [1, 2, 3],
                "prompt": ["a", "b", "c"],
                "status": ["generating", "generating", "ready"],
                "created_at": ["2025-10-15T23:00:00+00:00"] * 3,
                "updated_at": ["2025-10-15T23:59:00+00:00", "2025-10-15T23:59:45+00:00", "2025-10-15T23:00:00+00:00"],
            }
        )
    )
    stuck = stuck_claims(videos, as_of=AS_OF, lease=timedelta(seconds=30))
    assert list(stuck["id"]) == [1]
    assert stuck.loc[0, "age_seconds"] == 60.0


def test_near_duplicates_are_listed_not_counted(fixture_videos, fixture_requests):
    result = run_audit(fixture_videos, fixture_requests, as_of=AS_OF, near_duplicates=True, similarity_threshold=90)
    pairs = set(zip(result.near_duplicates["earlier_id"], result.near_duplicates["video_id"]))
    assert pairs == {(22, 23)}
    assert 23 not in set(result.duplicates["video_id"])
    plain = run_audit(fixture_videos, fixture_requests, as_of=AS_OF)
    assert plain.near_duplicates is None and plain.summary["duplicate_count"] == 11


def test_near_duplicates_respect_window_and_user():
    videos = normalise_videos(
        pd.DataFrame(
            {
                "id": [1, 2, 3],
                "tg_user_id": [1, 1, 2],
                "prompt": ["A red car in the desert at noon", "A red car in the desert at dusk", "A red car in the desert at noon!"],
                "status": ["ready"] * 3,
                "created_at": ["2025-10-01T00:00:00+00:00", "2025-10-02T00:00:01+00:00", "2025-10-01T00:01:00+00:00"],
            }
        )
    )
    assert near_duplicates(videos, threshold=80).empty
    assert len(near_duplicates(videos, threshold=80, window=timedelta(days=2))) == 1
