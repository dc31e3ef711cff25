"""``report.html``: one self-contained page, read top to bottom by a manager, then an engineer.

1. **At a glance**: dollars wasted by class, the last 7 days of the period against the 7
   before, and one sentence per policy with the dollars it would have left.
2. The race timeline (`audit.figures.timeline_figure`), waste by class and by week.
3. The duplicates, newest first, in a sortable table that fits the page; stuck claims.

plotly.js is embedded once, inline, so the page opens offline (a mail attachment, an archived
CI artefact). The table sorts with a few lines of inline script, no library.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from audit.pipeline import AuditResult
from audit.weeks import period_end, week_bounds, week_label, week_number
from audit.words import duration, money

if TYPE_CHECKING:
    from audit.figures import timeline_figure, waste_by_class_figure, waste_by_week_figure

__all__ = ["MAX_TABLE_ROWS", "POLICY_WORDS", "policy_sentences", "week_comparison", "render_page"]

# plotly (0.1 s to import) and the figures load when a page is drawn, not with this module: the
# sweep's workers import it for `MAX_TABLE_ROWS` and draw nothing. The figures are still this
# module's names (PEP 562), looked up when the page is drawn, so a test can replace one.
_FIGURES = ("timeline_figure", "waste_by_class_figure", "waste_by_week_figure")


def _load_figures() -> None:
    import audit.figures

    for name in _FIGURES:
        globals().setdefault(name, getattr(audit.figures, name))


def __getattr__(name: str) -> Any:
    if name in _FIGURES:
        _load_figures()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# A browser stays responsive with a few hundred table rows; the full list is in duplicates.csv.
MAX_TABLE_ROWS = 500
MAX_STUCK_ROWS = 100

# What each policy of `summary["policies"]` is, in words. A policy not named here (a variant
# added later) is still listed, under its own name.
# Named as a manager knows them, by what they did, never by a commit hash.
POLICY_WORDS = {
    "none": "No check (how the bot started)",
    "check": "The old duplicate check (same exact text, only finds videos already saved)",
    "pending": "The write-up's fix (a pending row written before generating, same exact text)",
    "claim": "Claim-first (one atomic claim before generating: this service)",
    # Comparisons, not what ran: the bot matched the exact prompt text.
    "check-by-key": "Had the old duplicate check ignored case, spacing and punctuation (it did not)",
    "pending-by-key": "Had the write-up's fix ignored case, spacing and punctuation (it did not)",
}


def policy_sentences(policies: list[dict], *, duplicates: int) -> list[str]:
    """One sentence per ``summary["policies"]`` row, in its order."""
    sentences = []
    for row in policies:
        name = str(row["policy"])
        base = name.split("-")[0]
        what = POLICY_WORDS.get(name) or (
            f"{POLICY_WORDS[base]}, variant “{name}”" if base in POLICY_WORDS else f"Policy “{name}”"
        )
        prevented = int(row["duplicates_prevented"])
        left = money(float(row["wasted_usd"]))
        if prevented == 0:
            sentences.append(f"{what}: prevents none of the {duplicates:,} duplicates; {left} wasted.")
        else:
            sentences.append(f"{what}: would have prevented {prevented:,} of {duplicates:,}, leaving {left} wasted.")
    return sentences


def week_comparison(
    duplicates: pd.DataFrame, *, end: datetime, since: datetime | None
) -> tuple[pd.DataFrame, tuple[datetime, datetime], bool]:
    """USD wasted per class (rows ``sequential, race, total``) in weeks 0 and 1 of
    `audit.weeks` (columns ``this_week, previous_week``): the 7 days up to ``end`` and the 7
    before, the weekly chart's last two bars. The flag is False when the period starts after
    the previous week began: that week was not swept, and its column means nothing."""
    (this_start, _), (previous_start, _) = week_bounds(end, 0), week_bounds(end, 1)
    number = week_number(duplicates["created_at"], end)
    cost = duplicates["cost_usd"].astype(float)
    frame = {}
    for column, week in (("this_week", 0), ("previous_week", 1)):
        inside = number == week
        by_class = cost[inside].groupby(duplicates.loc[inside, "class"]).sum()
        frame[column] = by_class.reindex(["sequential", "race"], fill_value=0.0)
    table = pd.DataFrame(frame)
    table.loc["total"] = table.sum()
    covered = since is None or pd.Timestamp(since) <= pd.Timestamp(previous_start)
    return table, (this_start, previous_start), covered


def _glance(result: AuditResult) -> str:
    s = result.summary
    end = period_end(s, result.videos)
    weeks, _, covered = week_comparison(
        result.duplicates, end=end, since=pd.Timestamp(s["since"]).to_pydatetime() if s["since"] else None
    )
    head = (
        f"<th></th><th>last 7 days<br><small>{week_label(end, 0)}</small></th>"
        f"<th>the 7 days before<br><small>{week_label(end, 1)}</small></th>"
    )
    body = []
    for klass, row in weeks.iterrows():
        before = money(row["previous_week"]) if covered else "not in this sweep"
        tag = "th" if klass == "total" else "td"
        body.append(f"<tr><{tag}>{klass}</{tag}><td>{money(row['this_week'])}</td><td>{before}</td></tr>")
    sentences = "".join(
        f"<li>{html.escape(t)}</li>" for t in policy_sentences(s["policies"], duplicates=s["duplicate_count"])
    )
    basis = html.escape(s["classification_basis"])
    if s.get("estimate_assumption"):
        basis += f" ({html.escape(s['estimate_assumption'])})"
    return f"""<section class="glance">
<p class="headline"><b>{money(s['wasted_usd'])}</b> wasted on <b>{s['duplicate_count']:,}</b> duplicate videos
out of {s['videos_scanned']:,} scanned ({', '.join(f"{n:,} {html.escape(c)}" for c, n in s['by_class'].items())}),
at {money(s['cost_per_video'])} a video.</p>
<table class="weeks"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
<h2>What each policy would have left</h2><ul class="policies">{sentences}</ul>
<p class="small">Classes: <b>sequential</b> = an equivalent video was already saved when the duplicate was
requested (any check blocks it); <b>race</b> = none was saved yet (only a claim before generating blocks it).
Basis: {basis}.</p>
</section>"""


def _sortable_table(rows: pd.DataFrame, columns: list[tuple[str, str, str | None]], *, table_id: str) -> str:
    """``columns`` = (header, display column, sort-key column or None). Sort keys go in
    ``data-k`` so gaps sort by seconds and times by instant, not by their text."""
    head = "".join(f"<th onclick=\"sortTable('{table_id}', {i})\">{html.escape(h)}</th>" for i, (h, _, _) in enumerate(columns))
    body = []
    for values in zip(*(rows[c] for _, c, _ in columns), *(rows[k] for _, _, k in columns if k), strict=True):
        shown, keys = values[: len(columns)], iter(values[len(columns):])
        cells = []
        for (_, _, key), value in zip(columns, shown, strict=True):
            text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
            sort = f' data-k="{html.escape(str(next(keys)))}"' if key else ""
            cells.append(f"<td{sort} title=\"{html.escape(text)}\">{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="data" id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _duplicates_table(duplicates: pd.DataFrame) -> str:
    if duplicates.empty:
        return "<p>None.</p>"
    # The order from the two key columns, then the newest rows' every column: sorting the whole
    # frame moved every column of every duplicate (271 k at 3 M rows) to show 500.
    keys = duplicates[["created_at", "video_id"]].reset_index(drop=True)
    order = keys.sort_values(["created_at", "video_id"], ascending=False).head(MAX_TABLE_ROWS).index
    newest = duplicates.iloc[order]
    when = "%Y-%m-%d %H:%M:%S"
    rows = newest.assign(
        saved=newest["created_at"].dt.strftime(when),
        saved_k=newest["created_at"].dt.strftime("%Y%m%d%H%M%S%f"),
        requested=newest["requested_at"].dt.strftime(when),
        requested_k=newest["requested_at"].dt.strftime("%Y%m%d%H%M%S%f"),
        gap=[duration(g) for g in newest["gap_seconds"]],
        cost=[money(c) for c in newest["cost_usd"]],
    )
    note = f"<p>All {len(duplicates):,}, newest first. Click a heading to sort.</p>"
    if len(duplicates) > MAX_TABLE_ROWS:
        note = f"<p>The newest {MAX_TABLE_ROWS} of {len(duplicates):,}; all are in <code>duplicates.csv</code>. Click a heading to sort.</p>"
    columns = [
        ("saved (UTC)", "saved", "saved_k"),
        ("video", "video_id", "video_id"),
        ("original", "original_id", "original_id"),
        ("class", "class", None),
        ("basis", "basis", None),
        ("user", "tg_user_id", "tg_user_id"),
        ("prompt", "prompt", None),
        ("requested (UTC)", "requested", "requested_k"),
        ("gap", "gap", "gap_seconds"),
        ("cost", "cost", "cost_usd"),
    ]
    return note + _sortable_table(rows, columns, table_id="duplicates")


def _stuck_table(stuck: pd.DataFrame) -> str:
    if stuck.empty:
        return "<p>None.</p>"
    shown = stuck.sort_values("age_seconds", ascending=False).head(MAX_STUCK_ROWS)
    rows = shown.assign(
        created=shown["created_at"].dt.strftime("%Y-%m-%d %H:%M:%S"),
        age=[duration(a) for a in shown["age_seconds"]],
    )
    columns = [("video", "id", "id"), ("user", "tg_user_id", "tg_user_id"), ("prompt", "prompt", None),
               ("created (UTC)", "created", None), ("stuck for", "age", "age_seconds")]
    where = f"The oldest {len(shown)} of {len(stuck):,}" if len(stuck) > len(shown) else f"All {len(stuck):,}"
    return (f"<p>{where} <code>generating</code> rows past their lease; the full list is in "
            f"<code>summary.json</code> (key <code>stuck_claims</code>).</p>") + _sortable_table(rows, columns, table_id="stuck")


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px; color: #222; padding: 0 1em; }
.headline { font-size: 1.35em; }
table.weeks { border-collapse: collapse; font-size: 1.1em; margin: 0.5em 0 1em; }
table.weeks th, table.weeks td { padding: 0.3em 1.2em; border-bottom: 1px solid #ddd; text-align: right; }
table.weeks th:first-child, table.weeks td:first-child { text-align: left; }
ul.policies { font-size: 1.1em; line-height: 1.6; }
.small { color: #555; font-size: 0.9em; }
table.data { border-collapse: collapse; font-size: 0.82em; width: 100%; table-layout: fixed; }
table.data th { cursor: pointer; background: #f3f3f3; position: sticky; top: 0; }
table.data th, table.data td { padding: 0.25em 0.5em; border-bottom: 1px solid #ddd; text-align: left;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
#duplicates th:nth-child(1), #duplicates th:nth-child(8), #stuck th:nth-child(4) { width: 12.5em; }
#duplicates th:nth-child(2), #duplicates th:nth-child(3), #stuck th:nth-child(1) { width: 4.5em; }
#duplicates th:nth-child(4), #duplicates th:nth-child(9), #stuck th:nth-child(5) { width: 6.5em; }
#duplicates th:nth-child(5) { width: 7em; } #duplicates th:nth-child(6), #stuck th:nth-child(2) { width: 7.5em; }
#duplicates th:nth-child(10) { width: 3.5em; }
"""
# Sorts a table by one column: by data-k when the cells have one (numbers, instants), else text.
_SCRIPT = """
function sortTable(id, col) {
  const table = document.getElementById(id), body = table.tBodies[0];
  const rows = Array.from(body.rows), dir = table.dataset.col == col && table.dataset.dir == "1" ? -1 : 1;
  const key = r => { const c = r.cells[col]; return c.dataset.k !== undefined ? c.dataset.k : c.textContent; };
  const num = rows.every(r => key(r) !== "" && !isNaN(key(r)));
  rows.sort((a, b) => dir * (num ? key(a) - key(b) : key(a).localeCompare(key(b))));
  rows.forEach(r => body.appendChild(r));
  table.dataset.col = col; table.dataset.dir = dir;
}
"""


def render_page(result: AuditResult, *, source: str) -> str:
    """The whole report as one HTML string."""
    import plotly.io as pio

    _load_figures()
    s = result.summary
    figures = [
        timeline_figure(result.race_windows),
        waste_by_class_figure(result.duplicates),
        waste_by_week_figure(result.duplicates, end=period_end(s, result.videos)),  # the table's weeks
    ]
    parts, script_included = [], False
    for fig in figures:
        if not fig.data:  # nothing to draw: its title says why, as text (an empty frame of axes says nothing)
            parts.append(f'<p class="empty">{html.escape(fig.layout.title.text)}.</p>')
            continue
        parts.append(pio.to_html(fig, include_plotlyjs=not script_included, full_html=False, default_height=None, default_width="100%"))
        script_included = True
    near = ""
    if result.near_duplicates is not None:
        near = "<h2>Near-duplicates (listed, never counted)</h2>" + (
            result.near_duplicates.head(MAX_TABLE_ROWS).to_html(index=False, escape=True, border=0, classes="data")
            if len(result.near_duplicates) else "<p>None.</p>"
        )
    policy_table = result.policies.to_html(index=False, escape=True, border=0, classes="data")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Duplicate audit</title>
<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>
<h1>Duplicate audit</h1>
<p class="small">Source: {html.escape(source)}. As of {html.escape(s['as_of'])}; period
{html.escape(str(s['since'] or 'start'))} to {html.escape(str(s['until'] or 'end'))}; window {s['window_hours']:g} h.</p>
{_glance(result)}
<h2>Race windows</h2>
{parts[0]}
{parts[1]}
{parts[2]}
<details><summary>The policy comparison as numbers</summary>{policy_table}</details>
<h2>Duplicates</h2>
{_duplicates_table(result.duplicates)}
<h2>Stuck claims</h2>
{_stuck_table(result.stuck_claims)}
{near}
</body></html>
"""
