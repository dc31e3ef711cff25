"""Classification (sequential / race) and the policies' verdicts, against brute-force
references written from the definitions in `audit.classify` and `audit.policies`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.pipeline import run_audit
from tests.audit.conftest import AS_OF

T0 = datetime(2025, 10, 15, tzinfo=UTC)
GAP = timedelta(minutes=1)


def _history(rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    videos = pd.DataFrame(rows, columns=["id", "tg_user_id", "prompt", "status", "created_at"])
    logged = [r for r in rows if r.get("requested_at") is not None]
    requests = pd.DataFrame(
        {
            "request_id": [f"r{r['id']}" for r in logged],
            "received_at": [r["requested_at"] for r in logged],
            "tg_user_id": [r["tg_user_id"] for r in logged],
            "prompt": [r["prompt"] for r in logged],
            "video_id": [r["id"] for r in logged],
        },
        columns=["request_id", "received_at", "tg_user_id", "prompt", "video_id"],
    )
    return videos, requests


def _classes(rows: list[dict], **kwargs) -> dict[int, str]:
    videos, requests = _history(rows)
    result = run_audit(videos, requests, as_of=AS_OF, **kwargs)
    return dict(zip(result.duplicates["video_id"], result.duplicates["class"]))


def _video(id_: int, minutes_saved: float, minutes_requested: float | None, *, prompt="p", status="ready") -> dict:
    requested = None if minutes_requested is None else T0 + timedelta(minutes=minutes_requested)
    return {"id": id_, "tg_user_id": 1, "prompt": prompt, "status": status,
            "created_at": T0 + timedelta(minutes=minutes_saved), "requested_at": requested}


def test_a_request_logged_at_its_own_save_still_sees_the_earlier_save():
    # 2 was saved minutes after 1; its log line carries its save time (a bot that logged late).
    assert _classes([_video(1, 0, -3), _video(2, 10, 10)]) == {2: "sequential"}


def test_a_request_logged_after_its_own_save_by_clock_skew_is_clamped_not_trusted():
    assert _classes([_video(1, 0, -3), _video(2, 10, 12)]) == {2: "sequential"}


def test_a_save_at_the_very_instant_of_the_request_counts_as_seen():
    assert _classes([_video(1, 5, 2), _video(2, 9, 5)]) == {2: "sequential"}


def test_equal_saves_are_ordered_by_id_as_in_the_rule():
    # Both saved at minute 5, 3's request logged at that instant: 2 precedes it, 4 does not.
    rows = [_video(2, 5, 1), _video(3, 5, 5), _video(4, 5, 5)]
    assert _classes(rows) == {3: "sequential", 4: "sequential"}
    assert _classes([_video(3, 5, 1), _video(2, 5, 5)]) == {3: "race"}


def test_the_window_is_measured_from_the_request():
    # 2 duplicates 3, which was still in flight when 2 was requested; 1 was saved 61 min
    # before 2's request (and 70 min before its save, so it is not 2's evidence).
    window = timedelta(hours=1)
    rows = [_video(1, 0, -3), _video(3, 65, 58), _video(2, 70, 61)]
    assert _classes(rows, window=window) == {2: "race"}
    # Requested exactly one window after 1's save: a check at that request finds 1.
    rows[-1] = _video(2, 70, 60)
    assert _classes(rows, window=window) == {2: "sequential"}


def test_a_generating_original_counts_as_saved_a_failed_one_never():
    assert _classes([_video(1, 0, -3, status="generating"), _video(2, 10, 8)]) == {2: "sequential"}
    assert _classes([_video(1, 0, -3, status="failed"), _video(5, 1, -2), _video(2, 10, 0.5)]) == {2: "race"}


# --- brute force ---------------------------------------------------------------------------


def _request_time(row: dict) -> datetime:
    estimated = row["created_at"] - timedelta(seconds=210)  # the middle of the assumed 2-5 min
    logged = row["requested_at"] if row["requested_at"] is not None else estimated
    return min(logged, row["created_at"])


def _order(row: dict) -> tuple:
    return row["created_at"], row["id"]


def brute_force(rows: list[dict], duplicates: set[int], window: timedelta) -> dict[int, dict[str, bool]]:
    """Per duplicate: its class and each legacy policy's verdict, straight from the words."""
    from service.prompt_key import prompt_key

    out = {}
    for v in (r for r in rows if r["id"] in duplicates):
        at = _request_time(v)
        others = [w for w in rows if w["id"] != v["id"] and w["tg_user_id"] == v["tg_user_id"]]

        def saved_before(w: dict) -> bool:
            return _order(w) < _order(v) and w["created_at"] <= at and at - w["created_at"] <= window

        def pending_seen(w: dict) -> bool:
            visible = _request_time(w) + GAP
            return w["status"] != "failed" and visible <= at and at - visible <= window

        keyed = [w for w in others if prompt_key(w["prompt"]) == prompt_key(v["prompt"])]
        exact = [w for w in others if w["prompt"] == v["prompt"]]
        out[v["id"]] = {
            "sequential": any(saved_before(w) and w["status"] != "failed" for w in keyed),
            "check": any(saved_before(w) for w in exact),
            "check-by-key": any(saved_before(w) for w in keyed),
            "pending": any(pending_seen(w) for w in exact),
            "pending-by-key": any(pending_seen(w) for w in keyed),
        }
    return out


videos_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "tg_user_id": st.integers(1, 2),
            "prompt": st.sampled_from(["Cat video", "cat video", "Cat video!", "Dog video"]),
            "status": st.sampled_from(["ready", "ready", "failed", "generating"]),
            # Whole minutes on a small range: equal saves, equal requests, saves at the very
            # instant of another request and exact window edges are all common.
            "created_at": st.integers(0, 40).map(lambda m: T0 + timedelta(minutes=m)),
            # Request this many minutes before the save: negative is clock skew, None unlogged.
            "lead": st.one_of(st.none(), st.integers(-2, 8)),
        }
    ),
    max_size=30,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=videos_strategy, window_minutes=st.sampled_from([5, 10, 30]), ids=st.randoms(use_true_random=False))
def test_class_and_policies_agree_with_brute_force(rows, window_minutes, ids):
    numbers = list(range(1, len(rows) + 1))
    ids.shuffle(numbers)
    for row, number in zip(rows, numbers):
        row["id"] = number
        lead = row.pop("lead")
        row["requested_at"] = None if lead is None else row["created_at"] - timedelta(minutes=lead)
    window = timedelta(minutes=window_minutes)
    videos, requests = _history(rows)
    result = run_audit(videos, requests if len(requests) else None, as_of=AS_OF, window=window, pending_gap=GAP)
    dups = result.duplicates
    expected = brute_force(rows, set(dups["video_id"]), window)
    got = {
        int(d["video_id"]): {
            "sequential": d["class"] == "sequential",
            **{name: bool(d[f"prevented_by_{name}"]) for name in ("check", "check-by-key", "pending", "pending-by-key")},
        }
        for d in dups.to_dict("records")
    }
    assert got == expected
    assert dups["prevented_by_claim"].all() and not dups["prevented_by_none"].any()
