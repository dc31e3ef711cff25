"""Write the golden notebooks from the cells below and execute them, storing their outputs.

    .venv/bin/python notebooks/build.py [01 02 03]

The cells live here so a change to a notebook is a reviewable diff of Python, not of JSON;
the executed ``.ipynb`` files (outputs included) are what nbval checks. Needs ``nbclient``.
Cells only call `audit` and `service`: a number a notebook shows is computed there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat

try:
    from nbclient import NotebookClient
except ImportError:  # not a test dependency: nbval executes notebooks by itself
    sys.exit("notebooks/build.py needs nbclient: .venv/bin/pip install nbclient")

HERE = Path(__file__).resolve().parent

SETUP = '''\
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import plotly.io as pio

import audit

# JSON only: no plotly.js embedded in the committed notebook, nothing fetched from a CDN.
pio.renderers.default = "plotly_mimetype"
pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 20)
FIXTURES = Path("..") / "data" / "fixtures"
# The audit's "now": fixed, so stuck-claim ages and the projection do not move with the clock.
AS_OF = datetime(2025, 10, 20, tzinfo=UTC)
'''

FIGURE_NOTE = "# NBVAL_IGNORE_OUTPUT\n# A figure (its JSON is not compared); the next cell prints its numbers.\n"


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip())


def code(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(text.strip())


def notebook_02() -> list[nbformat.NotebookNode]:
    return [
        md('''
# 02 · Replaying the incident under each policy

How many videos would each duplicate policy have generated for the requests of 2025-10-15?
Instead of arguing from the code, this notebook **replays the request log against the reference
service** (`audit.replay`, the same code as `python -m audit replay`) once per policy:

| policy | what `/create` does | status |
|---|---|---|
| `none` | generate, save | incident replay only |
| `check` | check for a saved video, generate, save (before the write-up's fix) | incident replay only |
| `pending` | check, insert a `generating` row, generate, update (the write-up's fix) | incident replay only |
| `claim` | one atomic conditional upsert, then generate | production |

Each replay starts its own service: a temporary SQLite database, the simulated generator
honouring each request's historical duration (save time − request time) and outcome.

Settings, fixed so the notebook is a regression test:

- **speedup 60**: recorded times and durations divided by 60, so the 5-minute incident replays in 5 s;
- **database latency 50 ms per statement**: the bot talked to Supabase over HTTP, tens of
  milliseconds per round trip; the replayed service sleeps this long before each SQL statement;
- **seed 0** for any duration drawn without history (none here: every request has its video).

What varies from run to run (send lag, exact burst counts under the racy policies) is printed
only in cells whose output is not compared.
'''),
        code(SETUP + '''
from audit.replay.compare import burst_verdict, generations_figure, replay_policies, windows_vs_history
from audit.replay.schedule import burst_requests

SPEEDUP = 60.0
DB_LATENCY_MS = 50.0
SEED = 0
INCIDENT_VIDEOS = [54, 55, 56]
'''),
        md("## The incident's requests\n\nThe three `/create` requests that produced videos 54, 55 and 56."),
        code('''
loaded = audit.load_files(FIXTURES / "videos.csv", FIXTURES / "requests.csv")
history = audit.run_audit(loaded.videos, loaded.requests, as_of=AS_OF)
incident = loaded.requests[loaded.requests["video_id"].isin(INCIDENT_VIDEOS)]
print(incident.to_string(index=False))
'''),
        md("## Replay under the four policies"),
        code('''
incident_table, incident_runs = replay_policies(
    incident, loaded.videos, speedup=SPEEDUP, db_latency_ms=DB_LATENCY_MS, seed=SEED
)
'''),
        code(FIGURE_NOTE + '''
generations_figure(incident_table, title="Incident of 2025-10-15: generations started per policy").show()
'''),
        code('''
print(incident_table.to_string(index=False))
'''),
        md('''
`none` and `check` generate all three videos: the check before the fix only sees *saved*
videos, and every request arrived while the first was still generating (request 3 at +264 s,
the first save at +289 s). `pending` and `claim` generate one. On this incident the
write-up's fix would have worked; the burst below is where it does not.

## Race windows: replay next to history

For each request: its video in history (request → save, from the audit), and under each
policy the time the replay's generation was saved (in the history's clock), or `blocked`.
'''),
        code('''
windows = windows_vs_history(incident_runs, history.race_windows)
print(windows.to_string(index=False))
'''),
        md(f'''
## A burst: {10} identical requests at once

The write-up's own test ("send 3 `/create` within 10 seconds") taken to its limit: identical
requests arriving within one database round trip of each other, as a double-tapped button or
a client retry does. Each generation takes 4 minutes (4 s replayed).
'''),
        code('''
burst, burst_videos = burst_requests(
    10, tg_user_id=6891234507, prompt="Smart wallets as digital assistants...",
    at=datetime(2025, 10, 15, 5, 32, 11, tzinfo=UTC),
)
burst_table, burst_runs = replay_policies(
    burst, burst_videos, speedup=SPEEDUP, db_latency_ms=DB_LATENCY_MS, seed=SEED
)
'''),
        code(FIGURE_NOTE + '''
generations_figure(burst_table, title="Burst of 10 identical requests: generations started per policy").show()
'''),
        code('''
print(burst_verdict(burst_table).to_string(index=False))
'''),
        md('''
The verdict is what holds run to run. The exact count under `pending` is a race: how many
requests finish their SELECT before the first pending row commits depends on scheduling. The
counts and the send lag of this run, not compared:
'''),
        code('''
# NBVAL_IGNORE_OUTPUT
# Exact counts under the racy policies and send lags vary run to run.
print(burst_table.to_string(index=False))
lags = {policy: (run.summary["send_lag_p50_ms"], run.summary["send_lag_p99_ms"])
        for policy, run in {**incident_runs, **burst_runs}.items()}
print("send lag p50/p99 (ms) of the burst replays:", lags)
'''),
        md('''
## Conclusion

- Before the fix (`check`), every request of a race generates: the incident's 3 videos.
- The write-up's fix (`pending`) closes the minutes-long window but not the one between its
  SELECT and its INSERT, two round trips to Supabase: a burst still generates more than once.
- The atomic claim generates exactly once in both cases.
'''),
    ]


def notebook_01() -> list[nbformat.NotebookNode]:
    return [
        md("""
# 01 · Reconstructing the incident of 2025-10-15

The write-up says: three identical `/create` requests at 05:32:11, 05:33:01 and 05:36:35 UTC
produced videos 54, 55 and 56, "$12 wasted"; the cause was a race between the duplicate check
and the save, "fixed" by inserting a pending row first.

This notebook rebuilds the incident from the data with the audit (`audit.run_audit`, the same
code as `python -m audit sweep`): the fixtures `data/fixtures/videos.csv` (56 videos) and
`requests.csv` (the bot's request log). The as-of time is fixed (2025-10-20 00:00 UTC).
"""),
        code(SETUP + """
from audit.report import summary_text, timeline_figure
"""),
        md("## The audit over the whole history"),
        code("""
loaded = audit.load_files(FIXTURES / "videos.csv", FIXTURES / "requests.csv")
result = audit.run_audit(loaded.videos, loaded.requests, as_of=AS_OF)
print(summary_text(result))
"""),
        md("""
## The race window of 54–56

Each bar is one video in flight, from its request (the request log) to its save (`created_at`).
Overlapping bars are the race: 55 and 56 were requested while 54 was still generating, so a
check that only sees saved videos could not see it.
"""),
        code(FIGURE_NOTE + """
incident_windows = result.race_windows[result.race_windows["chain_id"] == 54]
timeline_figure(incident_windows).show()
"""),
        code("""
print(incident_windows[["video_id", "role", "class", "requested_at", "saved_at", "basis"]].to_string(index=False))
"""),
        md("""
## Every duplicate, 45–56, with its class

- `original_id`: the first video of the chain, the one a cleanup keeps; `previous_id`: the
  nearest earlier equivalent video, the evidence.
- `class`: **sequential** when an equivalent video was already saved when the duplicate was
  requested (any check would have caught it), **race** when the original was still in flight.
- `basis`: `request_log` when the request time comes from the log, not estimated.
"""),
        code("""
columns = ["video_id", "original_id", "previous_id", "class", "basis", "requested_at", "created_at", "gap_seconds"]
print(result.duplicates[columns].to_string(index=False))
"""),
        md("""
## The corrected waste

The write-up counts 3 videos × $4 = $12 for the incident, but video 54 was wanted: the waste is
the duplicates, 55 and 56. And the incident was not alone: the same week had nine more
duplicates (45–53), most of them sequential, which the check added in `efcb167` does catch.
"""),
        code("""
incident = audit.run_audit(
    loaded.videos, loaded.requests, as_of=AS_OF,
    since=datetime(2025, 10, 15, 5, 30, tzinfo=UTC), until=datetime(2025, 10, 15, 6, 0, tzinfo=UTC),
)
for name, audited in {"incident 05:30-06:00": incident, "whole history": result}.items():
    s = audited.summary
    print(f"{name}: {s['duplicate_count']} duplicates {[d['video_id'] for d in s['duplicates']]}, "
          f"${s['wasted_usd']:.2f} wasted, by class {s['by_class']}")
"""),
    ]


def notebook_03() -> list[nbformat.NotebookNode]:
    return [
        md("""
# 03 · What the duplicates cost, and what each policy saves

Waste by class and by week, what each duplicate policy would have prevented in this history,
and a monthly projection. All numbers come from `audit.run_audit` over the fixtures
(`data/fixtures/`), as of 2025-10-20 00:00 UTC, at $4 per video (the write-up's price).
"""),
        code(SETUP + """
from datetime import timedelta

from audit.savings import AVERAGE_MONTH, monthly_projection
from audit.report import waste_by_class_figure, waste_by_week_figure

# The observed period: every video in the fixtures, 2025-10-08 to 2025-10-15 inclusive.
SINCE = datetime(2025, 10, 8, tzinfo=UTC)
UNTIL = datetime(2025, 10, 16, tzinfo=UTC) - timedelta(microseconds=1)
loaded = audit.load_files(FIXTURES / "videos.csv", FIXTURES / "requests.csv")
result = audit.run_audit(loaded.videos, loaded.requests, as_of=AS_OF, since=SINCE, until=UNTIL)
print(f"{result.summary['videos_scanned']} videos, {result.summary['duplicate_count']} duplicates, "
      f"${result.summary['wasted_usd']:.2f} wasted")
"""),
        md("## Waste by class"),
        code(FIGURE_NOTE + """
by_class = waste_by_class_figure(result.duplicates)
by_class.show()
"""),
        code("""
for trace in by_class.data:
    print(trace.name, {x: float(y) for x, y in zip(trace.x, trace.y)})
"""),
        md("## Waste by week (weeks start on Monday, UTC)"),
        code(FIGURE_NOTE + """
by_week = waste_by_week_figure(result.duplicates)
by_week.show()
"""),
        code("""
for trace in by_week.data:
    print(trace.name, {x: float(y) for x, y in zip(trace.x, trace.y)})
"""),
        md("""
## What each policy would have saved

Each duplicate judged against the history (`audit.policies`): `check` (the check of
`efcb167`) prevents the sequential duplicates; `pending` (the write-up's fix) also prevents a
race whose request came after the other's pending row was written (one second after its
request: two round trips to Supabase); `claim` prevents every duplicate.
"""),
        code("""
print(result.policies.to_string(index=False))
"""),
        md("""
## Monthly projection

Assumptions, each a parameter of `monthly_projection`:

1. the observed period is the fixtures' 8 days (2025-10-08 to 2025-10-15 inclusive);
2. a month is 365.25 / 12 = 30.44 days;
3. traffic, the duplicate rate and the mix of sequential and race duplicates stay as observed,
   so waste scales linearly with time;
4. every generation costs the same $4, and a prevented duplicate costs nothing (the user gets
   the existing video instead).

Eight days with one incident is a small sample: read the projection as an order of magnitude.
"""),
        code("""
projection = monthly_projection(result.policies, observed=UNTIL - SINCE + timedelta(microseconds=1))
print(f"observed {(UNTIL - SINCE).days + 1} days, month {AVERAGE_MONTH.total_seconds() / 86400:.2f} days")
print(projection.to_string(index=False))
"""),
    ]


NOTEBOOKS = {
    "01": ("01_incident_reconstruction.ipynb", notebook_01),
    "02": ("02_replay_policies.ipynb", notebook_02),
    "03": ("03_savings.ipynb", notebook_03),
}


def build(key: str) -> float:
    name, cells = NOTEBOOKS[key]
    nb = nbformat.v4.new_notebook(cells=cells())
    for index, cell in enumerate(nb.cells):
        cell.id = f"{key}-{index:02d}"  # stable ids: a rebuild diffs only in what changed
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    started = time.monotonic()
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    elapsed = time.monotonic() - started
    nbformat.write(nb, HERE / name)
    return elapsed


if __name__ == "__main__":
    for key in sys.argv[1:] or sorted(NOTEBOOKS):
        print(f"{NOTEBOOKS[key][0]}: executed in {build(key):.1f} s")
