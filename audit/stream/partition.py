"""The streaming sweep's first pass: read the files once, frame by frame, and spill every row
to its user's shard.

A frame is a task for a worker process, which reads it, normalises it and spills it: a CSV's
frame is a slice of its lines (`audit.sources.files.csv_slices`), read by the worker itself,
so the parent never parses a row and never waits on the workers' disk (at 3 M rows it parsed
and re-wrote every frame, 0.3 s of CPU each, and the workers waited on it). Frames read
elsewhere (a Parquet file's batches, a database's chunks) are saved for the worker in memory
(``/dev/shm``) when there is room, else beside the spill: read once, deleted at once, at most
``jobs + 1`` of them. Requests' frames follow the videos' in the same stream of tasks, so the
workers never drain between the two files.

Each frame of the videos file is normalised on its own (the same checks, types and keys as
the in-memory sweep: a CSV frame by Arrow from end to end, `audit.stream.arrow_frames`, any
other frame or any check that does not pass by `audit.frames.normalise_videos`, which words
the error), cut to the period, and split by `shard_of(tg_user_id)` into ``v-<shard>``; a
frame of the request log likewise (`earliest_requests`, else `normalise_requests`). Two things cannot be decided one frame at a time,
and get a second, small pass over buckets of ids (``hash(id) % buckets``), which is a
partitioned hash join:

- **ids are unique over the file**: ``i-<bucket>`` holds every row's ``(id, shard, row
  number)``; a bucket holds every copy of its ids, and the repeat with the lowest row number is
  the one the in-memory sweep names (rows count by frame, then by time within the frame:
  of two ids repeated inside one later frame, either may be named);
- **the request log joins by video id**, not by user: a request is in ``r-<bucket>`` of its
  ``video_id`` (only the earliest per video is kept, all the sweep reads), meets that video's
  shard in ``i-<bucket>``, and goes on to ``l-<shard>``. A request whose ``tg_user_id``
  disagrees with its video's still reaches the video, as in the in-memory sweep.

Memory: one frame of each file, and one bucket, at a time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from audit.frames import SchemaError, normalise_requests, normalise_videos
from audit.sources.base import Period
from audit.sources.files import PARQUET_SUFFIXES, CsvSlice, csv_slices, iter_table, pandas_frame, read_csv_slice
from audit.stream.arrow_frames import canonical_videos, earliest_requests
from audit.stream.tables import Spill, shard_of, videos_to_arrow

__all__ = ["FRAME_ROWS", "IDS", "LOGGED", "FrameTask", "BucketTask", "estimate_rows", "file_frames", "frames",
           "transient_folder", "spill_frame", "spill_videos", "spill_requests", "join_bucket", "first_repeat"]

# Rows normalised at once: large enough that pandas' fixed costs per call vanish, small enough
# that a frame of wide rows is a few hundred MB at most.
FRAME_ROWS = 500_000
IDS = pa.schema([("id", pa.int64()), ("shard", pa.int32()), ("row", pa.int64())])
REQUEST_TIMES = pa.schema([("video_id", pa.int64()), ("received_at", pa.timestamp("us", tz="UTC"))])
LOGGED = REQUEST_TIMES
# Frames wait in memory only where a few of them fit with room to spare: a container's
# /dev/shm is often 64 MB, and a full one would fail the sweep.
SHM = Path("/dev/shm")
SHM_FREE_BYTES = 2 * 1024**3


def estimate_rows(path: Path) -> int:
    """Rows in a videos file: Parquet's footer says; a CSV's first MiB is extrapolated."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError):
            return 0  # the reader words the error when it meets it
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(1 << 20)
    except OSError:
        return 0
    lines = max(head.count(b"\n") - 1, 1)
    return max(1, round(size / max(len(head), 1) * lines))


@dataclass(frozen=True)
class FrameTask:
    """One frame of an input (``what``: videos or requests) for a worker to normalise and
    spill as part ``part``: a CSV slice, or a frame as read, saved at a path. Saved, not sent:
    a pool holds every task it was given until its result is back, so frames sent along
    kept several hundred MB in the reading process. ``first_row`` numbers the frame's rows
    after every earlier frame's (a slice's byte offset: a row has at least one byte)."""

    what: str
    folder: Path
    part: int
    frame: Path | CsvSlice
    first_row: int
    shards: int
    period: Period | None
    source: str


def spill_frame(task: FrameTask) -> tuple[str, int, int]:
    """`spill_videos` or `spill_requests`, by ``task.what``; returns ``(what, rows read, rows kept)``."""
    spill = spill_videos if task.what == "videos" else spill_requests
    return (task.what, *spill(task))


def spill_videos(task: FrameTask) -> tuple[int, int]:
    """Normalise one frame of the videos file and spill it into ``v-<shard>`` and
    ``i-<bucket>`` (see the module docstring); returns ``(rows read, rows kept)``."""
    videos = _canonical_videos(_frame(task), task.source)
    ids = videos["id"].to_numpy()
    keep = np.ones(len(videos), dtype=bool)
    if task.period is not None:
        # As `load_files`: stuck claims are current state, generating rows stay whatever the period.
        period = task.period
        created = videos["created_at"].combine_chunks().view(pa.int64()).to_numpy()
        if period.load_from is not None:
            keep &= created >= _us(period.load_from)
        if period.until is not None:
            keep &= created <= _us(period.until)
        keep |= pc.equal(videos["status"], "generating").to_numpy(zero_copy_only=False).astype(bool)
    shard = shard_of(videos["tg_user_id"].to_numpy(), task.shards)
    # Row numbers by frame, then by time within it (normalisation sorted the frame): the
    # file's order but for which of two repeats inside one later frame comes first.
    row = task.first_row + np.arange(len(videos), dtype=np.int64)
    with Spill(task.folder, task.part) as spill:
        spill.split("i", pa.table({"id": ids, "shard": np.where(keep, shard, -1).astype(np.int32), "row": row},
                                  schema=IDS), shard_of(ids, task.shards))
        if keep.all():  # a sweep of everything: no copy of the frame to select all of it
            spill.split("v", videos, shard)
        elif keep.any():
            spill.split("v", videos.filter(keep), shard[keep])
    return len(videos), int(keep.sum())


def _canonical_videos(frame: pa.Table | pd.DataFrame, source: str) -> pa.Table:
    """The frame as the canonical videos table: Arrow's own checks and casts when it is a CSV
    frame they accept (`canonical_videos`), else `normalise_videos`, which words any error."""
    if isinstance(frame, pa.Table):
        table = canonical_videos(frame)
        if table is not None:
            return table
        frame = pandas_frame(frame)
    return videos_to_arrow(normalise_videos(frame, source=source))


def _us(moment: datetime) -> int:
    """A bound of the period in microseconds of UTC (naive: TypeError, as pandas' comparison raised)."""
    return pd.Timestamp(moment).tz_convert("UTC").value // 1000


def spill_requests(task: FrameTask) -> tuple[int, int]:
    """Spill each video's earliest request time of one frame of the request log into
    ``r-<bucket of video_id>``; returns ``(rows read, rows with a video)``."""
    frame = _frame(task)
    earliest = earliest_requests(frame) if isinstance(frame, pa.Table) else None
    if earliest is not None:
        rows, with_video = frame.num_rows, frame.num_rows - frame.column("video_id").null_count
    else:
        rows, with_video, earliest = _earliest_by_pandas(frame, task.source)
    video_id = earliest["video_id"].to_numpy()
    with Spill(task.folder, task.part) as spill:
        spill.split("r", earliest, shard_of(video_id, task.shards))
    return rows, with_video


def _earliest_by_pandas(frame: pa.Table | pd.DataFrame, source: str) -> tuple[int, int, pa.Table]:
    """`spill_requests`' rows, rows with a video and earliest times, by `normalise_requests`,
    which words any error."""
    frame = pandas_frame(frame) if isinstance(frame, pa.Table) else frame
    # Every column checked as the in-memory load checks it (the same errors), but not sorted.
    requests = normalise_requests(frame, source=source, sort=False)
    logged = requests.loc[requests["video_id"].notna(), ["video_id", "received_at"]]
    earliest = logged.groupby("video_id", sort=False)["received_at"].min()
    video_id = earliest.index.to_numpy(dtype=np.int64)
    return len(requests), len(logged), pa.table({"video_id": video_id, "received_at": earliest.array},
                                                schema=REQUEST_TIMES)


def _frame(task: FrameTask) -> pa.Table | pd.DataFrame:
    """The task's frame as read: a CSV slice's or a saved table as Arrow, a database's pickled
    frame as pandas."""
    if isinstance(task.frame, CsvSlice):
        return read_csv_slice(task.frame)
    if task.frame.suffix == ".arrow":
        with pa.ipc.open_stream(task.frame) as reader:
            frame = reader.read_all()
    else:
        frame = pd.read_pickle(task.frame)
    task.frame.unlink()
    return frame


def file_frames(path: Path, *, what: str) -> Iterator[CsvSlice | pa.Table]:
    """A file's frames: a CSV's slices, for the workers to read; a Parquet file's tables, read
    one at a time here."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return iter_table(path, what=what, rows=FRAME_ROWS, arrow=True)
    return csv_slices(path, what=what, rows=FRAME_ROWS)


@contextmanager
def transient_folder(fallback: Path) -> Iterator[Path]:
    """Where frames read here wait for their worker: a new folder in ``/dev/shm`` when it is
    there, writable and roomy (6 frames of 3 M rows: 0.16 s written there, 0.57 s to TMPDIR),
    else ``fallback``. Only frames: the spills are as big as the input, and stay on disk."""
    try:
        roomy = SHM.is_dir() and os.access(SHM, os.W_OK | os.X_OK) and shutil.disk_usage(SHM).free >= SHM_FREE_BYTES
    except OSError:
        roomy = False
    if not roomy:
        fallback.mkdir(exist_ok=True)
        yield fallback
        return
    with tempfile.TemporaryDirectory(dir=SHM, prefix="audit-sweep-frames-") as folder:
        yield Path(folder)


def frames(read: Iterator[CsvSlice | pa.Table | pd.DataFrame], folder: Path, *, what: str, shards: int,
           period: Period | None, source: str, saved: Path | None = None) -> Iterator[FrameTask]:
    """Frames as they are read, as tasks: a CSV slice as it is, a table saved in ``saved``
    (Arrow tables as Arrow, a database's frames pickled; default: ``folder / "read"``)."""
    if saved is None:
        saved = folder / "read"
        saved.mkdir(exist_ok=True)
    first_row = 0
    for part, table in enumerate(read):
        if isinstance(table, CsvSlice):
            yield FrameTask(what=what, folder=folder, part=part, frame=table, first_row=table.start, shards=shards,
                            period=period, source=source)
            continue
        if isinstance(table, pa.Table):
            path = saved / f"{what}-{part}.arrow"
            with pa.ipc.new_stream(path, table.schema) as writer:
                writer.write_table(table)
        else:
            path = saved / f"{what}-{part}.pickle"
            table.to_pickle(path)
        yield FrameTask(what=what, folder=folder, part=part, frame=path, first_row=first_row, shards=shards,
                        period=period, source=source)
        first_row += len(table)


@dataclass(frozen=True)
class BucketTask:
    folder: Path
    bucket: int
    with_requests: bool


def join_bucket(task: BucketTask) -> tuple[int, int] | None:
    """One bucket of ids: its first repeated id as ``(row, id)`` (None when its ids are
    unique), and each of its videos' earliest request time sent to ``l-<shard>``."""
    spill = Spill(task.folder, part=task.bucket)
    ids = spill.read("i", task.bucket, IDS).to_pandas().sort_values("row", kind="stable")
    repeated = ids["id"].duplicated()
    if repeated.any():
        first = ids.loc[repeated].iloc[0]
        return int(first["row"]), int(first["id"])
    if not task.with_requests:
        return None
    times = spill.read("r", task.bucket, REQUEST_TIMES).to_pandas()
    earliest = times.groupby("video_id", sort=False)["received_at"].min()
    scoped = ids.loc[ids["shard"] >= 0, ["id", "shard"]]
    found = earliest.reindex(scoped["id"].to_numpy())
    has = found.notna().to_numpy()
    if has.any():
        with spill:
            table = pa.table({"video_id": scoped["id"].to_numpy()[has], "received_at": found.array[has]}, schema=LOGGED)
            spill.split("l", table, scoped["shard"].to_numpy()[has])
    return None


def first_repeat(found: list[tuple[int, int] | None], source: str) -> None:
    """Raise `SchemaError` naming the first repeated id of the file, if any bucket found one."""
    repeats = [f for f in found if f is not None]
    if repeats:
        raise SchemaError(f"{source}: column 'id' is not unique (id {min(repeats)[1]} appears twice)")
