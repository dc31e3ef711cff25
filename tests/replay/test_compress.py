"""Skipping idle time: gaps shortened, bursts exact, order kept, and every window decision kept."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.replay import read_csv
from audit.replay.compress import compress_gaps, replay_clock
from audit.replay.schedule import build_schedule
from tests.replay.conftest import FIXTURES

DAY = 86_400.0


def test_long_gaps_are_shortened_to_max_gap_and_bursts_kept_exactly():
    times = [0.0, 0.2, 0.3, 100.0, 100.4, 5000.0]
    assert compress_gaps(times, 1.0).tolist() == pytest.approx([0.0, 0.2, 0.3, 1.3, 1.7, 2.7])


def test_unsorted_times_and_a_bad_max_gap_are_refused():
    with pytest.raises(ValueError, match="sorted"):
        compress_gaps([2.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="positive"):
        compress_gaps([1.0, 2.0], 0.0)


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=40), st.floats(0.01, 100))
def test_compression_keeps_order_and_never_lengthens(raw, max_gap):
    times = np.sort(np.asarray(raw))
    out = compress_gaps(times, max_gap)
    gaps, new = np.diff(times), np.diff(out)
    assert np.all(new >= 0)
    assert np.allclose(new, np.minimum(gaps, max_gap))
    # A burst (gaps at most max_gap) keeps its spacing; a longer gap lasts max_gap.
    assert np.allclose(new[gaps <= max_gap], gaps[gaps <= max_gap])


def _window_decisions(received, finished, groups, window):
    """For each equivalent pair (earlier event, later request): within the window or not."""
    out = {}
    for i, j in itertools.combinations(range(len(received)), 2):
        if groups[i] == groups[j]:
            out[(i, j, "request")] = received[j] - received[i] <= window
            if finished[i] <= received[j]:
                out[(i, j, "finish")] = received[j] - finished[i] <= window
    return out


def _replayed(received, finished, groups, window, max_gap, **options):
    clock = replay_clock(received, finished, groups, window=window, max_gap=max_gap, **options)
    return clock, clock.at(np.asarray(received)), clock.at(np.asarray(finished))


def test_a_pair_just_outside_the_window_stays_outside():
    # The fixture's "Neon city skyline": the same prompt 24 h 7 min apart, a day of other
    # requests between. Shortening that day alone would put the pair inside a 24-minute window.
    received = [0.0, 600.0, 3000.0, 20_000.0, 20_100.0, DAY + 420.0]
    finished = [r + 240.0 for r in received]
    groups = ["neon", "a", "b", "c", "c", "neon"]
    clock, start, end = _replayed(received, finished, groups, DAY, 1.0)
    assert start[-1] - start[0] > clock.window_seconds
    assert start[4] - start[3] <= clock.window_seconds  # "c" twice in 100 s: within
    assert start[-1] < 20  # instead of a day


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 3 * DAY), st.floats(10, 600), st.integers(0, 3)), min_size=1, max_size=25),
    st.floats(0.1, 5.0),
)
def test_every_race_and_window_decision_is_kept(rows, max_gap):
    rows.sort(key=lambda row: row[0])
    received = [r for r, _, _ in rows]
    finished = [r + d for r, d, _ in rows]
    groups = [g for _, _, g in rows]
    window = DAY / 60
    scaled = ([r / 60 for r in received], [f / 60 for f in finished])
    clock, start, end = _replayed(*scaled, groups, window, max_gap)
    assert np.all(np.diff(start) >= 0)
    assert np.all(end > start - 1e-12) and np.all(end - start <= np.asarray(scaled[1]) - scaled[0] + 1e-9)
    # Every request and every save keeps its place relative to every other.
    history = np.concatenate([scaled[0], scaled[1]])
    replayed = np.concatenate([start, end])
    for a, b in itertools.combinations(range(len(history)), 2):
        if history[a] < history[b]:
            assert replayed[a] <= replayed[b] + 1e-9
    # Within the window in history <=> within the replayed service's window.
    assert _window_decisions(*scaled, groups, window) == _window_decisions(start, end, groups, clock.window_seconds)


def test_a_fixed_window_is_kept_and_still_decides_as_history():
    received = [0.0, 600.0, DAY + 420.0]
    finished = [r + 240.0 for r in received]
    groups = ["neon", "x", "neon"]
    scaled = [r / 60 for r in received], [f / 60 for f in finished]
    clock, start, end = _replayed(*scaled, groups, DAY / 60, 0.5, fixed_window=True)
    assert clock.window_seconds == DAY / 60
    assert start[2] - start[0] > DAY / 60
    assert _window_decisions(*scaled, groups, DAY / 60) == _window_decisions(start, end, groups, DAY / 60)


def test_fixture_week_schedule_fits_in_a_minute_and_keeps_its_bursts():
    requests = read_csv(FIXTURES / "requests.csv", kind="requests")
    videos = read_csv(FIXTURES / "videos.csv", kind="videos")
    full = build_schedule(requests, videos, speedup=60)
    short = build_schedule(requests, videos, speedup=60, max_gap=0.5)
    assert (full["offset_seconds"] + full["sim_seconds"]).max() > 9000  # 2.8 hours
    assert (short["offset_seconds"] + short["sim_seconds"]).max() < 60
    assert short["request_id"].tolist() == full["request_id"].tolist()
    assert short["duration_seconds"].tolist() == full["duration_seconds"].tolist()
    # The incident: 50 s and 264 s apart are idle gaps at 60x; its request 3 still arrives
    # 25 s (history) before the first save, as the `check` replay needs.
    incident = short.set_index("request_id").loc[["req-0056", "req-0057", "req-0058"]]
    first_save = incident["offset_seconds"].iloc[0] + incident["sim_seconds"].iloc[0]
    assert first_save - incident["offset_seconds"].iloc[2] == pytest.approx(25 / 60)
    # The double tap (req-0047/0048, the same second) stays one burst.
    fox = short.set_index("request_id").loc[["req-0047", "req-0048"], "offset_seconds"]
    assert fox.iloc[0] == fox.iloc[1]
