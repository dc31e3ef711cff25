"""The report's figures and text, from the fixtures."""

from __future__ import annotations

import pytest

from audit.pipeline import run_audit
from audit.report import summary_text, timeline_figure, waste_by_class_figure, waste_by_week_figure
from tests.audit.conftest import AS_OF


@pytest.fixture
def result(fixture_videos, fixture_requests):
    return run_audit(fixture_videos, fixture_requests, as_of=AS_OF)


def test_timeline_shows_each_race_chain_with_the_incident_first(result):
    fig = timeline_figure(result.race_windows)
    bars = {label for trace in fig.data for label in trace.y}
    assert bars == {f"video {v} (chain {c})" for v, c in [(43, 43), (45, 43), (44, 44), (46, 44), (54, 54), (55, 54), (56, 54)]}
    # Newest chain first: the incident's panel is the top one.
    incident = [t for t in fig.data if any("chain 54" in y for y in t.y)]
    assert {t.name for t in incident} == {"original", "race"}
    # Newest chain on top: the incident's panel has the highest y domain.
    def bottom(trace) -> float:
        return fig.layout["yaxis" + trace.yaxis[1:]].domain[0]

    assert bottom(incident[0]) == max(bottom(t) for t in fig.data)


def test_timeline_without_races_says_so(fixture_videos, fixture_requests):
    sequential_only = run_audit(fixture_videos.query("id.astype('int') < 54"), fixture_requests, as_of=AS_OF)
    sequential_only.race_windows = sequential_only.race_windows[sequential_only.race_windows["chain_id"] != 43]
    sequential_only.race_windows = sequential_only.race_windows[sequential_only.race_windows["chain_id"] != 44]
    assert timeline_figure(sequential_only.race_windows).layout.title.text == "Race windows: none"


def test_waste_figures_add_up_to_the_summary(result):
    by_class = waste_by_class_figure(result.duplicates)
    assert dict(zip(by_class.data[0].x, by_class.data[0].y)) | dict(zip(by_class.data[1].x, by_class.data[1].y)) == {
        "sequential": 28.0,
        "race": 16.0,
    }
    by_week = waste_by_week_figure(result.duplicates)
    weeks = {x for trace in by_week.data for x in trace.x}
    assert weeks == {"2025-10-13"}  # 45-56 all fall in the week starting Monday 13 October
    assert sum(sum(trace.y) for trace in by_week.data) == result.summary["wasted_usd"]


def test_summary_text_is_short_and_has_the_numbers(result):
    text = summary_text(result)
    assert len(text.splitlines()) <= 5
    assert "11 duplicates (7 sequential, 4 race), $44.00 wasted" in text
    assert "claim 11 ($0.00 left)" in text
