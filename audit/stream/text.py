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

_UTC_US = pd.DatetimeTZDtype("us", "UTC")


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


def _civil(seconds: np.ndarray) -> np.ndarray | None:
    """``YYYY-MM-DDTHH:MM:SS`` of each UTC epoch second, as rows of ASCII codes, or None
    when a year has not four digits. Days to dates by Howard Hinnant's ``civil_from_days``,
    in integer NumPy passes: ``datetime_as_string`` took 7 ms for 39 k values."""
    days, clock = np.divmod(seconds, 86_400)
    era, day_of_era = np.divmod(days + 719_468, 146_097)
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = np.where(shifted_month < 10, shifted_month + 3, shifted_month - 9)
    year = year_of_era + era * 400 + (month <= 2)
    if len(year) and (year.min() < 1000 or year.max() > 9999):
        return None
    out = np.empty((len(seconds), 19), dtype=np.uint8)
    out[:, [4, 7]] = ord("-")
    out[:, 10] = ord("T")
    out[:, [13, 16]] = ord(":")
    hour, rest = np.divmod(clock, 3600)
    minute, second = np.divmod(rest, 60)
    fields = ((year, 0, 4), (month, 5, 2), (day, 8, 2), (hour, 11, 2), (minute, 14, 2), (second, 17, 2))
    for value, first, width in fields:
        for position in range(first + width - 1, first - 1, -1):
            value, digit = np.divmod(value, 10)
            out[:, position] = digit + ord("0")
    return out


def iso_text(values: pd.Series) -> pa.Array:
    """`audit.words.iso_utc` of UTC-aware times, as Arrow text. Whole seconds and four-digit
    years (every time the sweep has met) are built as digits in one fixed-width buffer,
    without a Python string per value (``iso_utc`` built 39 k in 16 ms, four columns a
    shard); anything else goes through ``iso_utc`` itself."""
    if values.dtype != _UTC_US:
        values = values.dt.tz_convert("UTC").dt.as_unit("us")
    us = values.array.asi8
    seconds, fraction = np.divmod(us, 1_000_000)
    if len(us) and not fraction.any() and not (us == np.iinfo(np.int64).min).any():  # no NaT
        chars = _civil(seconds)
        if chars is not None:
            return _fixed_width(chars, b"+00:00")
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
