"""The joins inside `run_audit` (`audit.classify`, `audit.policies`): positions checked where
the frames are row for row (the pipeline's case), a lookup otherwise. Both must give what a
join by id gives, so the same inputs in another order give the same answers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.classify import classify_duplicates, race_windows, request_times
from audit.detect import duplicate_pairs, mark_duplicates
from audit.frames import normalise_requests, normalise_videos
from audit.policies import prevented_by
from audit.synthetic import synthetic_requests, synthetic_videos
from audit.visible import _by_group_then_time, positions


def _parts(rows: int = 3000):
    videos = synthetic_videos(rows, seed=11)
    marked = mark_duplicates(normalise_videos(videos))
    requested = request_times(marked, normalise_requests(synthetic_requests(videos, seed=12)))
    return marked, requested, duplicate_pairs(marked)


def test_positions_take_a_right_guess_and_look_up_otherwise():
    ids = np.array([30, 10, 20, 40])
    assert positions(ids, np.array([10, 40]), guess=np.array([1, 3])).tolist() == [1, 3]
    assert positions(ids, np.array([40, 10]), guess=np.array([1, 3])).tolist() == [3, 1]  # a wrong guess
    assert positions(ids, np.array([20, 99])).tolist() == [2, -1]


def test_requests_in_another_order_classify_alike():
    marked, requested, pairs = _parts()
    shuffled = requested.sample(frac=1, random_state=3).reset_index(drop=True)
    assert len(pairs) > 50
    expected = classify_duplicates(pairs, marked, requested)
    pd.testing.assert_frame_equal(classify_duplicates(pairs, marked, shuffled), expected)
    assert set(expected["class"]) == {"sequential", "race"}


def test_duplicates_in_another_order_get_the_same_verdicts_and_windows():
    marked, requested, pairs = _parts()
    classified = classify_duplicates(pairs, marked, requested)
    reordered = classified.iloc[::-1]
    shuffled = requested.sample(frac=1, random_state=5).reset_index(drop=True)
    expected = prevented_by(classified, marked, requested)
    got = prevented_by(reordered, marked, shuffled)
    pd.testing.assert_frame_equal(got.iloc[::-1], expected)
    assert expected["check"].any() and not expected["check"].all()
    expected_windows = race_windows(marked, classified, requested)
    pd.testing.assert_frame_equal(race_windows(marked, reordered, shuffled), expected_windows)


def test_a_duplicate_missing_from_the_request_times_is_left_unknown_as_in_a_left_join():
    marked, requested, pairs = _parts()
    missing = pairs["video_id"].iloc[0]
    classified = classify_duplicates(pairs, marked, requested.loc[requested["id"] != missing])
    assert classified.loc[classified["video_id"] == missing, "requested_at"].isna().all()
    assert classified["requested_at"].notna().sum() == len(pairs) - 1


def test_rows_sort_by_group_then_time_as_a_lexsort_does():
    rng = np.random.default_rng(7)
    for groups in (3, 70_000):  # 16-bit group numbers sort by radix, more by int64
        group = rng.integers(0, groups, 200_000)
        for time in (np.sort(rng.integers(0, 50, len(group))), rng.integers(0, 50, len(group))):
            got = _by_group_then_time(group, time, groups)
            assert got.tolist() == np.lexsort((time, group)).tolist()


def test_a_chain_member_without_a_request_time_comes_last_in_its_chain():
    marked, requested, pairs = _parts()
    classified = classify_duplicates(pairs, marked, requested)
    missing = classified.loc[classified["original_id"].duplicated(keep=False), "video_id"].iloc[0]
    windows = race_windows(marked, classified, requested.loc[requested["id"] != missing])
    chain = windows.loc[windows["chain_id"] == windows.loc[windows["video_id"] == missing, "chain_id"].iloc[0]]
    assert len(chain) >= 3
    assert chain["video_id"].iloc[-1] == missing and chain["requested_at"].iloc[-1] is pd.NaT
    assert chain["requested_at"].iloc[:-1].is_monotonic_increasing
