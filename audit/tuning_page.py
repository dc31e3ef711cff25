"""The tuning table's outputs: the terminal table, ``tuning.csv``, ``tuning.json`` and
``tuning.html`` with the trade-off chart (`tuning_figure`): dollars caught against intended
repeats blocked, one line per key function, one point per window, today's setting marked."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from audit.words import money, spreadsheet_safe
from service.redact import redact_text

__all__ = ["window_words", "tuning_text", "tuning_figure", "write_tuning"]

_COLOURS = ["#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c"]


def window_words(hours: float) -> str:
    """``1 h``, ``24 h``, ``7 d``: whole days past two days."""
    if hours > 48 and hours % 24 == 0:
        return f"{hours / 24:g} d"
    return f"{hours:g} h"


def tuning_text(table: pd.DataFrame) -> str:
    """The table for a terminal, today's setting marked with ``*``."""
    shown = pd.DataFrame(
        {
            "key": table["key"],
            "window": [window_words(h) + (" *" if c else "") for h, c in zip(table["window_hours"], table["current"], strict=True)],
            "blocked": table["blocked"].map("{:,}".format),
            "caught": table["caught"].map("{:,}".format),
            "caught $": [money(v) for v in table["caught_usd"]],
            "intended blocked": table["intended_blocked"].map("{:,}".format),
            "users annoyed": table["users_annoyed"].map("{:,}".format),
            "intended share": table["intended_share"].map("{:.0%}".format),
        }
    )
    return shown.to_string(index=False) + "\n* what the service runs today"


def _points(rows: pd.DataFrame) -> pd.DataFrame:
    """One point per run of windows that land on the same spot, labelled ``1 h–12 h``: windows
    that catch and annoy alike would otherwise be drawn on top of each other, labels unreadable."""
    spot = rows[["intended_blocked", "caught_usd"]].astype(float)
    run = (spot.diff().abs().sum(axis=1) != 0).cumsum()
    points = rows.groupby(run.to_numpy(), sort=False).agg(
        intended_blocked=("intended_blocked", "first"), caught_usd=("caught_usd", "first"),
        first=("window_hours", "first"), last=("window_hours", "last"),
        blocked=("blocked", "first"), users_annoyed=("users_annoyed", "first"),
    )
    points["label"] = [window_words(a) if a == b else f"{window_words(a)}–{window_words(b)}"
                       for a, b in zip(points["first"], points["last"], strict=True)]
    return points


def tuning_figure(table: pd.DataFrame, *, title: str = "What each window and key would have caught, and whom it annoys") -> go.Figure:
    """Caught USD (up) against intended repeats blocked (right): the best settings are up and
    to the left. One line per key, a point per window, today's setting a star."""
    fig = go.Figure()
    for colour, (key, rows) in zip(_COLOURS, table.groupby("key", sort=False), strict=False):
        points = _points(rows)
        fig.add_scatter(
            name=key, x=points["intended_blocked"], y=points["caught_usd"], mode="lines+markers+text",
            text=points["label"], textposition="top center",
            marker={"color": colour, "size": 8}, line={"color": colour},
            customdata=list(zip(points["blocked"], points["users_annoyed"], strict=True)),
            hovertemplate=f"{key}, %{{text}}<br>caught %{{y:$,.0f}}<br>intended repeats blocked %{{x:,}}"
                          "<br>blocked in all %{customdata[0]:,}; users annoyed %{customdata[1]:,}<extra></extra>",
        )
    current = table.loc[table["current"]]
    if len(current):
        fig.add_scatter(
            name="today (24 h, prompt_key)", x=current["intended_blocked"], y=current["caught_usd"], mode="markers",
            marker={"symbol": "star", "size": 18, "color": "#d62728", "line": {"width": 1, "color": "black"}},
            hoverinfo="skip",
        )
    # Room around the extremes, so a point at 0 or at the top keeps its marker and label.
    right = float(table["intended_blocked"].max()) or 1.0
    top = float(table["caught_usd"].max()) or 1.0
    fig.update_layout(title=title, height=460, legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(title="intended repeats blocked (annoyed users' requests)", range=[-0.06 * right, 1.1 * right])
    fig.update_yaxes(title="caught: USD of mistaken repeats not generated", range=[-0.04 * top, 1.15 * top])
    return fig


def write_tuning(table: pd.DataFrame, out_dir: str | Path, *, source: str, parameters: dict[str, Any]) -> dict[str, Path]:
    """``tuning.csv`` and ``tuning.json`` first, then ``tuning.html`` (the chart and the table)."""
    source = redact_text(source)
    import plotly.io as pio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "tuning.csv", "json": out / "tuning.json", "html": out / "tuning.html"}
    spreadsheet_safe(table).to_csv(paths["csv"], index=False)
    paths["json"].write_text(json.dumps({"source": source, **parameters, "rows": table.to_dict(orient="records")}, indent=1) + "\n")
    chart = pio.to_html(tuning_figure(table), include_plotlyjs=True, full_html=False, default_width="100%")
    about = html.escape(", ".join(f"{k} {v}" for k, v in parameters.items()))
    paths["html"].write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Choosing the duplicate window</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; padding: 0 1em; color: #222; }}
pre {{ font-size: 0.85em; }} .small {{ color: #555; font-size: 0.9em; }}</style></head><body>
<h1>Choosing the duplicate window and key</h1>
<p class="small">Source: {html.escape(source)}; {about}. A repeat looks <b>intended</b> when it was requested after
the earlier video was delivered and more than the given hours after it; every other repeat blocked is <b>caught</b>.</p>
{chart}
<pre>{html.escape(tuning_text(table))}</pre>
</body></html>
""")
    return paths
