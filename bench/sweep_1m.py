"""Time the sweep on a synthetic history of 1 M videos, against 100 k as a baseline.

    .venv/bin/python bench/sweep_1m.py [--rows 1000000] [--baseline 100000]

Prints, for each size: normalising (types + prompt keys), detection (`mark_duplicates`),
and the whole `run_audit` (detection, classification by estimate, policies, stuck claims),
and the 1 M / 100 k ratio (10 means linear). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from audit.detect import mark_duplicates
from audit.frames import normalise_videos
from audit.pipeline import run_audit
from audit.synthetic import synthetic_videos

AS_OF = datetime(2025, 3, 15, tzinfo=UTC)


def measure(rows: int) -> dict[str, float]:
    videos = synthetic_videos(rows, seed=1)
    start = time.perf_counter()
    frame = normalise_videos(videos)
    normalised = time.perf_counter()
    marked = mark_duplicates(frame)
    detected = time.perf_counter()
    result = run_audit(videos, as_of=AS_OF)
    finished = time.perf_counter()
    return {
        "normalise_s": normalised - start,
        "detect_s": detected - normalised,
        "run_audit_s": finished - detected,
        "duplicates": int(marked["is_duplicate"].sum()),
        "check": result.summary["duplicate_count"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=100_000)
    args = parser.parse_args()
    results = {n: measure(n) for n in (args.baseline, args.rows)}
    for n, r in results.items():
        print(
            f"{n:>9,} rows: normalise {r['normalise_s']:.2f} s, detect {r['detect_s']:.2f} s, "
            f"run_audit {r['run_audit_s']:.2f} s, {r['duplicates']:,} duplicates"
        )
    base, big = results[args.baseline], results[args.rows]
    print(
        f"ratio {args.rows // args.baseline}x rows: detect {big['detect_s'] / base['detect_s']:.1f}x, "
        f"run_audit {big['run_audit_s'] / base['run_audit_s']:.1f}x"
    )


if __name__ == "__main__":
    main()
