"""The streaming sweep's last pass: the shards' outcomes into one summary, and the shards'
sorted duplicates interleaved into ``duplicates.csv`` and ``summary.json``.

Every aggregate of the sweep is a sum, a concatenation or an order over duplicates or videos,
and no duplicate, stuck claim or race chain spans two users, so each merges exactly: counts
add, the policies' verdicts concatenate (`audit.policies.compare_policies` counts them as
for one frame), stuck claims and duplicates take the in-memory sweep's order again
(``(created_at, id)``). The duplicates themselves are never all in memory: only their sort
keys are (16 bytes each), and the text comes from the shards' files a block at a time.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from audit.classify import CLASSES
from audit.pipeline import AuditResult, summary_of
from audit.policies import POLICY_ROWS, compare_policies
from audit.report import DUPLICATE_CSV_COLUMNS, duplicates_csv_lines, summary_json_chunks
from audit.stream.shard import ShardOutcome
from audit.stream.tables import Spill
from service.redact import redact_text

__all__ = ["merged_result", "write_merged"]

_BLOCK = 50_000


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Row-bind the shards' frames. A shard without rows may type its columns otherwise (an
    empty result is all ``object``), and would turn every column it shares into ``object``:
    it is left out unless all are empty."""
    kept = [f for f in frames if len(f)] or frames[:1]
    return pd.concat(kept, ignore_index=True) if len(kept) > 1 else kept[0].reset_index(drop=True)


def merged_result(outcomes: list[ShardOutcome], *, job_args: dict[str, Any], has_requests: bool,
                  generation_range) -> AuditResult:
    """The sweep's `AuditResult` for the summary and the report page. Its ``summary`` holds no
    duplicate list (`write_merged` streams it) and its frames only what the page draws:
    ``duplicates`` has every column for the newest rows the page lists and the figures'
    columns for the rest, ``race_windows`` the race chains, ``videos`` the latest creation time."""
    outcomes = sorted(outcomes, key=lambda o: o.shard)
    scanned = sum(o.scanned for o in outcomes)
    by_class = {c: sum(o.by_class[c] for o in outcomes) for c in CLASSES}
    prevented = _concat([o.prevented for o in outcomes]) if outcomes else pd.DataFrame(
        {p: pd.Series([], dtype=bool) for p in POLICY_ROWS})
    policies = compare_policies(prevented, videos_scanned=scanned, cost_per_video=job_args["cost_per_video"])
    stuck = _concat([o.stuck for o in outcomes])
    stuck = stuck.sort_values(["created_at", "id"], kind="stable").reset_index(drop=True)
    summary = summary_of(
        as_of=job_args["as_of"], since=job_args["since"], until=job_args["until"], window=job_args["window"],
        cost_per_video=job_args["cost_per_video"], scanned=scanned, by_class=by_class, has_requests=has_requests,
        any_estimate=any(o.any_estimate for o in outcomes), generation_range=generation_range, duplicates=[],
        policies=policies, stuck=stuck, near=None,
    )
    newest = _concat([o.newest for o in outcomes])
    slim = _concat([o.slim for o in outcomes])
    rest = slim.loc[~slim["video_id"].isin(newest["video_id"])]
    if len(rest):
        # The table's integer columns stay integers (a float column would print user 5000003150
        # as 5000003150.0, and round ids past 2**53): missing in the rows the table never shows.
        whole = ("original_id", "tg_user_id")
        missing = pd.arrays.IntegerArray(np.zeros(len(rest), dtype=np.int64), np.ones(len(rest), dtype=bool))
        rest = rest.assign(**{c: missing for c in whole})
        duplicates = pd.concat([newest.astype({c: "Int64" for c in whole}), rest], ignore_index=True)
    else:
        duplicates = newest
    windows = _concat([o.race_windows for o in outcomes])
    windows = windows.sort_values(["chain_id", "requested_at", "video_id"]).reset_index(drop=True)
    latest = [o.latest for o in outcomes if o.latest is not None]
    videos = pd.DataFrame({"created_at": pd.Series([max(latest)] if latest else [], dtype="datetime64[us, UTC]")})
    return AuditResult(videos=videos, duplicates=duplicates, race_windows=windows, policies=policies,
                       stuck_claims=stuck, near_duplicates=None, summary=summary)


def _merge_pool() -> pa.MemoryPool:
    """The pool of the merge's own buffers: mimalloc's when Arrow has it. The sweep's parent
    runs with glibc's thresholds at their defaults (`audit.cli._lean_allocators`), so every
    buffer past 128 KB was mapped afresh and faulted in page by page, a block's few 10 MB
    buffers every block: 0.4 s of the 3 M merge's 0.66 s. mimalloc keeps them for the next
    block, and the process's pool stays the CLI's choice."""
    try:
        return pa.mimalloc_memory_pool()
    except NotImplementedError:  # a build without it
        return pa.default_memory_pool()


class _Rows:
    """One shard's duplicates file, read forward a batch at a time and handed out ``count``
    rows at a time (a table whose chunks are the batches' slices: nothing is copied)."""

    def __init__(self, path: Path, pool: pa.MemoryPool) -> None:
        self.stream = pa.ipc.open_stream(path, memory_pool=pool)
        self.rest = self.stream.schema.empty_table().select(["csv", "json"])

    def take(self, count: int) -> pa.Table:
        while self.rest.num_rows < count:
            batch = self.stream.read_next_batch()  # raises past the end: the keys counted more rows than the file has
            self.rest = pa.concat_tables([self.rest, pa.Table.from_batches([batch]).select(["csv", "json"])])
        rows, self.rest = self.rest.slice(0, count), self.rest.slice(count)
        return rows


def _joined(column: pa.ChunkedArray, separator: str, pool: pa.MemoryPool) -> pa.Buffer:
    """The UTF-8 bytes of the strings of ``column`` joined by ``separator``, by one Arrow
    kernel (a list of all of them, joined): no Python string per row, nor one for the block."""
    values = column.combine_chunks(memory_pool=pool).cast(pa.large_string(), memory_pool=pool)  # a block may pass 2 GB
    whole = pa.ListArray.from_arrays(pa.array([0, len(values)], type=pa.int32()), values)
    joined = pc.binary_join(whole, pa.scalar(separator, pa.large_string()), memory_pool=pool)
    start, stop = np.frombuffer(joined.buffers()[1], dtype=np.int64, count=2, offset=8 * joined.offset).tolist()
    return joined.buffers()[2].slice(start, stop - start)


def _write_utf8(file: TextIO, data: pa.Buffer) -> None:
    """UTF-8 ``data`` into the text ``file``, as writing its text would: the bytes as they are
    when the file's encoding is UTF-8 (decoding 60 MB of rows to write them encoded again
    was a fifth of the merge), else decoded and written."""
    if codecs.lookup(file.encoding).name == "utf-8":
        file.flush()
        file.buffer.write(data)
    else:
        file.write(str(memoryview(data), "utf-8"))


# What `service.redact.redact_text` looks at first: text with neither is returned as it is.
# Two one-character patterns: each is a tight scan (60 MB in 0.015 s), a class of both 10 times slower.
_MAYBE_SECRET = (re.compile(rb"="), re.compile(rb"@"))


def _write_masked(file: TextIO, data: pa.Buffer) -> None:
    """UTF-8 ``data`` into the text ``file`` as ``redact_text`` masks it: as it is when it holds
    no "=" nor "@" (the duplicates' items: ids, words and times), else decoded and masked."""
    if all(pattern.search(memoryview(data)) is None for pattern in _MAYBE_SECRET):
        _write_utf8(file, data)
    else:
        file.write(redact_text(str(memoryview(data), "utf-8")))


def _interleaved(spill: Spill, shards: list[int]) -> Iterator[tuple[pa.Buffer, pa.Buffer]]:
    """Blocks of every shard's duplicates in ``(created_at, video_id)`` order, each as the
    UTF-8 text of its ``duplicates.csv`` rows (joined by line ends) and of its ``summary.json`` items
    (joined by ``,\\n``): the global order from the sort keys, then each block takes its next
    rows from each shard's file, and one ``take`` puts them in the block's order."""
    keys, labels, files, pool = [], [], {}, _merge_pool()
    try:
        for shard in shards:
            path = spill.path("d", shard)
            with pa.ipc.open_stream(path) as reader:
                table = reader.read_all().select(["created_us", "video_id"])
            keys.append(table)
            labels.append(np.full(table.num_rows, shard, dtype=np.int32))
            files[shard] = _Rows(path, pool)  # one open file per shard: 208 for 100 M rows
        yield from _blocks(keys, labels, files, pool)
    finally:
        for rows in files.values():
            rows.stream.close()


def _blocks(keys: list, labels: list, files: dict[int, _Rows], pool: pa.MemoryPool) -> Iterator[tuple[pa.Buffer, pa.Buffer]]:
    if not keys:
        return
    table = pa.concat_tables(keys)
    created, video = table["created_us"].to_numpy(), table["video_id"].to_numpy()
    sequence = np.concatenate(labels)[np.lexsort((video, created))]
    del table, created, video
    for start in range(0, len(sequence), _BLOCK):
        block = sequence[start:start + _BLOCK]
        # Grouped by shard (stable: each shard's rows keep their order), then put back.
        by_shard = np.argsort(block, kind="stable")
        shards, counts = np.unique(block, return_counts=True)
        gathered = pa.concat_tables([files[s].take(n) for s, n in zip(shards.tolist(), counts.tolist(), strict=True)])
        position = np.empty(len(block), dtype=np.int64)
        position[by_shard] = np.arange(len(block))
        ordered = pc.take(gathered, pa.array(position), memory_pool=pool)
        yield _joined(ordered["csv"], "\n", pool), _joined(ordered["json"], ",\n", pool)


def write_merged(summary: dict[str, Any], spill: Spill, shards: list[int], out: Path, *, source: str) -> dict[str, Path]:
    """``summary.json`` and ``duplicates.csv`` into ``out``, byte for byte what
    `audit.report.write_data` writes for the same sweep in memory (both files in one pass over
    the shards' duplicates). ``summary``: `merged_result`'s, without its duplicate list."""
    paths = {"summary": out / "summary.json", "duplicates": out / "duplicates.csv"}
    out.mkdir(parents=True, exist_ok=True)
    header, _ = duplicates_csv_lines(pd.DataFrame(columns=DUPLICATE_CSV_COLUMNS))
    count = int(summary["duplicate_count"])
    with paths["duplicates"].open("w") as table, paths["summary"].open("w") as summary_file:
        table.write(header + "\n")

        def items() -> Iterator[pa.Buffer]:
            for csv_rows, json_items in _interleaved(spill, shards):
                _write_utf8(table, csv_rows)
                table.write("\n")
                yield json_items

        # Masked piece by piece: every piece is whole lines, and no secret's pattern crosses a
        # line (`service.redact`), so this masks what masking the whole text would.
        for piece in summary_json_chunks({"source": source, **summary}, streamed={"duplicates": (count, items())}):
            if isinstance(piece, str):
                summary_file.write(redact_text(piece))
            else:
                _write_masked(summary_file, piece)
    return paths
