"""A shard's duplicates as the text of ``duplicates.csv`` rows and ``summary.json`` items, in Arrow.

The same text as `audit.report.duplicates_csv_lines`, and as `audit.report.summary_item_lines`
of `audit.pipeline.duplicate_records` (the in-memory sweep's writers, which the tests hold
these to byte for byte), built column by column with Arrow's string kernels and joined
row-wise by one kernel. Python lists of every field, zipped and joined per row, plus a dict
per duplicate for the JSON encoder, were a fifth of a shard's time. The columns that need
Python's own ``str`` (floats, whose ``repr`` Arrow does not write; text, which may need the
spreadsheet guard or quoting) still get it, a column at a time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from audit.report import _SPECIAL, DUPLICATE_CSV_COLUMNS, _csv_fields, _encode
from audit.words import iso_utc

__all__ = ["duplicate_texts", "iso_text"]


def _text(values) -> pa.Array:
    return values if isinstance(values, pa.Array) else pa.array(values, type=pa.string())


def _fixed_width(chars: np.ndarray, suffix: bytes) -> pa.Array:
    """Rows of ASCII code points (a 2-D array), each followed by ``suffix``, as one Arrow buffer."""
    rows, width = chars.shape[0], chars.shape[1] + len(suffix)
    data = np.empty((rows, width), dtype=np.uint8)
    data[:, : chars.shape[1]] = chars
    data[:, chars.shape[1] :] = np.frombuffer(suffix, dtype=np.uint8)
    offsets = np.arange(0, rows * width + 1, width, dtype=np.int32)
    return pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(data))


def iso_text(values: pd.Series) -> pa.Array:
    """`audit.words.iso_utc` of UTC-aware times, as Arrow text. Whole seconds and four-digit
    years (every time the sweep has met) are one ``datetime_as_string`` and a fixed-width
    buffer, without a Python string per value (``iso_utc`` built 39 k in 16 ms, four columns
    a shard); anything else goes through ``iso_utc`` itself."""
    us = values.dt.tz_convert("UTC").dt.as_unit("us").array.asi8
    seconds, fraction = np.divmod(us, 1_000_000)
    if len(us) and not fraction.any() and not (us == np.iinfo(np.int64).min).any():  # no NaT
        text = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")
        chars = text.view(np.uint32).reshape(len(text), -1)
        # "YYYY-MM-DDTHH:MM:SS", all 19 characters ASCII: what iso_utc's slice keeps.
        if chars.shape[1] >= 19 and not chars[:, 19:].any() and ((chars[:, :19] > 0) & (chars[:, :19] < 128)).all():
            return _fixed_width(chars[:, :19], b"+00:00")
    return _text(iso_utc(values))


def _float_text(values: np.ndarray) -> pa.Array | None:
    """``str`` of each float when all are whole and small (then ``repr`` is the integer and
    ``.0``), as Arrow does integers; None otherwise."""
    with np.errstate(invalid="ignore"):
        whole = np.isfinite(values).all() and (values == np.floor(values)).all() and (np.abs(values) < 1e15).all()
    if not whole or (np.signbit(values) & (values == 0)).any():  # -0.0 prints its sign
        return None
    return pc.binary_join_element_wise(pc.cast(pa.array(values.astype(np.int64)), pa.string()), ".0", "")


def _csv_column(column: pd.Series, iso: pa.Array | None) -> pa.Array:
    """One column's CSV fields, as `audit.report._csv_fields` writes them."""
    if iso is not None:
        return _text(iso)
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return iso_text(column)
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iu":
        return pc.cast(pa.array(column.to_numpy()), pa.string())  # Arrow's decimal text is str()'s
    if isinstance(column.dtype, np.dtype) and column.dtype.kind == "b":
        return pc.if_else(pa.array(column.to_numpy()), "True", "False")
    if isinstance(column.dtype, np.dtype) and column.dtype.kind == "f":
        fast = _float_text(column.to_numpy())
        if fast is not None:
            return fast
    if isinstance(column.dtype, pd.StringDtype):
        return _text_fields(pa.array(column.array, type=pa.string()).fill_null(""))
    # Anything else: each distinct value made text once (`str`, as the writer takes it).
    plain = column.dtype.kind in "biuf" and isinstance(column.dtype, np.dtype)
    codes, uniques = pd.factorize(column.to_numpy(dtype=object), use_na_sentinel=True)
    if all(type(u) is str for u in uniques):  # no 1 == 1.0 == True folded into one text
        fields = _csv_fields([*uniques.tolist(), ""], text=not plain)
        return _text(fields).take(pa.array(np.where(codes < 0, len(uniques), codes)))
    return _text(_csv_fields(column.to_numpy(dtype=object, na_value="").tolist(), text=not plain))


def _text_fields(text: pa.Array) -> pa.Array:
    """`audit.report._csv_fields` of a text column, in Arrow but for the few fields that need
    the spreadsheet guard or quoting."""
    special = pc.match_substring_regex(text, _SPECIAL)
    rows = np.flatnonzero(special.to_numpy(zero_copy_only=False))
    if not len(rows):
        return text
    fixed = _csv_fields(text.take(pa.array(rows)).to_pylist(), text=True)
    return pc.replace_with_mask(text, special, pa.array(fixed, type=pa.string()))


def _encoded(column: pd.Series) -> pa.Array:
    """JSON text of each value, encoded once per distinct value."""
    codes, uniques = pd.factorize(column.astype(object).to_numpy(), use_na_sentinel=False)
    return _text([_encode(u) for u in uniques]).take(pa.array(codes))


def duplicate_texts(classified: pd.DataFrame, *, iso: dict[str, pa.Array]) -> tuple[pa.Array, pa.Array]:
    """``(csv rows, json items)`` of ``classified`` (`audit.pipeline.run_audit`'s duplicates),
    one string per duplicate in its order. ``iso``: `iso_text` of ``created_at`` and
    ``requested_at``, which both files print."""
    table = classified.reindex(columns=DUPLICATE_CSV_COLUMNS)
    rows = pc.binary_join_element_wise(*(_csv_column(table[c], iso.get(c)) for c in table.columns), ",")
    ids = [pc.cast(pa.array(classified[c].astype("int64").to_numpy()), pa.string())
           for c in ("video_id", "original_id", "previous_id")]
    pieces = [
        '    {"video_id": ', ids[0], ', "original_id": ', ids[1], ', "previous_id": ', ids[2],
        ', "class": ', _encoded(classified["class"]), ', "basis": ', _encoded(classified["basis"]),
        ', "created_at": "', _text(iso["created_at"]), '", "requested_at": "', _text(iso["requested_at"]), '"}',
    ]
    items = pc.binary_join_element_wise(*(p if isinstance(p, pa.Array) else pa.scalar(p) for p in pieces), "")
    return rows, items
