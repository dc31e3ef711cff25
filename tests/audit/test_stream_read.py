"""The streaming sweep's reading: a CSV cut into slices that workers read themselves
(`audit.sources.files.csv_slices`), frames read here waiting in /dev/shm or beside the spill,
and errors reported in the order of the files, whoever met them first."""

from __future__ import annotations

import re
from dataclasses import replace

import pandas as pd
import pyarrow as pa
import pytest

import audit.stream.partition as partition
from audit.frames import SchemaError
from audit.sources.base import Period, SourceError
from audit.sources.files import MAX_ROW_BYTES, csv_slices, read_csv, read_csv_slice
from audit.synthetic import synthetic_requests, synthetic_videos, to_iso_text
from tests.audit.conftest import REQUESTS_CSV, VIDEOS_CSV
from tests.audit.test_stream import assert_same_files, reference, streamed

HEADER = b"id,tg_user_id,prompt,status,created_at"
ROWS = [b'1,7,"a, quoted comma",ready,2025-10-15T00:00:00+00:00', b"2,7,b,ready,2025-10-15T00:01:00+00:00",
        b"3,8,,ready,2025-10-15T00:02:00+00:00", b'4,8,"say ""hi""",failed,2025-10-15T00:03:00+00:00']


def read_sliced(path, rows: int) -> tuple[pa.Table, int]:
    parts = list(csv_slices(path, what="videos", rows=rows))
    return pa.concat_tables(read_csv_slice(p) for p in parts), len(parts)


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
@pytest.mark.parametrize("last", [True, False], ids=["ending-in-a-line-end", "without"])
def test_slices_read_as_the_whole_file_reads(tmp_path, end, last):
    path = tmp_path / "videos.csv"
    body = end.join([HEADER, *ROWS * 50])
    path.write_bytes(body + (end if last else b""))
    table, count = read_sliced(path, rows=3)
    assert count > 10
    whole = read_csv(path, what="videos")
    pd.testing.assert_frame_equal(table.to_pandas(), whole)


def test_a_file_of_a_header_is_one_empty_slice(tmp_path):
    path = tmp_path / "videos.csv"
    path.write_bytes(HEADER + b"\n")
    table, count = read_sliced(path, rows=2)
    assert count == 1 and table.num_rows == 0 and table.column_names == HEADER.decode().split(",")
    path.write_bytes(HEADER)  # Arrow sees no rows, not even the header's: refused, by either reader
    with pytest.raises(SourceError) as whole:
        read_csv(path, what="videos")
    with pytest.raises(SourceError) as sliced:
        read_sliced(path, rows=2)
    assert str(sliced.value) == str(whole.value)


def test_a_long_row_across_a_cut_is_refused_where_it_is_met(tmp_path):
    path = tmp_path / "videos.csv"
    with path.open("wb") as file:
        file.write(HEADER + b"\n" + b"\n".join(ROWS * 5000) + b"\n5,7,")
        file.write(b"x" * (2 * MAX_ROW_BYTES) + b",ready,2025-10-15T00:00:00+00:00\n")
    made = []
    with pytest.raises(SourceError, match=f"not a readable CSV: a row is longer than {MAX_ROW_BYTES} bytes"):
        made.extend(csv_slices(path, what="videos", rows=1000))
    assert len(made) > 5 and all(read_csv_slice(part).num_rows for part in made)


def test_a_line_break_inside_quotes_at_a_cut_is_refused_not_misread(tmp_path):
    path = tmp_path / "videos.csv"
    rows = [b'%d,7,"two\nlines",ready,2025-10-15T00:00:00+00:00' % i for i in range(100)]
    path.write_bytes(b"\n".join([HEADER, *rows]) + b"\n")
    assert read_csv(path, what="videos")["prompt"].eq("two\nlines").all()  # one block: read
    whole = next(csv_slices(path, what="videos", rows=1000))
    cut = whole.start + rows[0].index(b"\n") + 1
    for part in (replace(whole, end=cut), replace(whole, start=cut)):  # the cut a slice could make
        with pytest.raises(SourceError, match="not a readable CSV: CSV parse error: Expected 5 columns, got 3"):
            read_csv_slice(part)


def test_a_bad_row_is_read_where_it_is(tmp_path):
    path = tmp_path / "videos.csv"
    path.write_bytes(b"\n".join([HEADER, *ROWS[1:] * 40, b"9,9", *ROWS[1:] * 40]) + b"\n")
    parts = list(csv_slices(path, what="videos", rows=20))
    errors = []
    for part in parts:
        try:
            read_csv_slice(part)
        except SourceError as exc:
            errors.append(str(exc))
    assert errors == [f"videos file {path} is not a readable CSV: CSV parse error: Expected 5 columns, got 2: 9,9"]


@pytest.fixture(scope="module")
def small_parquet(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parquet")
    videos = synthetic_videos(20_000, seed=7, users=300, days=10)
    videos.to_parquet(folder / "videos.parquet", index=False)
    synthetic_requests(videos, seed=8).to_parquet(folder / "requests.parquet", index=False)
    return folder


@pytest.mark.parametrize("shm", ["there", "missing"])
def test_frames_read_here_wait_in_memory_or_beside_the_spill(tmp_path, small_parquet, monkeypatch, shm):
    if shm == "missing":
        monkeypatch.setattr(partition, "SHM", tmp_path / "no-shm")
    monkeypatch.setattr(partition, "FRAME_ROWS", 3_000)
    videos, requests = small_parquet / "videos.parquet", small_parquet / "requests.parquet"
    want = reference(videos, requests, tmp_path / "memory", Period())
    got = streamed(videos, requests, tmp_path / "stream", Period(), shards=3, jobs=2)
    assert_same_files(got, want)
    with partition.transient_folder(tmp_path / "fallback") as folder:
        assert (folder.parent == partition.SHM) == (shm == "there")
        assert folder.is_dir()
    assert not folder.exists() or shm == "missing"


def test_a_bad_videos_frame_is_reported_before_a_bad_request_log(tmp_path, monkeypatch):
    """The request log's header is read while the videos' last frames are still in the
    workers: the videos' error is the one reported, as when the files were read in turn."""
    monkeypatch.setattr(partition, "FRAME_ROWS", 10)
    frame = pd.read_csv(VIDEOS_CSV, dtype=str)
    frame.loc[len(frame) - 3, "status"] = "lost"
    videos = tmp_path / "videos.csv"
    frame.to_csv(videos, index=False)
    requests = tmp_path / "requests.csv"
    requests.write_bytes(b"\xff\xfe,x\n" + REQUESTS_CSV.read_bytes())
    with pytest.raises(SchemaError, match="column 'status' has unknown value"):
        streamed(videos, requests, tmp_path / "out", Period(), shards=2, jobs=2)
    with pytest.raises(SourceError, match="requests file .* is not a readable CSV"):
        streamed(VIDEOS_CSV, requests, tmp_path / "out", Period(), shards=2, jobs=2)
    assert not (tmp_path / "out").exists()


def test_a_request_log_is_checked_as_the_in_memory_load_checks_it(tmp_path, monkeypatch):
    monkeypatch.setattr(partition, "FRAME_ROWS", 10)
    frame = pd.read_csv(REQUESTS_CSV, dtype=str)
    frame.loc[len(frame) - 2, "tg_user_id"] = "seven"
    requests = tmp_path / "requests.csv"
    frame.to_csv(requests, index=False)
    with pytest.raises(SchemaError) as streamed_error:
        streamed(VIDEOS_CSV, requests, tmp_path / "out", Period(), shards=2)
    with pytest.raises(SchemaError) as loaded_error:
        reference(VIDEOS_CSV, requests, tmp_path / "memory", Period())
    # pandas' words end with the value's position, in the frame: not the file's, when streamed.
    words = re.compile(r"at position \d+$")
    assert words.sub("", str(streamed_error.value)) == words.sub("", str(loaded_error.value))
    assert "column 'tg_user_id' must hold integers" in str(streamed_error.value)
