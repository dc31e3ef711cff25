"""The streaming sweep's merge (`audit.stream.merge`) in pieces smaller than its defaults,
and the writers it shares with the in-memory sweep (`audit.report`), against their plain forms."""

from __future__ import annotations

import io
import json
import math
from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pytest

import audit.stream.merge as merge
import audit.stream.shard as shard
from audit.report import _encode, summary_item_lines, summary_json, summary_json_chunks
from audit.sources.base import Period
from audit.synthetic import synthetic_requests, synthetic_videos, to_iso_text
from service.redact import redact_text
from tests.audit.test_stream import assert_same_files, reference, same_page, streamed


def test_many_small_blocks_and_parts_give_the_in_memory_sweeps_bytes(tmp_path, monkeypatch):
    # Blocks that end inside a shard's part, parts that end inside a block, and shards with
    # no row in some blocks: each block still takes every shard's next rows in order.
    videos = synthetic_videos(40_000, seed=11)
    requests = synthetic_requests(videos, seed=12)
    paths = {name: tmp_path / f"{name}.csv" for name in ("videos", "requests")}
    to_iso_text(videos).to_csv(paths["videos"], index=False)
    to_iso_text(requests).to_csv(paths["requests"], index=False)
    monkeypatch.setattr(merge, "_BLOCK", 499)
    monkeypatch.setattr(shard, "_PART_ROWS", 251)
    want = reference(paths["videos"], paths["requests"], tmp_path / "memory", Period())
    got = streamed(paths["videos"], paths["requests"], tmp_path / "stream", Period(), shards=5)
    assert_same_files(got, want)
    assert len((got / "duplicates.csv").read_text().splitlines()) > 5 * 499
    assert same_page(got, want)


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "utf-16"])
def test_rows_written_as_bytes_are_what_writing_their_text_writes(encoding):
    text = "1,«prompt»,x\n2,\"a, b\",y"
    expected, got = io.BytesIO(), io.BytesIO()
    with io.TextIOWrapper(expected, encoding=encoding) as file:
        file.write("header\n" + text + "\n")
        file.flush()
        want = expected.getvalue()
    with io.TextIOWrapper(got, encoding=encoding) as file:
        file.write("header\n")
        merge._write_utf8(file, pa.py_buffer(text.encode("utf-8")))
        file.write("\n")
        file.flush()
        assert got.getvalue() == want


RECORDS = [
    [{"video_id": 1, "tg_user_id": 5000000001, "age_seconds": 30.5}, {"video_id": 2, "tg_user_id": 7, "age_seconds": 1e20}],
    [{"a": "line\nbreak «é»", "b": None, "c": True}, {"a": "{}", "b": math.nan, "c": False}],
    [{"t": pd.Timestamp("2025-01-01", tz="UTC"), "d": timedelta(seconds=3)}, {"t": None, "d": None}],
    [{"k{0}": [1], "k}": {"x": 1}}, {"k{0}": [], "k}": {}}],  # one-item and empty values: no separator inside
    [{"a": [1, 2], "b": 1}, {"a": [3], "b": 2}],  # a value with its own separators: item by item
    [{"a": {"x": 1, "y": 2}}, {"a": 1}],
    [{"a": 1, "b": 2}, {"b": 2, "a": 1}],  # another key order
    [{"a": 1}, {"a": 1, "b": 2}],
    [{"a": 1}, [1, 2]],
    [{1: "a"}, {1: "b"}],  # keys that are not text
    [{}, {}],
    [{"only": 1}],
    [1, "two", None],
    [],
]


@pytest.mark.parametrize("items", RECORDS)
def test_summary_items_column_by_column_are_the_items_one_by_one(items):
    lines = summary_item_lines(items)
    assert lines == ["    " + _encode(item) for item in items]
    assert [json.loads(line) for line in lines] == json.loads(json.dumps(items, default=str))


@pytest.mark.parametrize("text", ['    {"a": 1},\n    {"b": "x"}', '    {"url": "postgresql://u:secret@db/x?password=hunter2"}'])
def test_items_written_as_bytes_are_masked_as_text_is(text):
    want, got = io.BytesIO(), io.BytesIO()
    with io.TextIOWrapper(want, encoding="utf-8") as file:
        file.write(redact_text(text))
        file.flush()
        masked = want.getvalue()
    with io.TextIOWrapper(got, encoding="utf-8") as file:
        merge._write_masked(file, pa.py_buffer(text.encode("utf-8")))
        file.flush()
        assert got.getvalue() == masked
    assert b"hunter2" not in masked and b"secret" not in masked


def test_a_streamed_list_in_joined_blocks_is_the_same_text():
    lines = summary_item_lines([{"n": n} for n in range(7)])
    blocks = [lines[:3], lines[3:4], [], lines[4:]]
    summary = {"before": 1, "items": lines, "after": [2]}
    as_lists = "".join(summary_json_chunks(summary, streamed={"items": (7, iter(blocks))}))
    as_bytes = "".join(piece if isinstance(piece, str) else bytes(piece).decode()
                       for piece in summary_json_chunks(summary, streamed={"items": (7, (",\n".join(b).encode() for b in blocks if b))}))
    assert as_lists == as_bytes == summary_json({"before": 1, "items": [{"n": n} for n in range(7)], "after": [2]})
