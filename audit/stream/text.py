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

from audit.report import DUPLICATE_CSV_COLUMNS, _csv_fields, _encode
from audit.words import iso_utc

__all__ = ["duplicate_texts"]


def _text(values) -> pa.Array:
    return pa.array(values, type=pa.string())


def _csv_column(column: pd.Series, iso: list[str] | None) -> pa.Array:
    """One column's CSV fields, as `audit.report._csv_fields` writes them."""
    if iso is not None:
        return _text(iso)
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return _text(iso_utc(column))
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iu":
        return pc.cast(pa.array(column.to_numpy()), pa.string())  # Arrow's decimal text is str()'s
    if isinstance(column.dtype, np.dtype) and column.dtype.kind == "b":
        return pc.if_else(pa.array(column.to_numpy()), "True", "False")
    plain = column.dtype.kind in "biuf" and isinstance(column.dtype, np.dtype)
    return _text(_csv_fields(column.to_numpy(dtype=object, na_value="").tolist(), text=not plain))


def _encoded(column: pd.Series) -> pa.Array:
    """JSON text of each value, encoded once per distinct value."""
    codes, uniques = pd.factorize(column.astype(object).to_numpy(), use_na_sentinel=False)
    return _text([_encode(u) for u in uniques]).take(pa.array(codes))


def duplicate_texts(classified: pd.DataFrame, *, iso: dict[str, list[str]]) -> tuple[pa.Array, pa.Array]:
    """``(csv rows, json items)`` of ``classified`` (`audit.pipeline.run_audit`'s duplicates),
    one string per duplicate in its order. ``iso``: `iso_utc` text of ``created_at`` and
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
