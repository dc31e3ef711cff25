"""The streaming sweep's files on disk: canonical frames as Arrow, shards by user, spill files.

A shard's rows travel as Arrow IPC streams in the sweep's temporary directory: written by the
partition (`audit.stream.partition`), read back whole by the shard's worker
(`audit.stream.shard`). IPC streams and not Parquet: the bytes are Arrow's own, so nothing is
encoded or decoded on the way (the files live a few minutes, mostly in the page cache).

The canonical videos frame (`audit.frames`) goes out with a fixed schema, so the batches of one
file agree even where one batch's optional column is empty, and comes back in the dtypes
`normalise_videos` gives: a shard reads as if the whole file had been normalised at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from audit.frames import REQUEST_COLUMNS, VIDEO_COLUMNS, adopt_canonical

__all__ = ["VIDEO_SCHEMA", "shard_of", "videos_to_arrow", "videos_from_arrow", "requests_from_times", "Spill"]

_TEXT = pa.string()
_TIME = pa.timestamp("us", tz="UTC")
VIDEO_SCHEMA = pa.schema(
    [("id", pa.int64()), ("tg_user_id", pa.int64()), ("prompt", _TEXT), ("enhanced_prompt", _TEXT),
     ("duration_seconds", pa.int64()), ("category", _TEXT), ("status", _TEXT), ("video_url", _TEXT),
     ("thumbnail_url", _TEXT), ("created_at", _TIME), ("updated_at", _TIME), ("prompt_key", _TEXT)]
)
assert VIDEO_SCHEMA.names == VIDEO_COLUMNS
_OPTIONAL_TEXT = ("enhanced_prompt", "category", "video_url", "thumbnail_url")  # object, None when missing
# Fibonacci hashing: consecutive user ids (as Telegram hands them out) spread over all shards.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def shard_of(values: np.ndarray, shards: int) -> np.ndarray:
    """The shard (0..shards-1) of each int64 value: the same value, the same shard, in any
    batch. The rule is per user, so shards of ``tg_user_id`` are independent sweeps."""
    mixed = values.astype(np.int64).view(np.uint64) * _GOLDEN  # wraps modulo 2**64, as meant
    return ((mixed >> np.uint64(32)) % np.uint64(shards)).astype(np.int32)


def videos_to_arrow(frame: pd.DataFrame) -> pa.Table:
    """A canonical videos frame as Arrow (columns the rule never reads, beyond
    `VIDEO_COLUMNS`, are left out)."""
    return pa.Table.from_pandas(frame[VIDEO_COLUMNS], schema=VIDEO_SCHEMA, preserve_index=False)


def videos_from_arrow(table: pa.Table) -> pd.DataFrame:
    """`videos_to_arrow`'s rows back as a canonical frame: normalisation's dtypes, sorted by
    ``(created_at, id)``, marked normalised. Columns ``table`` leaves out stay out (a shard
    converts only what `run_audit` reads: `audit.stream.shard.RULE_COLUMNS`)."""
    frame = table.to_pandas()
    if "duration_seconds" in frame.columns:
        frame["duration_seconds"] = table["duration_seconds"].to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    for column in _OPTIONAL_TEXT:
        if column in frame.columns:
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return adopt_canonical(frame, "videos")


def requests_from_times(video_id: np.ndarray, received_at: pd.Series) -> pd.DataFrame:
    """A canonical request log holding, per video, only its earliest request's time: all the
    sweep reads of the log (`audit.classify.request_times` takes each video's earliest)."""
    empty = pd.Series(pa.repeat(pa.scalar("", pa.large_string()), len(video_id)).to_pandas().array, dtype=str)
    frame = pd.DataFrame(
        {
            "request_id": empty,
            "received_at": pd.Series(received_at.array, dtype="datetime64[us, UTC]"),
            "tg_user_id": np.zeros(len(video_id), dtype=np.int64),
            "prompt": empty,
            "video_id": pd.array(video_id, dtype="Int64"),
        }
    )
    return adopt_canonical(frame[REQUEST_COLUMNS], "requests")


class Spill:
    """Append-only Arrow files under one directory, ``<kind>-<n>/<part>.arrow``: every task (a
    frame of the input, a bucket) writes its own part, so tasks in different processes never
    share a file; `read` gathers the parts of ``<kind>-<n>`` in part order (a directory each:
    100 M rows make 200 frames × 200 shards of parts, too many to find in one listing).
    `split` sends each row of a table to the file its label names."""

    def __init__(self, folder: Path, part: int = 0) -> None:
        self.folder = folder
        self.part = part
        self._writers: dict[tuple[str, int], pa.ipc.RecordBatchStreamWriter] = {}

    def path(self, kind: str, number: int) -> Path:
        return self.folder / f"{kind}-{number}" / f"{self.part}.arrow"

    def write(self, kind: str, number: int, table: pa.Table) -> None:
        writer = self._writers.get((kind, number))
        if writer is None:
            path = self.path(kind, number)
            path.parent.mkdir(exist_ok=True)
            writer = self._writers[(kind, number)] = pa.ipc.new_stream(path, table.schema)
        writer.write_table(table)

    def split(self, kind: str, table: pa.Table, labels: np.ndarray) -> None:
        """Rows grouped by label once (a stable sort), then each label's run written as a slice."""
        if not len(labels):
            return
        # Labels (shards, buckets) fit 16 bits: NumPy's stable sort of them is a radix sort,
        # 3 ms for 500 k rows where int32's merge sort took 14, and the same order.
        small = labels.min() >= 0 and labels.max() <= np.iinfo(np.uint16).max
        order = np.argsort(labels.astype(np.uint16) if small else labels, kind="stable")
        ordered = table.take(pa.array(order))
        sorted_labels = labels[order]
        starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
        ends = np.r_[starts[1:], len(sorted_labels)]
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            self.write(kind, int(sorted_labels[start]), ordered.slice(start, end - start))

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, kind: str, number: int, schema: pa.Schema) -> pa.Table:
        """All rows written to ``<kind>-<number>``, part by part (none: an empty table of ``schema``)."""
        folder = self.folder / f"{kind}-{number}"
        parts = sorted(folder.iterdir(), key=lambda p: int(p.stem)) if folder.is_dir() else []
        tables = []
        for path in parts:
            with pa.ipc.open_stream(path) as reader:
                tables.append(reader.read_all())
        # One chunk: pandas factorises and sorts a chunked text column several times slower.
        return pa.concat_tables(tables).combine_chunks() if tables else schema.empty_table()
