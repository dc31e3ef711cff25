"""The tuning table (`audit.tuning.tune`) over a 1 M-row synthetic history, against the
sweep's detection (`audit.detect.mark_duplicates`) on the same frame, in one run.

    .venv/bin/python bench/tune_1m.py [--rows 1000000] [--repeat 3]

Both run on already-normalised frames (loading is the sweep's cost, measured in
`bench/sweep_1m.py`). Prints the medians of ``--repeat`` runs and their ratio: the table is 3
keys × 8 windows, so "vectorised" means far less than 24 detection passes. The near-duplicate
grouping (the one per-user loop) is timed on its own too. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import time

from audit.detect import mark_duplicates
from audit.frames import normalise_requests, normalise_videos
from audit.synthetic import synthetic_requests, synthetic_videos
from audit.tuning import DEFAULT_WINDOWS, near_groups, tune


def timed(action, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    videos = normalise_videos(synthetic_videos(args.rows, seed=0))
    requests = normalise_requests(synthetic_requests(videos, seed=0))
    detect = timed(lambda: mark_duplicates(videos), args.repeat)
    near = timed(lambda: near_groups(videos), args.repeat)
    table = timed(lambda: tune(videos, requests), args.repeat)
    print(f"{args.rows:,} rows, {len(DEFAULT_WINDOWS)} windows x 3 keys, medians of {args.repeat}:")
    print(f"  mark_duplicates (one window, one key): {detect:6.2f} s")
    print(f"  near_groups (the per-user loop):       {near:6.2f} s")
    print(f"  tune (the whole table):                {table:6.2f} s  = {table / detect:.1f}x one detection pass")


if __name__ == "__main__":
    main()
