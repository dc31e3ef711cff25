"""The report's weeks: one definition for the "last 7 days" table and the weekly chart.

A week is 7 days counted back from the end of the sweep's period, not a calendar week: week 0
is ``(end - 7 days, end]``, week 1 the 7 days before it, and so on. A sweep run on a Wednesday
then compares the 7 days up to that Wednesday with the 7 before, and the chart's last bar is
exactly the table's "last 7 days" column: calendar weeks in the chart next to a table that
counts back from the end disagreed on every sweep not ending on a Sunday night.

The end is the period's ``until``, else the latest video scanned, else the as-of time
(`period_end`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["WEEK", "period_end", "week_number", "week_bounds", "week_label"]

WEEK = timedelta(days=7)
_MICROSECOND = timedelta(microseconds=1)


def period_end(summary: dict[str, Any], videos: pd.DataFrame) -> datetime:
    """The instant the report's weeks count back from (see the module docstring)."""
    if summary.get("until") is not None:
        return pd.Timestamp(summary["until"]).to_pydatetime()
    if len(videos):
        return videos["created_at"].max().to_pydatetime()
    return pd.Timestamp(summary["as_of"]).to_pydatetime()


def week_number(times: pd.Series, end: datetime) -> pd.Series:
    """0 for times in ``(end - 7 days, end]``, 1 for the 7 days before, …; -1 after ``end``."""
    # Whole microseconds, floor-divided: exact at the boundaries, where a float ratio is not.
    back = (pd.Timestamp(end) - times.dt.tz_convert("UTC")).dt.as_unit("us").array.asi8
    number = np.maximum(back // (WEEK // _MICROSECOND), -1)
    return pd.Series(number, index=times.index, dtype=np.int64)


def week_bounds(end: datetime, number: int) -> tuple[datetime, datetime]:
    """``(start, stop)`` of week ``number``: the times ``start < t <= stop``."""
    stop = pd.Timestamp(end).to_pydatetime() - number * WEEK
    return stop - WEEK, stop


def week_label(end: datetime, number: int) -> str:
    """The days week ``number`` covers, as a person reads them: ``9 Oct – 15 Oct 2025``.

    A stop at midnight does not count that day (nothing of it is in the week), and the
    start is open, so its first day is the one just after it."""
    start, stop = week_bounds(end, number)
    first = (start + _MICROSECOND).date()
    last = (stop - _MICROSECOND).date() if stop.time() == datetime.min.time() else stop.date()
    year = "" if first.year == last.year else f" {first.year}"
    return f"{first.day} {first:%b}{year} – {last.day} {last:%b %Y}"
