"""How the audit writes numbers and times: money as money, gaps as durations, ISO times.

Kept apart from the figures and the page so a notebook, the terminal summary and the HTML
report word the same quantity the same way.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["money", "duration", "iso_utc", "FORMULA_TRIGGERS", "spreadsheet_cell", "spreadsheet_safe"]

# OWASP's CSV injection rule: a cell starting with one of these is run as a formula by Excel,
# LibreOffice or Google Sheets (=HYPERLINK(…), +cmd|…, @SUM(…), a tab or CR before them). Prompts
# are user-controlled, and the manager opens duplicates.csv in a spreadsheet.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(text: str) -> str:
    """A text cell a spreadsheet shows instead of running: a leading apostrophe (which the
    spreadsheet hides) before a formula trigger. Only text columns: a number is never a formula."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with `spreadsheet_cell` applied to its text columns, for ``to_csv``."""
    safe = frame.copy()
    for name in safe.columns:
        column = safe[name]
        if column.dtype == object or isinstance(column.dtype, pd.StringDtype):
            safe[name] = column.map(lambda v: spreadsheet_cell(v) if isinstance(v, str) else v)
    return safe


def money(usd: float) -> str:
    """``$44``, ``$18,320``, ``$4.50``: cents only when there are some."""
    if math.isclose(usd, round(usd)):
        return f"${round(usd):,}"
    return f"${usd:,.2f}"


def duration(seconds: float) -> str:
    """A gap as a person says it: ``25 s``, ``4 min``, ``3.5 h``, ``2 days``.

    Rounded to the unit: the report's gaps are there to be compared at a glance (a race is
    seconds to minutes, a sequential resend hours), not read to the second; the exact
    ``gap_seconds`` stay in ``duplicates.csv``.
    """
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return ""
    s = abs(float(seconds))
    sign = "-" if seconds < 0 else ""
    if s < 10:  # a double tap is under a second: keep the tenths
        text = f"{s:.1f}".rstrip("0").rstrip(".") + " s"
    elif s < 90:
        text = f"{s:.0f} s"
    elif s < 90 * 60:
        text = f"{s / 60:.0f} min"
    elif s < 48 * 3600:
        hours = s / 3600
        text = f"{hours:.0f} h" if hours >= 10 else f"{hours:.1f} h".replace(".0 h", " h")
    else:
        text = f"{s / 86400:.0f} days"
    return sign + text


def iso_utc(values: pd.Series) -> np.ndarray:
    """ISO 8601 text of UTC-aware times, exactly as ``Timestamp.isoformat()`` writes them
    (``2025-10-15T05:37:00+00:00``, microseconds only when non-zero), ``""`` for NaT.

    Vectorised: the per-row ``isoformat`` of a 1 M-row sweep took 1.6 s.
    """
    us = values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
    missing = np.isnat(us).tolist()
    whole = (us.astype(np.int64) % 1_000_000 == 0).tolist()
    text = np.datetime_as_string(us, unit="us").tolist()
    return np.array(
        ["" if gone else (t[:19] if w else t) + "+00:00" for t, w, gone in zip(text, whole, missing, strict=True)],
        dtype=object,
    )
