"""Choosing the window and the key (`audit.tuning`, ``python -m audit tune``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from audit.cli import main
from audit.frames import normalise_videos
from audit.synthetic import synthetic_requests, synthetic_videos
from audit.tuning import blocked_repeats, near_groups, tune
from audit.tuning_page import tuning_figure
from tests.audit.conftest import EXPECTED_DUPLICATES, REQUESTS_CSV, VIDEOS_CSV

T0 = datetime(2025, 10, 14, 8, 0, tzinfo=UTC)


def history(*rows: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(id, user, prompt, status, requested at +hours, delivered at +hours)."""
    videos = pd.DataFrame(
        [{"id": i, "tg_user_id": u, "prompt": p, "status": s, "created_at": T0 + timedelta(hours=d),
          "updated_at": T0 + timedelta(hours=d)} for i, u, p, s, _, d in rows]
    )
    requests = pd.DataFrame(
        [{"request_id": f"r{i}", "received_at": T0 + timedelta(hours=r), "tg_user_id": u, "prompt": p, "video_id": i}
         for i, u, p, _, r, _ in rows]
    )
    return videos, requests


def row(table: pd.DataFrame, key: str, hours: float) -> pd.Series:
    return table.set_index(["key", "window_hours"]).loc[(key, hours)]


def test_todays_setting_blocks_exactly_the_sweeps_duplicates(fixture_videos, fixture_requests):
    table = tune(fixture_videos, fixture_requests)
    today = table.loc[table["current"]]
    assert today[["key", "window_hours"]].values.tolist() == [["prompt_key", 24.0]]
    assert int(today["blocked"].iloc[0]) == len(EXPECTED_DUPLICATES)
    # Wider windows and looser keys never block less.
    for _, rows in table.groupby("key"):
        assert rows["blocked"].is_monotonic_increasing
    for hours in table["window_hours"].unique():
        blocked = [row(table, k, hours)["blocked"] for k in ("exact", "prompt_key", "near≥90")]
        assert blocked == sorted(blocked)


def test_a_repeat_long_after_delivery_looks_intended_and_a_mistake_does_not():
    videos, requests = history(
        (1, 7, "A cat", "ready", 0, 0.05),
        (2, 7, "A cat", "ready", 0.01, 0.06),  # a double tap while 1 generated: a mistake
        (3, 7, "a cat!", "ready", 2, 2.05),  # 2 h after 2 arrived: a mistake by the proxy (6 h)
        (4, 7, "A cat", "ready", 10, 10.05),  # 8 h after 3 arrived: intended
        (5, 8, "A dog", "failed", 0, 0.05),
        (6, 8, "A dog", "ready", 0.5, 0.55),  # after a failure: never blocked
    )
    table = tune(videos, requests, windows=(timedelta(hours=1), timedelta(hours=24)))
    one_hour, day = row(table, "prompt_key", 1.0), row(table, "prompt_key", 24.0)
    assert (one_hour["blocked"], one_hour["caught"], one_hour["intended_blocked"]) == (1, 1, 0)
    assert (day["blocked"], day["caught"], day["intended_blocked"], day["users_annoyed"]) == (3, 2, 1, 1)
    assert day["caught_usd"] == 8.0 and day["intended_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert row(table, "exact", 24.0)["blocked"] == 2  # "a cat!" is not the exact text
    later = tune(videos, requests, windows=(timedelta(hours=24),), intended_after=timedelta(hours=9))
    assert row(later, "prompt_key", 24.0)["intended_blocked"] == 0  # 8 h is not 9
    counted = tune(videos, requests, windows=(timedelta(hours=24),), since=T0 + timedelta(hours=1))
    assert row(counted, "prompt_key", 24.0)["blocked"] == 2  # 3 and 4; 2 is before the period


def test_blocked_repeats_lists_what_one_setting_blocks_with_the_verdict():
    videos, requests = history(
        (1, 7, "A cat", "ready", 0, 0.05),
        (2, 7, "A cat", "ready", 0.01, 0.06),  # asked before 1 was delivered: no hours
        (3, 7, "a cat!", "ready", 10, 10.05),  # 9.9 h after 2 arrived: intended
        (4, 8, "A dog", "failed", 0, 0.05),
        (5, 8, "A dog", "ready", 0.5, 0.55),  # after a failure: never blocked
    )
    repeats = blocked_repeats(videos, requests)
    assert repeats[["video_id", "earlier_id", "looks_intended"]].values.tolist() == [[2, 1, False], [3, 2, True]]
    assert np.isnan(repeats["hours_after_delivery"].iloc[0]) and repeats["hours_after_delivery"].iloc[1] == 9.9
    # Its rows are the table's: the same counts for every key and window.
    table = tune(videos, requests, windows=(timedelta(hours=1), timedelta(hours=24)))
    for key in ("exact", "prompt_key"):
        for hours in (1.0, 24.0):
            listed = blocked_repeats(videos, requests, window=timedelta(hours=hours), key=key)
            assert (len(listed), int(listed["looks_intended"].sum())) == (
                row(table, key, hours)["blocked"], row(table, key, hours)["intended_blocked"])
    with pytest.raises(ValueError, match="unknown key"):
        blocked_repeats(videos, requests, key="fuzzy")


def test_near_duplicates_group_one_users_similar_prompts():
    videos = normalise_videos(pd.DataFrame({
        "id": [1, 2, 3, 4],
        "tg_user_id": [7, 7, 7, 8],
        "prompt": ["A red sports car driving through the desert", "A blue sports car driving through the desert",
                   "Koi fish in a pond", "A red sports car driving through the desert"],
        "status": "ready",
        "created_at": [T0 + timedelta(minutes=m) for m in range(4)],
    }))
    groups = near_groups(videos, threshold=90)
    assert groups[0] == groups[1] and len({groups[0], groups[2], groups[3]}) == 3  # user 8 is another user
    apart = near_groups(videos, threshold=95)
    assert apart[0] != apart[1]


def test_the_vectorised_pass_agrees_with_a_plain_loop():
    videos = normalise_videos(synthetic_videos(3000, seed=4, users=40, prompts_per_user=4, days=10))
    requests = synthetic_requests(videos, seed=4)
    table = tune(videos, requests, windows=(timedelta(hours=6), timedelta(hours=30)))
    ready_at = dict(zip(videos["id"], videos["updated_at"], strict=True))
    asked = dict(zip(requests["video_id"], requests["received_at"], strict=True))
    for hours in (6, 30):
        blocked = intended = 0
        last: dict = {}
        for v in videos.itertuples():
            earlier = last.get((v.tg_user_id, v.prompt_key))
            if earlier is not None and v.created_at - earlier.created_at <= timedelta(hours=hours):
                blocked += 1
                late = asked[v.id] - ready_at[earlier.id] > timedelta(hours=6)
                intended += earlier.status == "ready" and late
            if v.status != "failed":
                last[(v.tg_user_id, v.prompt_key)] = v
        got = row(table, "prompt_key", float(hours))
        assert (got["blocked"], got["intended_blocked"]) == (blocked, intended)
        assert blocked > intended
        assert intended > 0 or hours == 6  # a 6 h window cannot hold a repeat asked 6 h after delivery


def test_the_chart_marks_today_and_merges_windows_that_land_on_one_spot(fixture_videos, fixture_requests):
    fig = tuning_figure(tune(fixture_videos, fixture_requests))
    today = next(t for t in fig.data if t.name.startswith("today"))
    assert (list(today.x), list(today.y)) == ([5], [24.0])
    keyed = next(t for t in fig.data if t.name == "prompt_key")
    assert list(keyed.text) == ["1 h–12 h", "24 h", "48 h–7 d"]


def test_tune_command_prints_and_writes_the_table(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["tune", "--videos", str(VIDEOS_CSV), "--requests", str(REQUESTS_CSV), "--out", str(out),
                 "--as-of", "2025-10-20T00:00:00+00:00"]) == 0
    printed = capsys.readouterr().out
    assert "prompt_key 24 h *      11      6      $24                5             5            45%" in printed
    rows = json.loads((out / "tuning.json").read_text())["rows"]
    assert len(rows) == 3 * 8 and pd.read_csv(out / "tuning.csv").shape == (24, 10)
    assert "plotly.js v" in (out / "tuning.html").read_text()


@pytest.mark.parametrize(("flag", "value"), [("--windows", "24,-1"), ("--similarity", "120"), ("--windows", "a day")])
def test_bad_tune_flags_exit_2(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as done:
        main(["tune", "--videos", str(VIDEOS_CSV), flag, value, "--out", str(tmp_path)])
    assert done.value.code == 2 and capsys.readouterr().err.startswith("audit tune: error: ")


def test_windows_are_counted_in_whole_microseconds():
    # 24 h exactly is inside the window, as in the sweep; a microsecond more is not.
    videos, requests = history((1, 7, "A", "ready", 0, 0), (2, 7, "A", "ready", 24, 24))
    assert row(tune(videos, requests, windows=(timedelta(hours=24),)), "prompt_key", 24.0)["blocked"] == 1
    videos.loc[1, "created_at"] += timedelta(microseconds=1)
    assert row(tune(videos, requests, windows=(timedelta(hours=24),)), "prompt_key", 24.0)["blocked"] == 0
    assert np.isclose(row(tune(videos, requests), "prompt_key", 48.0)["intended_share"], 1.0)
