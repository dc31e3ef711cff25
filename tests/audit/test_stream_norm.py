"""The streaming sweep's Arrow normalisation (`audit.stream.arrow_frames`) against
`normalise_videos`, the reference: on frames it accepts, the same table (values, types, order,
schema metadata); on every other frame, `normalise_videos` decides, so a refusal is worded as
the in-memory load words it, and a frame the fast path was only stricter about is accepted."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.frames import _WITH_OFFSET, STATUSES, SchemaError, normalise_requests, normalise_videos
from audit.sources.base import Period
from audit.stream.arrow_frames import _iso_seconds_with_offset, canonical_videos, earliest_requests
from audit.stream.partition import _canonical_videos, _earliest_by_pandas
from audit.stream.tables import videos_to_arrow
from tests.audit.conftest import REQUESTS_CSV, VIDEOS_CSV
from tests.audit.test_stream import reference, streamed

SOURCE = "videos.csv"


def text_table(columns: dict[str, list[str | None]]) -> pa.Table:
    """A frame as the CSV reader gives it: every column text, empty cells missing."""
    return pa.table({name: pa.array(values, type=pa.string()) for name, values in columns.items()})


def reference_table(table: pa.Table) -> pa.Table:
    return videos_to_arrow(normalise_videos(table.to_pandas(), source=SOURCE))


def assert_same_table(got: pa.Table, want: pa.Table) -> None:
    assert got.schema.equals(want.schema, check_metadata=True)
    assert got.combine_chunks().equals(want.combine_chunks())


# Every form of time with an offset the bench, Python, pandas and PostgreSQL write.
FORMS = [
    lambda t: t.isoformat(),
    lambda t: t.isoformat(sep=" "),
    lambda t: t.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(),
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ"),
    lambda t: t.strftime("%Y-%m-%d %H:%M:%S+00"),
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%f-0000"),
    lambda t: t.strftime("%Y-%m-%dT%H:%M+00:00"),
]
moments = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC))
texts = st.text(alphabet=st.sampled_from([*"aAbB .!?", "\t", "\x1c", "é", "Ｓ", "…", "ß"]), max_size=8)
optional = st.none() | st.text(alphabet="xyz/:", min_size=1, max_size=5)


@st.composite
def valid_frames(draw) -> pa.Table:
    rows = draw(st.integers(min_value=0, max_value=30))
    ids = draw(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), min_size=rows, max_size=rows,
                        unique=True))
    if draw(st.booleans()):
        ids.sort()  # files in id order: the uniqueness check's shortcut
    form = draw(st.sampled_from(FORMS))  # one form a column, as files have it; sometimes a second
    other = draw(st.sampled_from(FORMS))
    created = [draw(moments) for _ in range(rows)]
    if draw(st.booleans()):
        created.sort()  # in time order: the sort's shortcut
    times = [(form if draw(st.integers(0, 9)) else other)(t) for t in created]
    columns: dict[str, list] = {
        "id": [str(i) for i in ids],
        "tg_user_id": [str(draw(st.integers(min_value=-(2**63), max_value=2**63 - 1))) for _ in range(rows)],
        "prompt": [draw(texts | st.sampled_from(["Cat video", "cat video!", "Ｃat video…"])) for _ in range(rows)],
        "status": [draw(st.sampled_from(STATUSES)) for _ in range(rows)],
        "created_at": times,
    }
    if draw(st.booleans()):
        columns["updated_at"] = [None if draw(st.booleans()) else form(t) for t in created]
    if draw(st.booleans()):
        columns["duration_seconds"] = [draw(st.none() | st.integers(0, 600).map(str)) for _ in range(rows)]
    for name in ("enhanced_prompt", "category", "video_url", "thumbnail_url", "extra"):
        if draw(st.booleans()):
            columns[name] = [draw(optional) for _ in range(rows)]
    names = list(columns)
    order = draw(st.permutations(names))
    return text_table({name: columns[name] for name in order})


@settings(max_examples=300, deadline=None)
@given(valid_frames())
def test_the_fast_path_gives_normalise_videos_table(table):
    got = canonical_videos(table)
    assert got is not None
    assert_same_table(got, reference_table(table))


def fixture_frame() -> dict[str, list]:
    frame = pd.read_csv(VIDEOS_CSV, dtype=str)
    return {c: [None if pd.isna(v) else v for v in frame[c]] for c in frame.columns}


def with_cell(column: str, value: str | None, row: int = 7) -> pa.Table:
    columns = fixture_frame()
    columns[column][row] = value
    return text_table(columns)


REFUSED = {
    "unknown status": with_cell("status", "lost"),
    "empty status": with_cell("status", None),
    "naive time": with_cell("created_at", "2025-10-15 10:30:00"),
    "hour and offset only": with_cell("created_at", "2025-10-15T10Z"),  # Arrow's cast accepts it
    "empty time": with_cell("created_at", None),
    "not a time": with_cell("created_at", "2025-13-45T10:00:00+00:00"),
    "naive update": with_cell("updated_at", "2025-10-15 10:30:00"),
    "empty prompt": with_cell("prompt", None),
    "empty id": with_cell("id", None),
    "id not a number": with_cell("id", "seven"),
    "repeated id": with_cell("id", fixture_frame()["id"][3]),
    "user past 64 bits": with_cell("tg_user_id", str(2**70)),
    "duration not whole": with_cell("duration_seconds", "1.5"),
    "missing column": text_table({k: v for k, v in fixture_frame().items() if k != "status"}),
}


@pytest.mark.parametrize("table", REFUSED.values(), ids=REFUSED.keys())
def test_a_refusal_is_worded_as_the_in_memory_load_words_it(table):
    assert canonical_videos(table) is None
    assert_same_refusal(lambda: _canonical_videos(table, SOURCE),
                        lambda: normalise_videos(table.to_pandas(), source=SOURCE))


def assert_same_refusal(streamed, loaded) -> None:
    """Both calls refuse, in the same words."""
    with pytest.raises(SchemaError) as streamed_error:
        streamed()
    with pytest.raises(SchemaError) as loaded_error:
        loaded()
    assert str(streamed_error.value) == str(loaded_error.value)


STRICTER = {
    "padded time": with_cell("created_at", "  2025-10-15T05:30:00+00:00 \t"),
    "all updates empty": text_table(fixture_frame() | {"updated_at": [None] * 56}),
}


@pytest.mark.parametrize("table", STRICTER.values(), ids=STRICTER.keys())
def test_where_the_fast_path_is_only_stricter_normalise_videos_accepts(table):
    assert_same_table(_canonical_videos(table, SOURCE), reference_table(table))


def test_typed_frames_take_normalise_videos():
    """A Parquet file's frame keeps its types: integers and UTC times, not text."""
    frame = normalise_videos(pd.read_csv(VIDEOS_CSV, dtype=str)).drop(columns="prompt_key")
    # Without pandas' metadata: it would carry the frame's mark of normalisation along.
    typed = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    assert canonical_videos(typed) is None
    assert_same_table(_canonical_videos(typed, SOURCE), reference_table(typed))


@pytest.mark.parametrize(("column", "value"), [("status", "lost"), ("created_at", "2025-10-15 10:30:00"),
                                               ("id", "")])
def test_a_bad_cell_in_a_streamed_file_is_the_in_memory_sweeps_error(tmp_path, column, value):
    frame = pd.read_csv(VIDEOS_CSV, dtype=str)
    frame.loc[40, column] = value
    path = tmp_path / "videos.csv"
    frame.to_csv(path, index=False)
    assert_same_refusal(lambda: streamed(path, None, tmp_path / "out", Period(), shards=2),
                        lambda: reference(path, None, tmp_path / "memory", Period()))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 24), st.sampled_from([*"0123456789:+-TZ. \t", "é"]))
def test_the_shape_check_of_times_implies_the_offset_pattern(position, char):
    """`_iso_seconds_with_offset` is the pattern's shortcut: what it accepts, the pattern matches."""
    value = "2025-10-15T10:00:00+05:30"
    value = value[:position] + char + value[position + 1:]
    if _iso_seconds_with_offset(pa.array([value])):
        assert re.search(_WITH_OFFSET, value)


@st.composite
def valid_logs(draw) -> pa.Table:
    rows = draw(st.integers(min_value=0, max_value=30))
    form = draw(st.sampled_from(FORMS))
    video = st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str) | st.sampled_from(["1", "2"])
    videos = [draw(video) for _ in range(rows)]
    if draw(st.booleans()):  # a log in video order, each once: the group-by's shortcut
        videos = [str(v) for v in sorted({int(v) for v in videos if v is not None})]
        rows = len(videos)
    columns = {
        "request_id": [draw(st.none() | st.text(max_size=4)) for _ in range(rows)],
        "received_at": [form(draw(moments)) for _ in range(rows)],
        "tg_user_id": [str(draw(st.integers(min_value=0, max_value=2**40))) for _ in range(rows)],
        "prompt": [draw(st.none() | texts) for _ in range(rows)],
        "video_id": videos,
    }
    return text_table({name: columns[name] for name in draw(st.permutations(list(columns)))})


@settings(max_examples=300, deadline=None)
@given(valid_logs())
def test_the_earliest_request_times_are_pandas(table):
    got = earliest_requests(table)
    assert got is not None
    assert got.combine_chunks().equals(_earliest_by_pandas(table, SOURCE)[2].combine_chunks())


LOG = {c: [None if pd.isna(v) else v for v in pd.read_csv(REQUESTS_CSV, dtype=str)[c]]
       for c in pd.read_csv(REQUESTS_CSV, dtype=str).columns}
REFUSED_LOGS = {
    "naive time": text_table(LOG | {"received_at": ["2025-10-15 10:30:00", *LOG["received_at"][1:]]}),
    "empty time": text_table(LOG | {"received_at": [None, *LOG["received_at"][1:]]}),
    "user not a number": text_table(LOG | {"tg_user_id": ["seven", *LOG["tg_user_id"][1:]]}),
    "video past 64 bits": text_table(LOG | {"video_id": [str(2**64), *LOG["video_id"][1:]]}),
    "missing column": text_table({k: v for k, v in LOG.items() if k != "received_at"}),
}


@pytest.mark.parametrize("table", REFUSED_LOGS.values(), ids=REFUSED_LOGS.keys())
def test_a_request_log_refusal_is_worded_as_the_in_memory_load_words_it(table):
    assert earliest_requests(table) is None
    assert_same_refusal(lambda: _earliest_by_pandas(table, SOURCE),
                        lambda: normalise_requests(table.to_pandas(), source=SOURCE))
