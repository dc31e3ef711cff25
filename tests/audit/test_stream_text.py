"""`audit.stream.text` against the report's own writers (`audit.report`): the same text for
``duplicates.csv`` rows and ``summary.json`` items, fast paths and fallbacks alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from audit.pipeline import duplicate_records, run_audit
from audit.report import duplicates_csv_lines, summary_item_lines
from audit.stream.text import duplicate_texts, iso_text
from audit.synthetic import synthetic_requests, synthetic_videos
from audit.words import iso_utc


def _duplicates() -> pd.DataFrame:
    videos = synthetic_videos(4000, seed=21)
    result = run_audit(videos, synthetic_requests(videos, seed=22), as_of=datetime(2026, 1, 1, tzinfo=UTC))
    assert len(result.duplicates) > 100
    return result.duplicates


def _assert_as_the_report_writes(dups: pd.DataFrame) -> None:
    rows, items = duplicate_texts(dups, iso={c: iso_text(dups[c]) for c in ("created_at", "requested_at")})
    assert rows.to_pylist() == duplicates_csv_lines(dups)[1]
    assert items.to_pylist() == summary_item_lines(duplicate_records(dups))


def test_the_texts_are_the_reports():
    _assert_as_the_report_writes(_duplicates())
    _assert_as_the_report_writes(_duplicates().head(0))


def test_odd_values_take_the_slow_paths_to_the_same_text():
    dups = _duplicates().head(40).copy()
    dups.loc[1, "prompt"] = '=SUM(A1), "quoted"\nline'
    dups.loc[2, "prompt"] = "a,b"
    dups.loc[3, "basis"] = None
    dups.loc[4, "gap_seconds"] = 0.25
    dups.loc[5, "previous_created_at"] = pd.NaT
    dups.loc[6, "original_created_at"] = pd.Timestamp("2025-01-01T00:00:00.5+00:00")
    dups.loc[7, "requested_at"] = pd.Timestamp("1999-12-31T23:59:59.000001+00:00")
    _assert_as_the_report_writes(dups)
    dups["gap_seconds"] = -0.0
    dups["status"] = pd.Series([1, 1.0, True, "x"] * 10, dtype=object)  # equal as keys, not as text
    _assert_as_the_report_writes(dups)


def test_iso_text_is_iso_utc():
    times = pd.Series(pd.Timestamp("2025-03-01", tz="UTC") + np.arange(0, 10**6, 997) * timedelta(seconds=1))
    with_nat = pd.concat([times, pd.Series([pd.NaT], dtype=times.dtype)])
    for values in (times, times + timedelta(microseconds=3), with_nat):
        assert iso_text(values).to_pylist() == iso_utc(values).tolist()


def test_iso_text_writes_every_four_digit_year_as_iso_utc():
    rng = np.random.default_rng(5)
    first, last = -30_610_224_000, 253_402_300_799  # 1000-01-01 and 9999-12-31T23:59:59
    leap_days = [951_782_400, 951_868_800, 4_107_542_400, -2_208_988_800]  # 2000-02-29, 2000-03-01, 2100-03-01, 1900
    seconds = np.concatenate([rng.integers(first, last + 1, 100_000), [first, last, 0], leap_days])
    for span in (seconds, np.array([first - 1, last + 1])):  # and the years it leaves to iso_utc
        values = pd.Series(pd.to_datetime(span * 1_000_000, unit="us", utc=True)).dt.as_unit("us")
        assert iso_text(values).to_pylist() == iso_utc(values).tolist()
