"""Files: the videos (required) and the bot's request log (optional), as CSV or Parquet.

The format follows the file name: ``.parquet`` / ``.pq`` is Parquet, anything else CSV.

- **CSV** is read by Arrow's multi-threaded reader, every column as text (types are the
  canonical frame's job, so a bad value gets the same message from every source). Only an
  empty cell is missing: a prompt that is literally ``None``, ``NA`` or ``null`` is a prompt.
- **Bounded**: a header line longer than `MAX_HEADER_BYTES`, or a row longer than
  `MAX_ROW_BYTES`, is refused at once (exit 2): a 2 GB file whose first line never ends was
  read into 4.3 GB of memory for 52 s, then failed as a bug (issue 18). The largest real row
  is a 2,000-character prompt and a few ids and times.
- **Slices** (`csv_slices`, the streaming sweep's reader): the file cut at line ends into
  byte ranges of about a frame each, which worker processes read with the header in front
  (`read_csv_slice`), so the process that plans them never parses a row. Arrow reads them as
  it reads the whole file: it cuts its own blocks the same way, at a line end without
  looking at quotes (``newlines_in_values`` off). So a line break inside quotes is read
  within a block, and refused where a cut falls on it (the columns no longer fit, or a
  value fails its type), as Arrow refuses one at the edge of its blocks.
- **Parquet** keeps its column types. Timestamps must carry a time zone (``timestamp[us,
  tz=UTC]``, as pandas writes a UTC-aware column): a naive one is refused like naive text.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from audit.frames import normalise_requests, normalise_videos
from audit.sources.base import Loaded, Period, SourceError, in_period

__all__ = ["load_files", "read_csv", "read_table", "iter_table", "pandas_frame", "CsvSlice", "csv_slices",
           "read_csv_slice"]

PARQUET_SUFFIXES = (".parquet", ".pq")
# A header names a few dozen columns; 64 KiB holds thousands.
MAX_HEADER_BYTES = 64 * 1024
# Arrow reads a CSV in blocks of this size and refuses a row that does not fit in one: the
# bound on one row (a prompt of 2,000 characters, even as 4-byte UTF-8, is 8 KB), and on
# what a malformed file costs before it is refused.
MAX_ROW_BYTES = 4 * 1024 * 1024
# A slice's bytes are held twice in its worker (the text, then Arrow's columns): the bound when
# rows are wide, where `csv_slices`' ``rows`` would make a slice of a gigabyte.
MAX_SLICE_BYTES = 128 * 1024 * 1024
_LINE_END = re.compile(rb"\r\n|[\r\n]")  # Arrow's: CR LF, or either alone
_ROW_NUMBER = re.compile(r"(?<=CSV parse error: )Row #\d+: ")


def _header(path: Path, what: str) -> list[str]:
    with path.open("rb") as handle:
        head = handle.read(MAX_HEADER_BYTES + 1)
    end = _line_end(head, 0)
    if end is None and len(head) > MAX_HEADER_BYTES:
        raise SourceError(f"{what} file {path} is not a readable CSV: its first line is longer than "
                          f"{MAX_HEADER_BYTES} bytes")
    line = head[:end]  # a file of old Mac line ends (CR) has one: the csv module refused the whole head
    return next(csv.reader([line.decode("utf-8", errors="replace")]), [])


def _csv_options(path: Path, what: str) -> pacsv.ConvertOptions:
    if not path.is_file():
        raise SourceError(f"{what} file not found: {path}")
    columns = _header(path, what)
    if not columns:
        raise SourceError(f"{what} file {path} is not a readable CSV: it is empty")
    return pacsv.ConvertOptions(
        column_types={name: pa.string() for name in columns}, strings_can_be_null=True, null_values=[""]
    )


def _csv_error(exc: Exception, path: Path, what: str) -> SourceError:
    first = " ".join(str(exc).split())
    if "straddling" in first:  # Arrow's words for a row that does not fit in a block
        first = f"a row is longer than {MAX_ROW_BYTES} bytes"
    return SourceError(f"{what} file {path} is not a readable CSV: {first}")


def read_csv(path: str | Path, *, what: str) -> pd.DataFrame:
    """Read a CSV with every column as text (empty cells missing), or raise `SourceError`."""
    path = Path(path)
    options = _csv_options(path, what)
    try:
        # Inside the try: a header that is not UTF-8 fails only when its names are read.
        return pacsv.read_csv(path, convert_options=options,
                              read_options=pacsv.ReadOptions(block_size=MAX_ROW_BYTES)).to_pandas()
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise _csv_error(exc, path, what) from exc


def iter_table(path: str | Path, *, what: str, rows: int, arrow: bool = False) -> Iterator[pd.DataFrame]:
    """The file as `read_table` reads it, in frames of about ``rows`` rows (at least one
    frame, empty for a file without rows), never holding more than one: the reader of
    `audit.stream`. Errors are `read_table`'s, raised when the bad part is reached. With
    ``arrow`` the frames are Arrow tables, which ``to_pandas()`` turns into `read_table`'s."""
    path = Path(path)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        if not path.is_file():
            raise SourceError(f"{what} file not found: {path}")
        try:
            parquet = pq.ParquetFile(path)
            schema = parquet.schema_arrow
            batches = parquet.iter_batches(batch_size=rows)
            yield from _gathered(batches, schema, rows, arrow)
        except (pa.ArrowException, OSError) as exc:
            first = " ".join(str(exc).split())
            raise SourceError(f"{what} file {path} is not a readable Parquet file: {first}") from exc
        return
    options = _csv_options(path, what)
    try:
        reader = pacsv.open_csv(path, convert_options=options, read_options=pacsv.ReadOptions(block_size=MAX_ROW_BYTES))
        reader.schema.names  # noqa: B018 -- decodes the header: one that is not UTF-8 fails here, not in a worker
        yield from _gathered(reader, reader.schema, rows, arrow)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise _csv_error(exc, path, what) from exc


@dataclass(frozen=True)
class CsvSlice:
    """Bytes ``start``..``end`` of a CSV file, whole lines, and the ``header`` bytes before them."""

    path: Path
    what: str
    columns: tuple[str, ...]
    header: int
    start: int
    end: int


def csv_slices(path: str | Path, *, what: str, rows: int) -> Iterator[CsvSlice]:
    """The rows of a CSV as byte ranges of about ``rows`` lines each (at least one, empty for
    a file without rows), cut at line ends: what `read_csv_slice` reads, anywhere, in any
    order. The header is parsed here, so a bad one fails now, with `read_csv`'s words; the
    rows only where they are read, but for a line longer than `MAX_ROW_BYTES` across a cut,
    found here."""
    path = Path(path)
    options = _csv_options(path, what)
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
        header = _line_end(head, 0) or len(head)
        try:
            # Arrow's words for a header it cannot read (not UTF-8, say), as `iter_table` gives them.
            columns = pacsv.read_csv(pa.py_buffer(head[:header]), convert_options=options,
                                     read_options=pacsv.ReadOptions(block_size=MAX_ROW_BYTES)).column_names
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise _csv_error(exc, path, what) from exc
        lines = max(1, head.count(b"\n", header) + head.count(b"\r", header) - head.count(b"\r\n", header))
        step = max(1, min(MAX_SLICE_BYTES, rows * (len(head) - header) // lines))
        start = header
        while True:
            end = size if size - start <= step else _cut(handle, start + step, path, what)
            yield CsvSlice(path=path, what=what, columns=tuple(columns), header=header, start=start, end=end)
            if end >= size:
                return
            start = end


def _line_end(data: bytes, position: int) -> int | None:
    """Where the first line end at or after ``position`` ends, or None."""
    found = _LINE_END.search(data, position)
    return None if found is None else found.end()


def _cut(handle, position: int, path: Path, what: str) -> int:
    """The end of the line ``position`` is in (the file's end when that line has no end)."""
    handle.seek(position)
    # One byte more than a row may have, and one for the LF of a CR LF cut between the two.
    data = handle.read(MAX_ROW_BYTES + 2)
    end = _line_end(data, 0)
    if end is not None and (end < len(data) or data[-1:] == b"\n"):
        return position + end
    if len(data) < MAX_ROW_BYTES + 2:
        return position + len(data)
    raise SourceError(f"{what} file {path} is not a readable CSV: a row is longer than {MAX_ROW_BYTES} bytes")


def read_csv_slice(part: CsvSlice) -> pa.Table:
    """A slice's rows as `read_csv` reads them (every column text), or `SourceError` in its words.
    One thread: the sweep reads slices in several processes at once already."""
    # One buffer, header and lines read into place: joining them would copy the slice again.
    text = bytearray(part.header + part.end - part.start)
    view = memoryview(text)
    with part.path.open("rb") as handle:
        got = handle.readinto(view[: part.header])
        handle.seek(part.start)
        got += handle.readinto(view[part.header:])
    options = pacsv.ConvertOptions(column_types={name: pa.string() for name in part.columns},
                                   strings_can_be_null=True, null_values=[""])
    try:
        return pacsv.read_csv(pa.py_buffer(view[:got]), convert_options=options,
                              read_options=pacsv.ReadOptions(block_size=MAX_ROW_BYTES, use_threads=False))
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        # Arrow's one-thread reader numbers the row, here from the slice's start: misleading, and
        # not in `iter_table`'s words.
        error = _csv_error(exc, part.path, part.what)
        raise SourceError(_ROW_NUMBER.sub("", str(error), count=1)) from exc


def _gathered(batches: Iterable[pa.RecordBatch], schema: pa.Schema, rows: int, arrow: bool) -> Iterator:
    """Arrow's batches (a CSV block is ~40 k rows) gathered into frames of ``rows`` or more:
    normalising a frame has a fixed cost that small ones would pay hundreds of times."""
    pending: list[pa.RecordBatch] = []
    count = 0
    any_yielded = False
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            table = pa.Table.from_batches(pending, schema=schema)
            yield table if arrow else pandas_frame(table)
            pending, count, any_yielded = [], 0, True
    if pending or not any_yielded:
        table = pa.Table.from_batches(pending, schema=schema)
        yield table if arrow else pandas_frame(table)


def read_parquet(path: str | Path, *, what: str) -> pd.DataFrame:
    """Read a Parquet file with its own column types, or raise `SourceError`."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{what} file not found: {path}")
    try:
        frame = pandas_frame(pq.read_table(path))
    except (pa.ArrowException, OSError) as exc:
        first = " ".join(str(exc).split())
        raise SourceError(f"{what} file {path} is not a readable Parquet file: {first}") from exc
    return frame


def pandas_frame(table: pa.Table) -> pd.DataFrame:
    """A table read from a file as a pandas frame, without the ``attrs`` pandas stored in the
    file's metadata: a frame written after normalisation carries its mark (`audit.frames`),
    which must not vouch for values written, or edited, since."""
    frame = table.to_pandas()
    frame.attrs.clear()
    return frame


def read_table(path: str | Path, *, what: str) -> pd.DataFrame:
    """`read_parquet` for ``.parquet`` / ``.pq``, else `read_csv`."""
    reader = read_parquet if Path(path).suffix.lower() in PARQUET_SUFFIXES else read_csv
    return reader(path, what=what)


def load_files(videos_path: str | Path, requests_path: str | Path | None = None, *, period: Period | None = None) -> Loaded:
    """Load the files; with a ``period``, keep its videos, their look-back and every
    ``generating`` row (files default to everything)."""
    videos = normalise_videos(read_table(videos_path, what="videos"), source=str(videos_path),
                              key_params=period.key_params if period is not None else ())
    requests = None
    if requests_path is not None:
        requests = normalise_requests(read_table(requests_path, what="requests"), source=str(requests_path))
    if period is not None:
        # Stuck claims are current state: generating rows stay whatever the period, as in
        # every source.
        keep = in_period(videos["created_at"], period.load_from, period.until) | (videos["status"] == "generating")
        videos = videos.loc[keep].reset_index(drop=True)
    description = f"{videos_path}" + (f" + {requests_path}" if requests_path else " (no request log)")
    return Loaded(videos=videos, requests=requests, description=description)
