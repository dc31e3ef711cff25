"""The sweep of a videos file (CSV or Parquet) in bounded memory: 100 M rows on one machine.

The rule, and everything the sweep derives from it (classes, race windows, the policies'
verdicts, stuck claims), is per user: nothing links two users' videos. So the sweep runs
user shard by user shard (``hash(tg_user_id) % shards``), each shard an ordinary in-memory
`audit.run_audit`, and merges what they found (`audit.stream.merge`). Three passes:

1. **partition** (`audit.stream.partition`): the files are read once, a frame at a time,
   normalised like the in-memory load, and spilled to Arrow files by shard in a temporary
   directory (``TMPDIR``); the request log is joined to its videos by id in buckets;
2. **shards** (`audit.stream.shard`): each shard swept by `run_audit`, ``jobs`` at a time in
   worker processes, its duplicates written out as the report's text;
3. **merge**: ``summary.json`` and ``duplicates.csv``, byte for byte the in-memory sweep's
   (`audit.report.write_data`), and a result for the page.

Memory is the frame being read plus ``jobs`` shards of about `SHARD_ROWS` rows; disk is
about the size of the input. `load_files` + `run_audit` (the in-memory sweep) stay as they
are: the notebooks use them, ``--near-duplicates`` (which compares prompts across the whole
period) and the database and Supabase sources go through them, and the tests hold this
sweep's files to theirs.

Differences, all in error cases: a file is checked a frame at a time, so of two bad values
in different frames the first one met is reported (the in-memory load reports the first
column it checks); of several repeated ids, the one named may differ. Columns beyond the
canonical ones are not carried (no output reads them).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from audit.classify import DEFAULT_GENERATION_RANGE
from audit.pipeline import AuditResult
from audit.sources.base import Period, progress_bar
from audit.stream.merge import merged_result, write_merged
from audit.stream.partition import (
    BucketTask, estimate_rows, first_repeat, frames, join_bucket, spill_requests, spill_videos,
)
from audit.stream.shard import ShardJob, ShardOutcome, sweep_shard
from audit.stream.tables import Spill

__all__ = ["SHARD_ROWS", "sweep_files", "default_jobs"]

# Rows per shard: a shard's run_audit peaks near 850 bytes a row, so two jobs at once stay
# near 1 GB together, with the parent's frame beside them.
SHARD_ROWS = 500_000


def default_jobs() -> int:
    """Worker processes: the machine's cores, at most 2 (memory grows with each)."""
    return max(1, min(2, os.cpu_count() or 1))


class _Runner:
    """Tasks in worker processes (``jobs`` > 1) or in this one, results in order, with at most
    twice ``jobs`` tasks in flight: a task holds a frame of the input, so the reader may not
    run far ahead of the workers."""

    def __init__(self, jobs: int, initializer: Callable[[], None] | None) -> None:
        self.pool = None
        if jobs > 1:
            # spawn, not fork: this process runs Arrow's thread pool, which a fork would copy mid-use.
            context = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=initializer)
        elif initializer is not None:
            initializer()
        self.ahead = 2 * jobs

    def map(self, function: Callable, tasks: Iterable) -> Iterator:
        if self.pool is None:
            yield from map(function, tasks)
            return
        pending: deque[Future] = deque()
        for task in tasks:
            pending.append(self.pool.submit(function, task))
            if len(pending) >= self.ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def sweep_files(
    videos_path: Path,
    requests_path: Path | None,
    out: Path,
    *,
    period: Period,
    as_of: datetime,
    cost_per_video: float,
    lease: timedelta,
    source: str,
    jobs: int | None = None,
    shards: int | None = None,
    progress: bool = False,
    console=None,
    initializer: Callable[[], None] | None = None,
    notes: list[str] | None = None,
) -> tuple[AuditResult, dict[str, Path]]:
    """Sweep the files into ``out`` (``summary.json``, ``duplicates.csv``); returns the result
    the page is drawn from (see `merged_result`) and the paths written. ``initializer`` runs
    first in each worker process (the CLI's choice of allocators). A file of one shard is
    swept in this process: worker processes would cost more than they save."""
    videos_path = Path(videos_path)
    estimate = estimate_rows(videos_path)
    shards = shards or max(1, math.ceil(estimate / SHARD_ROWS))
    jobs = 1 if shards == 1 else (jobs or default_jobs())
    job_args = dict(as_of=as_of, window=period.window, cost_per_video=cost_per_video, lease=lease,
                    since=period.since, until=period.until)
    with_requests = requests_path is not None
    runner = _Runner(jobs, initializer)
    try:
        with tempfile.TemporaryDirectory(prefix="audit-sweep-") as tmp:
            folder = Path(tmp)
            with progress_bar("reading videos", estimate or None, enabled=progress, console=console) as advance:
                tasks = frames(videos_path, folder, what="videos", shards=shards, period=period)
                for rows, _ in runner.map(spill_videos, tasks):
                    advance(rows)
            if with_requests:
                with progress_bar("reading requests", None, enabled=progress, console=console) as advance:
                    tasks = frames(Path(requests_path), folder, what="requests", shards=shards, period=None)
                    for rows, _ in runner.map(spill_requests, tasks):
                        advance(rows)
            buckets = [BucketTask(folder=folder, bucket=b, with_requests=with_requests) for b in range(shards)]
            first_repeat(list(runner.map(join_bucket, buckets)), str(videos_path))
            template = ShardJob(folder=folder, shard=0, with_requests=with_requests, **job_args)
            outcomes: list[ShardOutcome] = []
            with progress_bar("sweeping user shards", shards, enabled=progress, console=console) as advance:
                for outcome in runner.map(sweep_shard, (replace(template, shard=s) for s in range(shards))):
                    outcomes.append(outcome)
                    advance(1)
            result = merged_result(outcomes, job_args=job_args, has_requests=with_requests,
                                   generation_range=DEFAULT_GENERATION_RANGE)
            result.summary["notes"] = list(notes or [])
            paths = write_merged(result, Spill(folder), list(range(shards)), Path(out), source=source)
    finally:
        runner.close()
    return result, paths
