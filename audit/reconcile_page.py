"""The reconciliation's outputs: ``reconcile.json``, ``reconcile.html`` and the terminal lines.

A page of its own rather than a section of the sweep's ``report.html``: the sweep reads only
the service's data and runs weekly from cron without a provider token; the reconciliation
needs the provider's list (a token, or an export) and answers another question ("does what
we paid match what we recorded?"). It is short: the totals in sentences, billed against
recorded per day (`reconcile_figure`), then each finding's jobs.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from audit.reconcile import Reconciliation
from audit.report import summary_json
from audit.words import duration, money
from service.redact import redact_text

__all__ = ["reconcile_text", "reconcile_figure", "render_reconcile", "write_reconcile_data", "write_reconcile_page"]

MAX_ROWS = 500


def reconcile_text(result: Reconciliation) -> str:
    """A few lines for a terminal."""
    s = result.summary
    lines = [
        f"Billed: {s['predictions']} predictions, ${s['billed_usd']:.2f} ({s['pricing']}). "
        f"Recorded: {s['attempts']} attempts, ${s['recorded_usd']:.2f}.",
        f"Leaks (billed, no attempt): {s['leaks']['count']}, ${s['leaks']['usd']:.2f}. "
        f"Unknown jobs (recorded, not billed): {s['unknown_jobs']['count']}, ${s['unknown_jobs']['usd']:.2f}.",
        f"Double payments: {s['double_payments']['count']}, ${s['double_payments']['usd']:.2f}. "
        f"Cost mismatches: {s['cost_mismatches']['count']}, ${s['cost_mismatches']['usd']:.2f} billed minus recorded.",
    ]
    return "\n".join(lines)


def reconcile_figure(by_day: pd.DataFrame) -> go.Figure:
    """Billed and recorded USD per day side by side, and the leaks and double payments in them."""
    fig = go.Figure()
    if by_day.empty:
        fig.update_layout(title="Billed and recorded: nothing in the period", height=200)
        return fig
    for column, name, colour in (
        ("billed_usd", "billed by the provider", "#444444"),
        ("recorded_usd", "recorded by the service", "#1f77b4"),
        ("leak_usd", "leaks (billed, no attempt)", "#d62728"),
        ("double_usd", "double payments", "#ff7f0e"),
    ):
        fig.add_bar(name=name, x=by_day["day"], y=by_day[column], marker_color=colour,
                    text=[money(v) if v else "" for v in by_day[column]], textposition="outside", cliponaxis=False)
    fig.update_layout(title="Billed and recorded, per day (UTC)", barmode="group", height=360,
                      legend={"orientation": "h", "y": -0.2}, yaxis_title="USD")
    fig.update_xaxes(type="category")
    return fig


def _table(frame: pd.DataFrame, columns: dict[str, str]) -> str:
    if frame.empty:
        return "<p>None.</p>"
    shown = frame.head(MAX_ROWS)
    note = "" if len(frame) <= MAX_ROWS else f"<p>The first {MAX_ROWS} of {len(frame):,}; all are in reconcile.json.</p>"
    out = pd.DataFrame({title: shown[column] for column, title in columns.items()})
    for title in out.columns:
        if title.endswith("(UTC)"):
            out[title] = out[title].dt.strftime("%Y-%m-%d %H:%M:%S")
        elif title in ("billed", "recorded", "cost"):
            out[title] = [money(float(v)) if pd.notna(v) else "" for v in out[title]]
        elif title == "gap":
            out[title] = [duration(v) for v in out[title]]
        elif title == "videos":
            out[title] = [", ".join(map(str, v)) for v in out[title]]
    return note + out.to_html(index=False, escape=True, border=0, classes="data")


def _days(by_day: pd.DataFrame) -> pd.DataFrame:
    """The per-day table in words: money as money, each finding as "count ($)"."""
    def both(count: int, usd: float) -> str:
        return f"{count:,} ({money(usd)})" if count else ""

    return pd.DataFrame(
        {
            "day (UTC)": by_day["day"],
            "billed": [f"{money(u)} ({n:,} jobs)" for u, n in zip(by_day["billed_usd"], by_day["billed_jobs"], strict=True)],
            "recorded": [money(u) for u in by_day["recorded_usd"]],
            "billed − recorded": [("−" if u < 0 else "") + money(abs(u)) if u else "" for u in by_day["difference_usd"]],
            "leaks": [both(n, u) for n, u in zip(by_day["leaks"], by_day["leak_usd"], strict=True)],
            "unknown jobs": [both(n, u) for n, u in zip(by_day["unknown_jobs"], by_day["unknown_usd"], strict=True)],
            "double payments": [both(n, u) for n, u in zip(by_day["double_payments"], by_day["double_usd"], strict=True)],
            "cost mismatches": [both(n, u) for n, u in zip(by_day["cost_mismatches"], by_day["mismatch_usd"], strict=True)],
        }
    )


def render_reconcile(result: Reconciliation, *, source: str) -> str:
    """``reconcile.html``: one self-contained page (plotly.js inline)."""
    import plotly.io as pio

    s = result.summary
    fig = reconcile_figure(result.by_day)
    chart = pio.to_html(fig, include_plotlyjs=True, full_html=False, default_width="100%") if fig.data else ""
    sentences = [
        f"The provider billed {money(s['billed_usd'])} for {s['predictions']:,} predictions; the service recorded "
        f"{money(s['recorded_usd'])} on {s['attempts']:,} attempts.",
        f"{s['leaks']['count']:,} billed job(s) no attempt knows: {money(s['leaks']['usd'])} paid with nothing in the books.",
        f"{s['unknown_jobs']['count']:,} attempt(s) name a job the provider does not list: "
        f"{money(s['unknown_jobs']['usd'])} recorded that the bill does not show.",
        f"{s['double_payments']['count']:,} job(s) paid again for a video the same user had asked for within "
        f"{s['window_hours']:g} h: {money(s['double_payments']['usd'])}.",
        f"{s['cost_mismatches']['count']:,} job(s) recorded at another cost than billed "
        f"({money(s['cost_mismatches']['usd'])} billed minus recorded).",
    ]
    days = _days(result.by_day).to_html(index=False, border=0, classes="data days", escape=True)
    sections = [
        ("Leaks: billed, no attempt knows the job", _table(result.leaks, {
            "job_id": "job", "created_at": "created (UTC)", "status": "status", "billed_usd": "billed", "prompt": "prompt"})),
        ("Unknown jobs: recorded, not on the bill", _table(result.unknown, {
            "id": "video", "provider_job_id": "job", "created_at": "created (UTC)", "status": "status", "cost_usd": "cost"})),
        ("Double payments", _table(result.doubles, {
            "job_id": "job", "earlier_job_id": "paid before by", "video_ids": "videos", "tg_user_id": "user",
            "created_at": "created (UTC)", "gap_seconds": "gap", "billed_usd": "billed"})),
        ("Cost mismatches", _table(result.mismatches, {
            "job_id": "job", "video_ids": "videos", "created_at": "created (UTC)", "billed_usd": "billed",
            "recorded_usd": "recorded"})),
    ]
    body = "".join(f"<h2>{html.escape(title)}</h2>{table}" for title, table in sections)
    items = "".join(f"<li>{html.escape(t)}</li>" for t in sentences)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Reconciliation with the provider's bill</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px; color: #222; padding: 0 1em; }}
ul.glance {{ font-size: 1.1em; line-height: 1.6; }} .small {{ color: #555; font-size: 0.9em; }}
table.data {{ border-collapse: collapse; font-size: 0.82em; }}
table.data th, table.data td {{ padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; text-align: left; }}
table.data th {{ background: #f3f3f3; }}
table.days td {{ text-align: right; }} table.days td:first-child {{ text-align: left; }}
</style></head><body>
<h1>The books against the provider's bill</h1>
<p class="small">Source: {html.escape(source)}. Period {html.escape(str(s['since'] or 'start'))} to
{html.escape(str(s['until'] or 'end'))}; window {s['window_hours']:g} h; billed as {html.escape(s['pricing'])}.</p>
<ul class="glance">{items}</ul>
{chart}
<h2>Per day (UTC)</h2>{days}
{body}
</body></html>
"""


def write_reconcile_data(result: Reconciliation, out_dir: str | Path, *, source: str) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "reconcile.json"
    by_day = result.by_day.to_dict(orient="records")
    path.write_text(redact_text(summary_json({"source": source, **result.summary, "by_day": by_day})))
    return path


def write_reconcile_page(result: Reconciliation, out_dir: str | Path, *, source: str) -> Path:
    path = Path(out_dir) / "reconcile.html"
    path.write_text(render_reconcile(result, source=redact_text(source)))
    return path
