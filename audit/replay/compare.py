"""Replays side by side: every policy on the same history, and their race windows next to history's.

`replay_policies` replays one history under each policy, each against its own service,
concurrently (the services are independent processes; a replay's own clock starts only once
its service answers). `generations_figure` draws the table; `windows_vs_history` lines up the
race windows each replay reconstructs with the ones the audit found in the history.

`burst_verdict` exists because a burst's count under the legacy policies is a race: how many
requests pass the check before the first pending row commits depends on scheduling, run to
run. What does not vary, and what a regression test can hold, is the verdict: more than one
generation, or exactly one.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from audit.replay.run import POLICIES, ReplayResult, replay

__all__ = ["TABLE_COLUMNS", "replay_policies", "generations_figure", "burst_verdict", "windows_vs_history"]

TABLE_COLUMNS = ["policy", "requests", "generations_started", "duplicates_blocked", "duplicates_generated"]


def replay_policies(
    requests: pd.DataFrame,
    videos: pd.DataFrame | None = None,
    *,
    policies: Sequence[str] = POLICIES,
    **options: Any,
) -> tuple[pd.DataFrame, dict[str, ReplayResult]]:
    """Replay under each policy (options as for `audit.replay.replay`); the table, one row per
    policy in the order given, and each policy's full result."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(policies)) as pool:
        futures = {policy: pool.submit(replay, requests, videos, policy=policy, **options) for policy in policies}
        results = {policy: future.result() for policy, future in futures.items()}
    table = pd.DataFrame([{k: results[p].summary[k] for k in TABLE_COLUMNS} for p in policies])
    return table, results


def generations_figure(table: pd.DataFrame, *, title: str) -> go.Figure:
    """Generations started per policy, the requests as a dashed line for scale."""
    fig = px.bar(table, x="policy", y="generations_started", text="generations_started", title=title,
                 labels={"generations_started": "generations started", "policy": "policy"})
    fig.add_hline(y=int(table["requests"].max()), line_dash="dash", annotation_text="requests")
    fig.update_layout(height=320)
    return fig


def burst_verdict(table: pd.DataFrame) -> pd.DataFrame:
    """Per policy: ``more than one``, ``exactly one`` or ``none`` generation.

    Only these buckets are stable run to run: how many of a burst get past a check-then-insert
    depends on how the requests interleave with the round trips, so the exact count is noise
    while "more than one" is the finding.
    """
    def verdict(row: pd.Series) -> str:
        if row["generations_started"] > 1:
            return "more than one"
        return "exactly one" if row["generations_started"] == 1 else "none"

    return table.assign(verdict=table.apply(verdict, axis=1))[["policy", "requests", "verdict"]]


def windows_vs_history(results: dict[str, ReplayResult], history: pd.DataFrame) -> pd.DataFrame:
    """One row per replayed request: its video in history (requested → saved, the audit's race
    windows) and, per policy, when the replay's generation was saved, or ``blocked``."""
    first = next(iter(results.values())).windows()
    out = first[["request_id", "history_video_id", "requested_at"]].copy()
    saved = history.set_index("video_id")["saved_at"] if not history.empty else pd.Series(dtype=object)
    out["history_saved_at"] = out["history_video_id"].map(saved)
    for policy, result in results.items():
        windows = result.windows().set_index("request_id")
        replayed = windows["saved_at"].map(lambda t: "blocked" if pd.isna(t) else t.strftime("%H:%M:%S"))
        out[policy] = out["request_id"].map(replayed)
    out["requested_at"] = out["requested_at"].dt.strftime("%Y-%m-%d %H:%M:%S")
    out["history_saved_at"] = out["history_saved_at"].map(lambda t: "" if pd.isna(t) else t.strftime("%H:%M:%S"))
    return out
