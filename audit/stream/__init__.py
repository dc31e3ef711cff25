"""The sweep of a videos file (CSV or Parquet) in bounded memory: 100 M rows on one machine.

The rule, and everything the sweep derives from it (classes, race windows, the policies'
verdicts, stuck claims), is per user: nothing links two users' videos. So the sweep runs
user shard by user shard (``hash(tg_user_id) % shards``), each shard an ordinary in-memory
`audit.run_audit`, and merges what they found (`audit.stream.merge`). Three passes:

1. **partition** (`audit.stream.partition`): the files are read once, a frame at a time (a
   CSV's frames read by the workers themselves, the request log's right after the videos'),
   normalised to the in-memory load's values (in Arrow, `audit.stream.arrow_frames`, with
   `normalise_videos` wording anything Arrow's checks refuse), and spilled to Arrow files by
   shard in a temporary directory (``TMPDIR``); the request log is joined to its videos by id
   in buckets;
2. **shards** (`audit.stream.shard`): each shard swept by `run_audit`, ``jobs`` at a time in
   worker processes, its duplicates written out as the report's text;
3. **merge**: ``summary.json`` and ``duplicates.csv``, byte for byte the in-memory sweep's
   (`audit.report.write_data`), and a result for the page. With workers, one more process
   (started while the shards run, so its imports are done) writes the two files while this
   one draws the page (``meanwhile``): the end of a sweep is otherwise serial, one core idle
   (10 M rows: files 1.9 s, page 1.6 s).

Memory is the frame being read plus ``jobs`` shards of about `SHARD_ROWS` rows; disk is
about the size of the input. `load_files` + `run_audit` (the in-memory sweep) stay as they
are: the notebooks use them, ``--in-memory`` runs them, ``--near-duplicates`` (which compares
prompts across the whole period), Supabase and the PostgreSQL pushdown go through them, and
the tests hold this sweep's files to theirs. A database's chunked load streams through
`sweep_frames` too (`audit.stream.database`).

Differences, all in error cases: a file is checked a frame at a time, so of two bad values
in different frames the first one met is reported (the in-memory load reports the first
column it checks); of several repeated ids, the one named may differ; a CSV's line break inside
quotes is refused where a slice is cut (`audit.sources.files.csv_slices`). Columns beyond the
canonical ones are not carried (no output reads them).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from audit.classify import DEFAULT_GENERATION_RANGE
from audit.pipeline import AuditResult
from audit.sources.base import Period, SourceError, progress_bar
from audit.stream.merge import merged_result, write_merged
from audit.stream.partition import (
    BucketTask, estimate_rows, file_frames, first_repeat, frames, join_bucket, spill_frame, transient_folder,
)
from audit.stream.shard import ShardJob, ShardOutcome, sweep_shard
from audit.stream.tables import Spill

__all__ = ["SHARD_ROWS", "sweep_files", "sweep_frames", "default_jobs"]

# Rows per shard: a shard's run_audit peaks near 850 bytes a row, so two jobs at once stay
# near 1 GB together, with the parent's frame beside them.
SHARD_ROWS = 500_000


def default_jobs() -> int:
    """Worker processes: the machine's cores, at most 2 (memory grows with each)."""
    return max(1, min(2, os.cpu_count() or 1))


class _Runner:
    """Tasks in worker processes (``jobs`` > 1) or in this one, results in order, with at most
    ``jobs`` + 1 tasks in flight: each is a frame of the input on disk, so the reader may not
    run far ahead of the workers."""

    def __init__(self, jobs: int, initializer: Callable[[], None] | None, parent: Callable[[], None] | None) -> None:
        self.pool = None
        if jobs > 1:
            if parent is not None:
                parent()
            # spawn, not fork: this process runs Arrow's thread pool, which a fork would copy mid-use.
            context = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=initializer)
        elif initializer is not None:
            initializer()
        self.ahead = jobs + 1

    def map(self, function: Callable, tasks: Iterable) -> Iterator:
        if self.pool is None:
            yield from map(function, tasks)
            return
        pending: deque[Future] = deque()
        try:
            for task in tasks:
                pending.append(self.pool.submit(function, task))
                if len(pending) >= self.ahead:
                    yield pending.popleft().result()
        except Exception:
            # Making a task failed (the reader met a bad part of a file): the tasks before it
            # come first, and their error is the one to report, as if they had run one by one.
            while pending:
                pending.popleft().result()
            raise
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def sweep_files(
    videos_path: Path,
    requests_path: Path | None,
    out: Path,
    **options,
) -> tuple[AuditResult, dict[str, Path]]:
    """Sweep the files into ``out``; see `sweep_frames` for ``options`` and the result."""
    videos_path = Path(videos_path)
    if requests_path is not None and not Path(requests_path).is_file():  # now, not after reading the videos
        raise SourceError(f"requests file not found: {requests_path}")
    requests = None if requests_path is None else file_frames(Path(requests_path), what="requests")
    return sweep_frames(file_frames(videos_path, what="videos"), requests, out, estimate=estimate_rows(videos_path),
                        videos_source=str(videos_path), requests_source=str(requests_path), **options)


def sweep_frames(
    videos: Iterator,
    requests: Iterator | None,
    out: Path,
    *,
    estimate: int,
    videos_source: str,
    requests_source: str | None,
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
    parent: Callable[[], None] | None = None,
    notes: list[str] | Callable[[int], list[str]] | None = None,
    meanwhile: Callable[[AuditResult], object] | None = None,
) -> tuple[AuditResult, dict[str, Path]]:
    """Sweep the frames of ``videos`` (and of the request log) into ``out`` (``summary.json``,
    ``duplicates.csv``), frames as read (Arrow tables or raw pandas frames) and about
    ``estimate`` videos; returns the result the page is drawn from (see `merged_result`) and
    the paths written. ``initializer`` runs first in each worker process, or here when there
    are none, and ``parent`` here when there are (the CLI's choices of allocators). One shard is swept in this process: workers would cost more than they save.
    ``notes`` (``summary.json``'s), or a function of the count of videos scanned giving them.
    ``meanwhile`` is called here with the result while the files are written (after them
    without workers); the sweep returns when both are done, and a failed write is the error
    raised, whatever ``meanwhile`` raised."""
    if not shards:
        shards = max(1, math.ceil(estimate / SHARD_ROWS))
        if shards > 1:
            # A multiple of the workers, each shard smaller: 7 shards on 2 workers left one
            # worker alone through the last round (3 M rows: shard phase 4.4 s -> 4.1 s).
            workers = jobs or default_jobs()
            shards = workers * math.ceil(shards / workers)
    jobs = 1 if shards == 1 else (jobs or default_jobs())
    job_args = dict(as_of=as_of, window=period.window, cost_per_video=cost_per_video, lease=lease,
                    since=period.since, until=period.until)
    with_requests = requests is not None
    runner = _Runner(jobs, initializer, parent)
    writer = None
    try:
        with tempfile.TemporaryDirectory(prefix="audit-sweep-") as tmp:
            folder = Path(tmp)
            with transient_folder(folder / "read") as saved:
                tasks = frames(videos, folder, what="videos", shards=shards, period=period, source=videos_source,
                               saved=saved)
                if requests is not None:
                    tasks = chain(tasks, frames(requests, folder, what="requests", shards=shards, period=None,
                                                source=str(requests_source), saved=saved))
                _spill(runner.map(spill_frame, tasks), estimate, with_requests, progress, console)
            buckets = [BucketTask(folder=folder, bucket=b, with_requests=with_requests) for b in range(shards)]
            first_repeat(list(runner.map(join_bucket, buckets)), videos_source)
            writer = _Writer.start(initializer) if runner.pool is not None else None
            template = ShardJob(folder=folder, shard=0, with_requests=with_requests, **job_args)
            outcomes: list[ShardOutcome] = []
            with progress_bar("sweeping user shards", shards, enabled=progress, console=console) as advance:
                for outcome in runner.map(sweep_shard, (replace(template, shard=s) for s in range(shards))):
                    outcomes.append(outcome)
                    advance(1)
            runner.close()  # now: idle workers keep their heaps (`initializer`), 1.1 GB through the merge
            result = merged_result(outcomes, job_args=job_args, has_requests=with_requests,
                                   generation_range=DEFAULT_GENERATION_RANGE)
            scanned = result.summary["videos_scanned"]
            result.summary["notes"] = list(notes(scanned) if callable(notes) else notes or [])
            files = _FilesTask(summary=result.summary, folder=folder, shards=list(range(shards)), out=Path(out),
                               source=source)
            if writer is None:
                paths = _write_files(files)
                if meanwhile is not None:
                    meanwhile(result)
            else:
                Path(out).mkdir(parents=True, exist_ok=True)  # the page may be written first
                written = writer.pool.submit(_write_files, files)
                try:
                    if meanwhile is not None:
                        meanwhile(result)
                finally:
                    paths = written.result()  # in a finally: its error, if any, is the one raised
    finally:
        runner.close()
        if writer is not None:
            writer.close()
    return result, paths


@dataclass(frozen=True)
class _FilesTask:
    summary: dict
    folder: Path
    shards: list[int]
    out: Path
    source: str


def _write_files(task: _FilesTask) -> dict[str, Path]:
    return write_merged(task.summary, Spill(task.folder), task.shards, task.out, source=task.source)


def _ready() -> None:
    """Nothing: sent first, so the writer's imports (this module's) are done before the files are due."""


class _Writer:
    """The process that writes the data files at the end: spawned and warmed up while the
    shards run (the imports, 0.5 s of CPU, then fall where both cores are busy anyway, not on
    the serial end)."""

    def __init__(self, pool: ProcessPoolExecutor) -> None:
        self.pool = pool

    @classmethod
    def start(cls, initializer: Callable[[], None] | None) -> _Writer:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=initializer)
        pool.submit(_ready)
        return cls(pool)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _spill(results: Iterator[tuple[str, int, int]], estimate: int, with_requests: bool, progress: bool,
           console) -> None:
    """Wait for the frames' results (videos', then requests'), a progress bar for each file."""
    first_request = 0
    with progress_bar("reading videos", estimate or None, enabled=progress, console=console) as advance:
        for what, rows, _ in results:
            if what != "videos":
                first_request = rows
                break
            advance(rows)
    if with_requests:
        with progress_bar("reading requests", None, enabled=progress, console=console) as advance:
            advance(first_request)
            for _, rows, _ in results:
                advance(rows)
