"""Report writers: ``summary.json``, ``duplicates.csv``, ``report.html``, and the short text the
CLI prints. The figures are built by functions of their own so the notebooks draw the same ones.

``report.html`` is one self-contained file: plotly.js is embedded once, inline, so it opens
offline (from a mail attachment, an archived CI artefact) without a CDN.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio

from audit.pipeline import AuditResult

__all__ = [
    "DUPLICATE_CSV_COLUMNS",
    "timeline_figure",
    "waste_by_class_figure",
    "waste_by_week_figure",
    "summary_text",
    "render_html",
    "write_reports",
]

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
# A browser stays responsive with a few hundred table rows and a few dozen timeline bars;
# the full list is always in duplicates.csv.
MAX_TABLE_ROWS = 500
MAX_TIMELINE_CHAINS = 40
_CLASS_COLOURS = {"race": "#d62728", "sequential": "#1f77b4", "original": "#7f7f7f"}


def timeline_figure(race_windows: pd.DataFrame, *, races_only: bool = True) -> go.Figure:
    """Each video of a chain as a bar from its request to its save; overlapping bars are races.

    With ``races_only``, only chains where a duplicate raced its original (54-56 in the
    incident). Bars are coloured by role: the original grey, duplicates by class.
    """
    frame = race_windows
    if races_only and not frame.empty:
        frame = frame[frame["class"] == "race"]
    if not frame.empty:
        # The most recent chains: a sweep with thousands of races would draw an unreadable wall.
        latest = frame.groupby("chain_id")["saved_at"].max().nlargest(MAX_TIMELINE_CHAINS).index
        frame = frame[frame["chain_id"].isin(latest)]
    if frame.empty:
        fig = go.Figure()
        fig.update_layout(title="Race windows: none", height=200)
        return fig
    frame = frame.assign(
        label=[f"video {v} (chain {c})" for v, c in zip(frame["video_id"], frame["chain_id"], strict=True)],
        kind=[r if r == "original" else k for r, k in zip(frame["role"], frame["class"], strict=True)],
        requested=frame["requested_at"].dt.tz_convert("UTC").dt.tz_localize(None),
        saved=frame["saved_at"].dt.tz_convert("UTC").dt.tz_localize(None),
    )
    # One panel per chain, newest first, each with its own time axis: chains hours apart would
    # otherwise shrink each race (minutes long) to a sliver.
    frame = frame.assign(chain=[f"chain {c}" for c in frame["chain_id"]])
    order = frame.groupby("chain")["saved_at"].max().sort_values(ascending=False).index.tolist()
    fig = px.timeline(
        frame,
        x_start="requested",
        x_end="saved",
        y="label",
        color="kind",
        facet_row="chain",
        category_orders={"chain": order},
        color_discrete_map=_CLASS_COLOURS,
        hover_data={"prompt": True, "basis": True, "tg_user_id": True, "chain": False},
        labels={"kind": "", "requested": "requested (UTC)", "saved": "saved (UTC)", "label": ""},
        title="Race windows: each video in flight from request to save (UTC)",
    )
    fig.update_xaxes(matches=None, showticklabels=True)
    fig.update_yaxes(matches=None, autorange="reversed")
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_layout(height=140 + 150 * len(order))
    return fig


def waste_by_class_figure(duplicates: pd.DataFrame) -> go.Figure:
    """Wasted USD per class."""
    totals = duplicates.groupby("class")["cost_usd"].sum().reindex(["sequential", "race"], fill_value=0.0)
    fig = px.bar(
        x=totals.index,
        y=totals.to_numpy(),
        color=totals.index,
        color_discrete_map=_CLASS_COLOURS,
        labels={"x": "class", "y": "wasted USD", "color": ""},
        title="Waste by class",
    )
    fig.update_layout(showlegend=False, height=320)
    return fig


def waste_by_week_figure(duplicates: pd.DataFrame) -> go.Figure:
    """Wasted USD per ISO week (weeks start on Monday, UTC), stacked by class."""
    if duplicates.empty:
        fig = go.Figure()
        fig.update_layout(title="Waste by week: none", height=200)
        return fig
    created = duplicates["created_at"].dt.tz_convert("UTC")
    week = (created - pd.to_timedelta(created.dt.day_of_week, unit="D")).dt.floor("D").dt.strftime("%Y-%m-%d")
    totals = duplicates.assign(week=week).groupby(["week", "class"], as_index=False)["cost_usd"].sum()
    fig = px.bar(
        totals,
        x="week",
        y="cost_usd",
        color="class",
        color_discrete_map=_CLASS_COLOURS,
        labels={"week": "week starting (UTC)", "cost_usd": "wasted USD", "class": ""},
        title="Waste by week",
    )
    fig.update_layout(height=320, barmode="stack")
    return fig


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


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    present = [c for c in columns if c in frame.columns]
    shown = frame[present].head(MAX_TABLE_ROWS).copy()
    note = ""
    if len(frame) > MAX_TABLE_ROWS:
        note = f"<p>First {MAX_TABLE_ROWS} of {len(frame)} rows; all are in duplicates.csv.</p>"
    for column in shown.columns:
        if isinstance(shown[column].dtype, pd.DatetimeTZDtype):
            shown[column] = shown[column].dt.strftime("%Y-%m-%d %H:%M:%S")
    return note + shown.to_html(index=False, escape=True, border=0, classes="data", na_rep="")


def render_html(result: AuditResult, *, source: str) -> str:
    """The whole report as one HTML string (plotly.js inline once)."""
    s = result.summary
    figures = [
        timeline_figure(result.race_windows),
        waste_by_class_figure(result.duplicates),
        waste_by_week_figure(result.duplicates),
    ]
    parts = [
        pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False, default_height=None)
        for i, fig in enumerate(figures)
    ]
    basis = html.escape(s["classification_basis"])
    if s.get("estimate_assumption"):
        basis += f" &mdash; {html.escape(s['estimate_assumption'])}"
    near = ""
    if result.near_duplicates is not None:
        near = "<h2>Near-duplicates (listed, never counted)</h2>" + _table(
            result.near_duplicates, list(result.near_duplicates.columns)
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Duplicate audit</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table.data {{ border-collapse: collapse; font-size: 0.85em; }}
table.data th, table.data td {{ padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; text-align: left; }}
.numbers {{ font-size: 1.1em; }}
</style></head><body>
<h1>Duplicate audit</h1>
<p>Source: {html.escape(source)}<br>As of {html.escape(s['as_of'])}; period {html.escape(str(s['since'] or 'start'))}
to {html.escape(str(s['until'] or 'end'))}; window {s['window_hours']:g} h.</p>
<p class="numbers"><b>{s['videos_scanned']}</b> videos scanned, <b>{s['duplicate_count']}</b> duplicates
({', '.join(f"{n} {html.escape(c)}" for c, n in s['by_class'].items())}), <b>${s['wasted_usd']:.2f}</b> wasted.
Classification: {basis}. Stuck claims: {len(s['stuck_claims'])}.</p>
{parts[0]}
<h2>What each policy would have prevented</h2>
{_table(result.policies, list(result.policies.columns))}
{parts[1]}
{parts[2]}
<h2>Duplicates</h2>
{_table(result.duplicates, DUPLICATE_CSV_COLUMNS)}
<h2>Stuck claims</h2>
{_table(result.stuck_claims, list(result.stuck_claims.columns)) if len(result.stuck_claims) else "<p>None.</p>"}
{near}
</body></html>
"""


def write_reports(result: AuditResult, out_dir: str | Path, *, source: str) -> dict[str, Path]:
    """Write ``summary.json``, ``duplicates.csv`` and ``report.html`` into ``out_dir``.

    Everything is rendered in memory first, so a failure while rendering leaves no partial
    set of files behind.
    """
    out = Path(out_dir)
    summary = json.dumps({"source": source, **result.summary}, indent=2, default=str) + "\n"
    table = result.duplicates.reindex(columns=DUPLICATE_CSV_COLUMNS)
    for column in table.columns:
        if isinstance(table[column].dtype, pd.DatetimeTZDtype):
            # ISO 8601 with "+00:00", the form the fixtures use and the loaders accept.
            table[column] = [t.isoformat() if pd.notna(t) else "" for t in table[column]]
    duplicates = table.to_csv(index=False)
    page = render_html(result, source=source)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"summary": out / "summary.json", "duplicates": out / "duplicates.csv", "report": out / "report.html"}
    paths["summary"].write_text(summary)
    paths["duplicates"].write_text(duplicates)
    paths["report"].write_text(page)
    return paths
