"""Report writers: ``summary.json``, ``duplicates.csv``, ``report.html``, and the short text the
CLI prints. The figures live in `audit.figures` (re-exported here) so the notebooks draw the
same ones; the page itself in `audit.report_page`.

Order matters: `write_reports` writes the data files (``summary.json``, ``duplicates.csv``)
before it renders the page, so a failure in rendering (a plotting library refusing a figure)
still leaves the sweep's findings on disk for whoever reads them next.
"""

from __future__ import annotations

import csv
import io
import json
from operator import itemgetter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from audit.pipeline import AuditResult
from audit.words import FORMULA_TRIGGERS, iso_utc, spreadsheet_cell
from service.redact import redact_text

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc's from Python 3.12

__all__ = [
    "DUPLICATE_CSV_COLUMNS",
    "timeline_figure",
    "waste_by_class_figure",
    "waste_by_week_figure",
    "summary_text",
    "summary_json",
    "summary_json_chunks",
    "summary_item_lines",
    "duplicates_csv_lines",
    "duplicates_csv",
    "render_html",
    "write_data",
    "write_page",
    "write_reports",
]

# The figures are re-exported for the notebooks, loaded on first use (PEP 562): plotly is
# 0.1 s of import that the sweep's workers, which write this module's text, never draw.
_FIGURES = ("timeline_figure", "waste_by_class_figure", "waste_by_week_figure")


def __getattr__(name: str) -> Any:
    if name in _FIGURES:
        import audit.figures

        return getattr(audit.figures, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

DUPLICATE_CSV_COLUMNS = [
    "video_id",
    "original_id",
    "previous_id",
    "class",
    "basis",
    "tg_user_id",
    "prompt",
    "status",
    "requested_at",
    "created_at",
    "original_created_at",
    "previous_created_at",
    "gap_seconds",
    "cost_usd",
    "prevented_by_check",
    "prevented_by_pending",
    "prevented_by_claim",
]


def summary_text(result: AuditResult) -> str:
    """A few lines for a terminal."""
    s = result.summary
    classes = ", ".join(f"{n} {c}" for c, n in s["by_class"].items())
    lines = [
        f"Scanned {s['videos_scanned']} videos: {s['duplicate_count']} duplicates ({classes}), "
        f"${s['wasted_usd']:.2f} wasted at ${s['cost_per_video']:.2f} per video.",
    ]
    if s["classification_basis"] != "request_log":
        lines.append(f"Classification is an estimate: {s['estimate_assumption']}.")
    prevented = ", ".join(
        f"{p['policy']} {p['duplicates_prevented']} (${p['wasted_usd']:.2f} left)" for p in s["policies"]
    )
    lines.append(f"Prevented per policy: {prevented}.")
    lines.append(f"Stuck claims: {len(s['stuck_claims'])}.")
    if s.get("near_duplicates") is not None:
        lines.append(f"Near-duplicates (listed, not counted): {len(s['near_duplicates'])}.")
    return "\n".join(lines)


def summary_json(summary: dict[str, Any]) -> str:
    """``summary.json``'s text: one key per line, one list item per line.

    ``json.dumps(indent=2)`` runs the pure-Python encoder (2.6 s for a 1 M-row sweep's
    summary); the C encoder runs only without ``indent``, so each scalar and each list item
    is encoded by it and the lines are joined here.
    """
    return "".join(summary_json_chunks(summary))


_encode = json.JSONEncoder(default=str, ensure_ascii=True).encode


# Encodes a list with a line end between its items: the C encoder escapes every line end
# inside a value (``ensure_ascii``), so the raw ones are exactly the separators.
_encode_lines = json.JSONEncoder(default=str, ensure_ascii=True, separators=("\n", ": ")).encode


def summary_item_lines(items: list) -> list[str]:
    """The lines of a list's items in ``summary.json`` (indented, no separators)."""
    return _record_lines(items) or ["    " + _encode(item) for item in items]


def _record_lines(items: list) -> list[str] | None:
    """`summary_item_lines` of records (dicts with the same text keys in the same order, such
    as the stuck claims: 0.17 s one by one for a 3 M-row sweep's 59 k), a column at a time:
    one encoder call per key, then one format per row. None for anything else, and when a value
    turned out to be a list or dict of two or more items (its own separators would be line
    ends, so a column's count of lines tells): those take the per-item path."""
    if len(items) < 2 or set(map(type, items)) != {dict}:
        return None
    keys = tuple(items[0])
    if not keys or set(map(type, keys)) != {str} or not all(map(keys.__eq__, map(tuple, items))):
        return None
    columns = []
    for key in keys:
        text = _encode_lines(list(map(itemgetter(key), items)))[1:-1].split("\n")
        if len(text) != len(items):
            return None
        columns.append(text)
    template = "    {{" + ", ".join(_encode(key).replace("{", "{{").replace("}", "}}") + ": {}" for key in keys) + "}}"
    return list(map(template.format, *columns))


def summary_json_chunks(
    summary: dict[str, Any], *, streamed: dict[str, tuple[int, Iterable[list[str] | Buffer]]] | None = None
) -> Iterator[str | Buffer]:
    """`summary_json`'s text in pieces whose concatenation is that text. A key in
    ``streamed`` takes its list from ``(count, blocks)`` instead of ``summary``: blocks of
    `summary_item_lines`, in order, ``count`` lines in all (`audit.stream` writes the
    duplicates of 100 M rows this way, without holding them). A block may instead be its lines'
    UTF-8 text already joined by ``,\\n`` (bytes-like, never empty), yielded as it is, so no
    string is made of it. Each piece is whole lines."""
    streamed = streamed or {}
    keys = list(summary)
    yield "{\n"
    for index, key in enumerate(keys):
        end = ",\n" if index < len(keys) - 1 else "\n}\n"
        value = summary[key]
        if key in streamed and streamed[key][0]:
            yield f"  {_encode(key)}: [\n"
            first = True
            for block in streamed[key][1]:
                if isinstance(block, list) and block:
                    yield ("" if first else ",\n") + ",\n".join(block)
                    first = False
                elif not isinstance(block, list):
                    if not first:
                        yield ",\n"
                    yield block
                    first = False
            yield f"\n  ]{end}"
        elif key in streamed:
            yield f"  {_encode(key)}: []{end}"
        elif isinstance(value, list) and value:
            yield f"  {_encode(key)}: [\n" + ",\n".join(summary_item_lines(value)) + f"\n  ]{end}"
        else:
            yield f"  {_encode(key)}: {_encode(value)}{end}"
    if not keys:
        yield "\n}\n"


def _csv_quoted(text: str) -> str:
    """``text`` as the `csv` writer writes a field (with `DataFrame.to_csv`'s dialect)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([text, ""])  # two fields: no one-field rule
    return buffer.getvalue()[:-2]


_SPECIAL = "^[" + "".join("\\" + c if c in "-" else c for c in FORMULA_TRIGGERS) + r']|[,"\r\n]'


def _csv_fields(values: list, *, text: bool) -> list[str]:
    """One column's fields: ``str`` of each value, as the `csv` writer takes it; in a ``text``
    column the few that start like a formula neutralised (`audit.words.spreadsheet_cell`),
    and those that hold a delimiter, a quote or a line break quoted by the writer itself
    (numbers, booleans and ISO times never do either)."""
    fields = list(map(str, values))
    if text:
        special = pc.match_substring_regex(pa.array(fields, type=pa.string()), _SPECIAL)
        for i in np.flatnonzero(special.to_numpy(zero_copy_only=False)).tolist():
            fields[i] = _csv_quoted(spreadsheet_cell(fields[i]))
    return fields


def duplicates_csv(duplicates: pd.DataFrame) -> str:
    """``duplicates.csv``: `DUPLICATE_CSV_COLUMNS`, times as ISO 8601 with ``+00:00`` (the form
    the fixtures use and the loaders accept), missing values empty.

    The text ``DataFrame.to_csv`` writes (the `csv` module's quoting, values as ``str`` gives
    them), joined column-wise: ``to_csv`` took 0.7 s for a 1 M-row sweep's 90 k duplicates,
    most of it in the writer's per-field work, where nearly no field needs quoting."""
    header, rows = duplicates_csv_lines(duplicates)
    return "\n".join([header, *rows]) + "\n"


def duplicates_csv_lines(duplicates: pd.DataFrame) -> tuple[str, list[str]]:
    """`duplicates_csv`'s header and one text per row, without line ends (a quoted prompt
    may hold a line break, so a row is not always one line of the file)."""
    table = duplicates.reindex(columns=DUPLICATE_CSV_COLUMNS)
    columns = []
    for name in table.columns:
        column = table[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            columns.append(_csv_fields(iso_utc(column).tolist(), text=False))
        else:
            plain = column.dtype.kind in "biuf" and isinstance(column.dtype, np.dtype)
            columns.append(_csv_fields(column.to_numpy(dtype=object, na_value="").tolist(), text=not plain))
    return ",".join(_csv_fields(list(table.columns), text=True)), list(map(",".join, zip(*columns, strict=True)))


def render_html(result: AuditResult, *, source: str) -> str:
    """The whole report as one HTML string (plotly.js inline once)."""
    from audit.report_page import render_page  # plotly.io is imported only when a page is drawn

    return render_page(result, source=source)


def write_data(result: AuditResult, out_dir: str | Path, *, source: str) -> dict[str, Path]:
    """Write ``summary.json`` and ``duplicates.csv`` into ``out_dir`` (created if missing).
    Secrets are masked in all of ``summary.json`` (its source names a database URL, its notes
    may quote one): `service.redact`, the rule the service's logs follow."""
    out = Path(out_dir)
    paths = {"summary": out / "summary.json", "duplicates": out / "duplicates.csv"}
    summary = redact_text(summary_json({"source": source, **result.summary}))
    table = duplicates_csv(result.duplicates)
    out.mkdir(parents=True, exist_ok=True)
    paths["summary"].write_text(summary)
    paths["duplicates"].write_text(table)
    return paths


def write_page(result: AuditResult, out_dir: str | Path, *, source: str) -> Path:
    """Render and write ``report.html`` into ``out_dir``."""
    path = Path(out_dir) / "report.html"
    path.write_text(render_html(result, source=redact_text(source)))
    return path


def write_reports(result: AuditResult, out_dir: str | Path, *, source: str) -> dict[str, Path]:
    """Write ``summary.json`` and ``duplicates.csv``, then ``report.html``, into ``out_dir``.

    The data files are written before the page is rendered: an exception while rendering
    propagates, and the findings are already on disk (see the module docstring).
    """
    paths = write_data(result, out_dir, source=source)
    paths["report"] = write_page(result, out_dir, source=source)
    return paths
