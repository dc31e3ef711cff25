"""The streaming sweep's fast normalisation: a CSV frame (every column text, as Arrow reads
it) to the canonical videos table (`audit.stream.tables.VIDEO_SCHEMA`) without a pandas frame
in between.

`audit.frames.normalise_videos` took 0.29 s of CPU per 500 k-row frame, most of it moving
columns between Arrow and pandas and back for `videos_to_arrow`: its checks and casts are
Arrow's already (`_integer_text`, `_arrow_utc`, the offset pattern, `prompt_keys`). Here the
same kernels run on the Arrow columns as read, and the table goes to the spill as it is.

This path only accepts; it never words an error. Whenever a check does not pass as the
common case passes it (a value Arrow's cast refuses, an empty id, prompt, status or
creation time, an unknown status, a time without an offset or with whitespace around it, an
id repeated in the frame, a missing column, a column that is not text), `canonical_videos`
returns None and the caller runs `normalise_videos`, which raises the error in its own words
or, where this path was only stricter (padded times, texts pandas parses and Arrow does not),
returns the canonical frame. Where both accept a frame they give the same table: same values,
types, order and schema metadata (a hypothesis test in ``tests/audit/test_stream_norm.py``
holds them equal).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.frames import _WITH_OFFSET, REQUEST_COLUMNS, REQUIRED_VIDEO_COLUMNS, STATUSES, VIDEO_COLUMNS, empty_videos
from audit.keys import prompt_keys_arrow
from audit.stream.tables import VIDEO_SCHEMA, videos_to_arrow

__all__ = ["canonical_videos", "earliest_requests"]

_TIME = pa.timestamp("us", tz="UTC")
_STATUSES = pa.array(sorted(STATUSES), type=pa.string())


@cache
def _schema() -> pa.Schema:
    """`VIDEO_SCHEMA` with the metadata `videos_to_arrow` gives every canonical frame (pandas'
    description of its dtypes, which `videos_from_arrow` reads back): the same for any frame."""
    schema = videos_to_arrow(empty_videos()).schema
    assert schema.equals(VIDEO_SCHEMA)
    return schema


def _integers(text: pa.Array, *, nullable: bool) -> pa.Array | None:
    # `audit.frames._integer_text`'s cast: it accepts only what pandas reads as the same integer.
    try:
        cast = pc.cast(text, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return None if cast.null_count and not nullable else cast


def _times(text: pa.Array, *, nullable: bool) -> pa.Array | None:
    """`audit.frames._utc`'s common case: every present value matches the offset pattern as it
    is, then Arrow's cast (whitespace around an offset, or a cast refused: None, pandas' turn)."""
    if text.null_count and not nullable:
        return None
    if text.null_count < len(text) and not _iso_seconds_with_offset(text) and \
            not pc.all(pc.match_substring_regex(text, _WITH_OFFSET)).as_py():
        return None
    try:
        return pc.cast(text, _TIME)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _iso_seconds_with_offset(text: pa.Array) -> bool:
    """Whether every value is 25 characters ending ``hh:mm:ss±hh:mm`` (as written by Python's
    ``isoformat``, pandas, the bench): each then matches `_WITH_OFFSET`. Checked on the bytes
    as a NumPy matrix, a few milliseconds where RE2 took 26 per 500 k values."""
    width = 25
    if text.null_count or not len(text):
        return False
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset: text.offset + len(text) + 1]
    first = int(offsets[0])
    if int(offsets[-1]) - first != width * len(text) or (np.diff(offsets) != width).any():
        return False
    tail = np.frombuffer(text.buffers()[2], dtype=np.uint8)[first: first + width * len(text)].reshape(-1, width)[:, 11:]
    digits = tail[:, [0, 1, 3, 4, 6, 7, 9, 10, 12, 13]]
    return bool(((digits >= ord("0")) & (digits <= ord("9"))).all() and (tail[:, [2, 5, 11]] == ord(":")).all()
                and ((tail[:, 8] == ord("+")) | (tail[:, 8] == ord("-"))).all())


def canonical_videos(table: pa.Table) -> pa.Table | None:
    """``table`` (a frame as the CSV reader gives it: text columns) as the canonical videos
    table, sorted by ``(created_at, id)``; None when `normalise_videos` must decide (see the
    module docstring)."""
    names = table.column_names
    if len(set(names)) != len(names) or any(c not in names for c in REQUIRED_VIDEO_COLUMNS):
        return None
    text = {}
    for name in VIDEO_COLUMNS:
        if name in names:
            if table.schema.field(name).type != pa.string():
                return None  # Parquet's and databases' types: pandas' checks know them all
            text[name] = table.column(name).combine_chunks()
    rows = table.num_rows
    ids = _integers(text["id"], nullable=False)
    if ids is None or not _unique(ids):
        return None
    users = _integers(text["tg_user_id"], nullable=False)
    if users is None:
        return None
    duration = text.get("duration_seconds")
    if duration is None or duration.null_count == rows:
        duration = pa.nulls(rows, pa.int64())
    else:
        duration = _integers(duration, nullable=True)
        if duration is None:
            return None
    prompt, status = text["prompt"], text["status"]
    if prompt.null_count or status.null_count or not pc.all(pc.is_in(status, value_set=_STATUSES), min_count=0).as_py():
        return None
    created = _times(text["created_at"], nullable=False)
    updated = _times(text["updated_at"], nullable=True) if "updated_at" in text else pa.nulls(rows, _TIME)
    if created is None or updated is None:
        return None
    columns = {
        "id": ids, "tg_user_id": users, "prompt": prompt, "duration_seconds": duration, "status": status,
        "created_at": created, "updated_at": updated, "prompt_key": prompt_keys_arrow(prompt),
    }
    for name in ("enhanced_prompt", "category", "video_url", "thumbnail_url"):
        columns[name] = text.get(name, pa.nulls(rows, pa.string()))
    out = pa.Table.from_arrays([columns[c] for c in VIDEO_COLUMNS], schema=_schema())
    return out if _in_order(created, ids) else out.take(pc.sort_indices(out, [("created_at", "ascending"),
                                                                               ("id", "ascending")]))


def earliest_requests(table: pa.Table) -> pa.Table | None:
    """Each video's earliest request time in ``table`` (a frame of the request log as the CSV
    reader gives it), as ``(video_id, received_at)`` in the order the videos first appear (as
    pandas' ``groupby(sort=False)``); None when `normalise_requests` must decide. Its checks
    are `normalise_requests`'s: the ids and the prompts are text whatever they hold."""
    names = table.column_names
    if len(set(names)) != len(names) or any(c not in names for c in REQUEST_COLUMNS) or \
            any(table.schema.field(c).type != pa.string() for c in REQUEST_COLUMNS):
        return None
    received = _times(table.column("received_at").combine_chunks(), nullable=False)
    users = _integers(table.column("tg_user_id").combine_chunks(), nullable=False)
    video = table.column("video_id").combine_chunks()
    video = pa.nulls(len(video), pa.int64()) if video.null_count == len(video) else _integers(video, nullable=True)
    if received is None or users is None or video is None:
        return None
    logged = pa.table({"video_id": video, "received_at": received})
    if video.null_count:
        logged = logged.filter(pc.is_valid(video))
    if _ascending(logged.column("video_id").combine_chunks()):
        return logged  # each video once (a log written in video order): its time is its earliest
    # Arrow's groups come in an order of its own: put them in the order of each video's first
    # row, as pandas does, so the spill holds the same rows in the same order.
    logged = logged.append_column("row", pa.array(np.arange(len(logged), dtype=np.int64)))
    earliest = logged.group_by("video_id", use_threads=False).aggregate([("received_at", "min"), ("row", "min")])
    earliest = earliest.take(pc.sort_indices(earliest["row_min"]))
    return pa.table({"video_id": earliest["video_id"], "received_at": earliest["received_at_min"]})


def _ascending(ids: pa.Array) -> bool:
    """Whether the ids (int64, none missing) strictly ascend, so that none repeats."""
    return bool((np.diff(ids.to_numpy()) > 0).all())


def _unique(ids: pa.Array) -> bool:
    """Whether no id repeats: at once where they ascend (files written in id order), else hashed."""
    return _ascending(ids) or pc.count_distinct(ids).as_py() == len(ids)


def _in_order(created: pa.Array, ids: pa.Array) -> bool:
    """Whether the rows are already in ``(created_at, id)`` order (files usually are): a check
    is a few milliseconds, a sort of 500 k rows ten times that."""
    if len(ids) < 2:
        return True
    time = created.view(pa.int64()).to_numpy()
    key = ids.to_numpy()
    step = np.diff(time)
    return bool(((step > 0) | ((step == 0) & (np.diff(key) > 0))).all())
