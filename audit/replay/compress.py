"""Skip the idle time of a long request log, keep every race it had: the replay's clock.

A week of history replayed at 60x still takes 2.8 hours, almost all of it waiting between
requests. `compress_gaps` is the plain idea: a gap between two events longer than ``max_gap``
(replay seconds) is shortened to ``max_gap``; events closer than that (a burst) keep their exact
spacing. The map from history time to replay time is strictly increasing, so the order of
everything (requests, and generations finishing) is kept.

Order is not all a policy sees. Two things decide whether a request is blocked:

- whether an earlier equivalent generation (same user and prompt key) had already finished
  when it arrived (the old ``check`` saw only saved rows; a failure releases the claim): the
  finish of every generation that has a later equivalent request is made an event of its own,
  so the gap between it and that request is kept too, or shortened only down to ``max_gap``;
- whether that earlier one was still within the window: shortening a day of idle time moves
  two requests 24 h 7 min apart (the fixture's "Neon city skyline") inside a 24-minute window.

`replay_clock` therefore also chooses the replayed window. Each gap may shrink from its true
length down to ``max_gap`` (never below, never growing past the truth); every equivalent pair
that history put within the window must stay within the replayed window, every pair outside
it outside, each by a margin of ``max_gap`` (or history's own margin, when smaller). These are
difference constraints between event times; `_least_times` finds the shortest replay meeting
them for one window, and the window is raised from the smallest the compressed history allows
until the constraints can be met. At the scaled window itself (``window / speedup``) the true
spacing always meets them, so the search ends there at worst: an uncompressed replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Clock", "compress_gaps", "replay_clock"]

# The window search multiplies by this per try: about 25 tries from max_gap to a day at 60x.
WINDOW_STEP = 1.25


def compress_gaps(times: Sequence[float], max_gap: float) -> np.ndarray:
    """``times`` (sorted, seconds) with every gap longer than ``max_gap`` shortened to it."""
    values = np.asarray(times, dtype=float)
    if values.size == 0:
        return values
    if np.any(np.diff(values) < 0):
        raise ValueError("times must be sorted")
    if not max_gap > 0:
        raise ValueError("max_gap must be positive")
    gaps = np.minimum(np.diff(values), max_gap)
    return values[0] + np.concatenate([[0.0], np.cumsum(gaps)])


@dataclass(frozen=True)
class Clock:
    """History seconds → replay seconds (``at``), and the window the replayed service must run."""

    knots: np.ndarray  # history seconds of the events, sorted, distinct
    replay: np.ndarray  # their replay seconds
    tail: float  # after the last event: at most this long (a generation finishing)
    window_seconds: float

    def at(self, history_seconds: np.ndarray) -> np.ndarray:
        t = np.asarray(history_seconds, dtype=float)
        inside = np.interp(t, self.knots, self.replay)
        beyond = self.replay[-1] + np.minimum(t - self.knots[-1], self.tail)
        return np.where(t > self.knots[-1], beyond, inside)


def replay_clock(
    received: Sequence[float],
    finished: Sequence[float],
    groups: Sequence[object],
    *,
    window: float,
    max_gap: float | None,
    fixed_window: bool = False,
) -> Clock:
    """The replay clock for requests ``received`` (history seconds, sorted) whose generations
    end at ``finished``, ``groups`` naming equivalent requests; ``window`` and the result's
    times in replay seconds (already divided by the speedup). ``max_gap=None`` keeps the true
    spacing. ``fixed_window``: the window cannot be chosen (a service given by URL runs its own),
    so only compress where the scaled window stays faithful."""
    received = np.asarray(received, dtype=float)
    finished = np.asarray(finished, dtype=float)
    if np.any(np.diff(received) < 0):
        raise ValueError("requests must be in time order")
    points, pairs = _events(received, finished, list(groups), window)
    knots = np.unique(points)
    true = np.diff(knots)
    if max_gap is None:
        return Clock(knots, knots - knots[0], float("inf"), window)
    if not max_gap > 0:
        raise ValueError("max_gap must be positive")
    low = np.minimum(true, max_gap)
    index = {value: i for i, value in enumerate(knots)}
    # (earlier knot, later knot, margin, within?): how far each pair must stay from the window.
    constraints = [(index[p], index[b], min(max_gap, abs(d - window)), d <= window) for p, b, d in pairs]

    replayed = None if fixed_window else _smallest_window(low, true, constraints, max_gap, window)
    if replayed is None:
        times = _least_times(low, true, constraints, window)
        replayed = (times, window)
    times, chosen = replayed
    if times is None:  # only with a fixed window: the true spacing meets it by construction
        times = np.concatenate([[0.0], np.cumsum(true)])
    return Clock(knots, times, max_gap, chosen)


def _events(
    received: np.ndarray, finished: np.ndarray, groups: list[object], window: float
) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """Every request is an event; so is the finish of a generation with a later equivalent
    request. Per request, the pairs that decide its fate: the earliest equivalent event still
    within the window before it, and the latest one already outside."""
    by_group: dict[object, list[int]] = {}
    for i, group in enumerate(groups):
        by_group.setdefault(group, []).append(i)
    points = list(received)
    pairs: list[tuple[float, float, float]] = []
    for members in by_group.values():
        for n, b in enumerate(members[1:], start=1):
            earlier = [received[a] for a in members[:n]]
            earlier += [finished[a] for a in members[:n] if finished[a] <= received[b]]
            distances = [(received[b] - p, p) for p in earlier]
            within = [dp for dp in distances if dp[0] <= window]
            outside = [dp for dp in distances if dp[0] > window]
            if within:
                d, p = max(within)
                pairs.append((p, received[b], d))
            if outside:
                d, p = min(outside)
                pairs.append((p, received[b], d))
        points += [finished[a] for a in members[:-1]]
    return np.asarray(points, dtype=float), pairs


def _smallest_window(
    low: np.ndarray, true: np.ndarray, constraints: list, max_gap: float, window: float
) -> tuple[np.ndarray, float] | None:
    compressed = np.concatenate([[0.0], np.cumsum(low)])
    spans = [compressed[b] - compressed[p] + m for p, b, m, within in constraints if within]
    candidate = max([max_gap, *spans])
    while candidate < window:
        times = _least_times(low, true, constraints, candidate)
        if times is not None:
            return times, candidate
        candidate *= WINDOW_STEP
    return None


def _least_times(low: np.ndarray, true: np.ndarray, constraints: list, window: float) -> np.ndarray | None:
    """The earliest event times (the first at 0) with each gap between ``low`` and ``true``,
    within pairs at most ``window - margin`` apart and outside pairs at least ``window + margin``;
    None when no times meet them. Raised from below pass by pass, so a first time above 0 (the
    least solution always has it at 0) or no fixpoint proves there is none."""
    n = len(low) + 1
    times = np.concatenate([[0.0], np.cumsum(low)])
    outside_into: dict[int, list[tuple[int, float]]] = {}
    within_into: dict[int, list[tuple[int, float]]] = {}
    for p, b, margin, within in constraints:
        if within:
            within_into.setdefault(b, []).append((p, window - margin))
        else:
            outside_into.setdefault(b, []).append((p, window + margin))
    for _ in range(n + 2):
        before = times.copy()
        for j in range(1, n):  # forward: gaps at least `low`, outside pairs far enough
            need = max([times[j - 1] + low[j - 1], *(times[p] + d for p, d in outside_into.get(j, ()))])
            times[j] = max(times[j], need)
        for j in range(n - 1, 0, -1):  # backward: gaps at most `true`, within pairs close enough
            times[j - 1] = max(times[j - 1], times[j] - true[j - 1])
            for p, d in within_into.get(j, ()):
                times[p] = max(times[p], times[j] - d)
        if times[0] > 1e-9:
            return None
        if np.array_equal(before, times):
            return times
    return None
