"""The audit's figures: the race timeline and waste by class and by week.

Built from `AuditResult` frames, shared by ``report.html`` and the notebooks, so a chart in a
notebook is the chart in the weekly report.

The timeline is **one** chart, whatever the sweep holds: each race chain is a block of rows
(one bar per video, from its request to its save) on one shared axis, minutes from the chain's
first request, so a four-minute race is as wide in every chain even when chains are days
apart. It shows at most `MAX_TIMELINE_CHAINS` chains and says how many it leaves out: a busy
week has hundreds of race chains, and a chart per chain (subplots) both fails in plotly past
a few dozen rows and is unreadable long before.
"""

from __future__ import annotations

import math
from datetime import datetime

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from audit.weeks import week_label, week_number
from audit.words import duration, money

__all__ = ["MAX_TIMELINE_CHAINS", "timeline_chains", "timeline_figure", "waste_by_class_figure", "waste_by_week_figure"]

# Ten chains of two or three bars fit one screen; the rest are in duplicates.csv.
MAX_TIMELINE_CHAINS = 10
CLASS_COLOURS = {"race": "#d62728", "sequential": "#1f77b4", "original": "#7f7f7f"}
# A log axis once the largest bar is this many times the smallest: a $40 race next to $18 k
# of sequential waste is one pixel on a linear axis.
_LOG_RATIO = 20


def timeline_chains(race_windows: pd.DataFrame, *, max_chains: int = MAX_TIMELINE_CHAINS) -> tuple[pd.DataFrame, dict]:
    """The rows the timeline draws, and what it left out.

    Keeps chains where a duplicate raced its original, drops those whose duplicates' request
    times are all estimates (a bar of the assumed generation time says nothing about a race),
    and of the rest the ``max_chains`` latest. Returns ``(rows, counts)`` with ``counts`` =
    ``{"race_chains", "estimated_only", "not_shown"}``.
    """
    frame = race_windows
    if frame.empty:
        return frame, {"race_chains": 0, "estimated_only": 0, "not_shown": 0}
    frame = frame[frame["class"] == "race"]
    chains = frame["chain_id"].unique()
    logged = frame.loc[(frame["role"] == "duplicate") & (frame["basis"] == "request_log"), "chain_id"].unique()
    frame = frame[frame["chain_id"].isin(logged)]
    latest = frame.groupby("chain_id")["saved_at"].max().nlargest(max_chains).index
    counts = {
        "race_chains": len(chains),
        "estimated_only": len(chains) - len(logged),
        "not_shown": len(logged) - len(latest),
    }
    return frame[frame["chain_id"].isin(latest)], counts


def _gap_words(rows: pd.DataFrame) -> pd.Series:
    """"55 requested 4 min before 54 was saved", per duplicate row of one chain."""
    original = rows.loc[rows["role"] == "original"]
    if original.empty:
        return pd.Series("", index=rows.index)
    saved = original["saved_at"].iloc[0]
    chain = int(original["video_id"].iloc[0])
    words = []
    for role, video, requested in zip(rows["role"], rows["video_id"], rows["requested_at"], strict=True):
        if role == "original":
            words.append("")
            continue
        ahead = (saved - requested).total_seconds()
        when = "before" if ahead >= 0 else "after"
        words.append(f"{video} requested {duration(ahead).lstrip('-')} {when} {chain} was saved")
    return pd.Series(words, index=rows.index)


def timeline_figure(race_windows: pd.DataFrame, *, max_chains: int = MAX_TIMELINE_CHAINS) -> go.Figure:
    """Each video of a race chain as a bar from request to save, chains stacked on one axis.

    The original is grey, race duplicates red; a black tick on each duplicate's row marks when
    the original was saved, and the text beside the bar says by how much the duplicate beat it.
    """
    frame, counts = timeline_chains(race_windows, max_chains=max_chains)
    if frame.empty:
        fig = go.Figure()
        note = ""
        if counts["estimated_only"]:
            note = f" with a logged request time ({counts['estimated_only']} estimated-only chain(s) not drawn)"
        fig.update_layout(title=f"Race windows: none{note}", height=200)
        return fig
    order = frame.groupby("chain_id")["saved_at"].max().sort_values(ascending=False).index
    blocks = []
    for chain in order:
        rows = frame[frame["chain_id"] == chain]
        # The original on top of its chain, then its duplicates in request order.
        rows = rows.assign(_first=rows["role"] != "original").sort_values(["_first", "requested_at", "video_id"])
        start = rows["requested_at"].min()
        original_saved = rows.loc[rows["role"] == "original", "saved_at"]
        blocks.append(
            rows.assign(
                label=[f"video {v} (chain {chain})" for v in rows["video_id"]],
                kind=[r if r == "original" else k for r, k in zip(rows["role"], rows["class"], strict=True)],
                begin=(rows["requested_at"] - start).dt.total_seconds() / 60,
                end=(rows["saved_at"] - start).dt.total_seconds() / 60,
                original_end=((original_saved.iloc[0] - start).total_seconds() / 60) if len(original_saved) else None,
                words=_gap_words(rows),
            )
        )
    rows = pd.concat(blocks, ignore_index=True)
    labels = rows["label"].tolist()
    fig = go.Figure()
    for kind in ("original", "race", "sequential"):
        part = rows[rows["kind"] == kind]
        if part.empty:
            continue
        fig.add_bar(
            name=kind,
            orientation="h",
            y=part["label"],
            base=part["begin"],
            x=part["end"] - part["begin"],
            marker_color=CLASS_COLOURS[kind],
            customdata=list(
                zip(
                    part["requested_at"].dt.strftime("%Y-%m-%d %H:%M:%S"),
                    part["saved_at"].dt.strftime("%Y-%m-%d %H:%M:%S"),
                    part["prompt"].str.slice(0, 80),
                    strict=True,
                )
            ),
            hovertemplate="%{y}<br>requested %{customdata[0]} UTC<br>saved %{customdata[1]} UTC"
            "<br>%{customdata[2]}<extra></extra>",
        )
    dups = rows[rows["role"] == "duplicate"]
    fig.add_scatter(
        name="original saved",
        mode="markers+text",
        y=dups["label"],
        x=dups["original_end"],
        marker={"symbol": "line-ns-open", "size": 18, "color": "black", "line": {"width": 2}},
        hoverinfo="skip",
    )
    # The words right of whichever ends later, the bar or the tick, so they never cover either.
    fig.add_scatter(
        name="gap",
        mode="text",
        y=dups["label"],
        x=[max(a, b) for a, b in zip(dups["end"], dups["original_end"], strict=True)],
        text=["  " + w for w in dups["words"]],
        textposition="middle right",
        hoverinfo="skip",
        showlegend=False,
    )
    shown = rows["chain_id"].nunique()
    title = f"Race windows: the {shown} latest race chain(s), minutes from each chain's first request"
    left_out = []
    if counts["not_shown"]:
        left_out.append(f"{counts['not_shown']} more race chain(s) not shown (all in duplicates.csv)")
    if counts["estimated_only"]:
        left_out.append(f"{counts['estimated_only']} chain(s) with only estimated request times not drawn")
    if left_out:
        title += "<br><sup>" + "; ".join(left_out) + "</sup>"
    span = float(rows["end"].max())
    fig.update_layout(
        title=title,
        barmode="overlay",
        height=160 + 26 * len(labels),
        legend={"orientation": "h", "y": -0.12 if len(labels) > 6 else -0.3},
        margin={"l": 170},
    )
    # Room on the right for the words beside the last bar.
    fig.update_xaxes(title="minutes from the chain's first request", range=[0, span * 1.6 + 0.5])
    fig.update_yaxes(categoryorder="array", categoryarray=labels, autorange="reversed")
    return fig


def _log_if_lopsided(fig: go.Figure, values: pd.Series) -> None:
    positive = values[values > 0]
    if len(positive) > 1 and positive.max() / positive.min() >= _LOG_RATIO:
        # From $1, so a bar's height still reads as its amount and the smallest is not a sliver.
        top = math.log10(float(positive.max())) + 0.35
        fig.update_yaxes(type="log", title="wasted USD (log scale)", range=[0, top])


def waste_by_class_figure(duplicates: pd.DataFrame) -> go.Figure:
    """Wasted USD per class, each bar labelled with its amount."""
    totals = duplicates.groupby("class")["cost_usd"].sum().reindex(["sequential", "race"], fill_value=0.0)
    fig = px.bar(
        x=totals.index,
        y=totals.to_numpy(),
        color=totals.index,
        color_discrete_map=CLASS_COLOURS,
        labels={"x": "class", "y": "wasted USD", "color": ""},
        title="Waste by class",
        text=[money(v) for v in totals.to_numpy()],
    )
    fig.update_traces(textposition="outside", cliponaxis=False)
    _log_if_lopsided(fig, totals)
    fig.update_layout(showlegend=False, height=320)
    return fig


def waste_by_week_figure(duplicates: pd.DataFrame, *, end: datetime | None = None) -> go.Figure:
    """Wasted USD per week, one bar per class side by side. Weeks are `audit.weeks`'s: 7 days
    counted back from ``end`` (the period's end; default the latest duplicate), the same weeks
    as the report's "last 7 days" table, oldest on the left."""
    if duplicates.empty:
        fig = go.Figure()
        fig.update_layout(title="Waste by week: none", height=200)
        return fig
    created = duplicates["created_at"].dt.tz_convert("UTC")
    end = end if end is not None else created.max().to_pydatetime()
    number = week_number(created, end)
    totals = duplicates.assign(week=number).groupby(["week", "class"], as_index=False)["cost_usd"].sum()
    # Oldest week first, every week between the first and the last drawn (an empty week is a gap).
    weeks = list(range(int(totals["week"].max()), int(totals["week"].min()) - 1, -1))
    labels = [week_label(end, w) for w in weeks]
    totals["week"] = totals["week"].map(dict(zip(weeks, labels, strict=True)))
    fig = px.bar(
        totals,
        x="week",
        y="cost_usd",
        color="class",
        color_discrete_map=CLASS_COLOURS,
        labels={"week": "7 days (UTC), counted back from the end of the period", "cost_usd": "wasted USD", "class": ""},
        title="Waste by week",
        category_orders={"week": labels},
    )
    # Side by side, not stacked: a stacked small race share disappears on top of a tall bar.
    fig.update_layout(height=320, barmode="group")
    fig.update_traces(texttemplate="$%{y:,.0f}", textposition="outside", cliponaxis=False)  # as by class
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=labels)
    _log_if_lopsided(fig, totals["cost_usd"])
    return fig
