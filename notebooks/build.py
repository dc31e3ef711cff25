"""Write the golden notebooks from the cells below and execute them, storing their outputs.

    .venv/bin/python notebooks/build.py [01 02 03 04 05]

The cells live here so a change to a notebook is a reviewable diff of Python, not of JSON;
the executed ``.ipynb`` files (outputs included) are what nbval checks. Needs ``nbclient``,
and ``kaleido`` with a Chrome/Chromium for the figures' PNGs (``pip install -e ".[dev,notebooks]"``;
see `audit.notebook`). Cells only call `audit` and `service`: a number a notebook shows is
computed there.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat

from audit.notebook import IMAGES_ENV

try:
    from nbclient import NotebookClient
except ImportError:  # not a test dependency: nbval executes notebooks by itself
    sys.exit("notebooks/build.py needs nbclient: .venv/bin/pip install nbclient")

HERE = Path(__file__).resolve().parent

SETUP = '''\
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

import audit
from audit.notebook import setup_figures

# Each figure: plotly's JSON for JupyterLab and a PNG where no JavaScript runs (nbconvert's
# HTML, static previews); no plotly.js embedded, nothing fetched from a CDN.
_ = setup_figures()
pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 20)
FIXTURES = Path("..") / "data" / "fixtures"
# The audit's "now": fixed, so stuck-claim ages and the projection do not move with the clock.
AS_OF = datetime(2025, 10, 20, tzinfo=UTC)
'''

FIGURE_NOTE = "# NBVAL_IGNORE_OUTPUT\n# A figure (its JSON and PNG are not compared); the next cell prints its numbers.\n"


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
        md('''
## Video 46: a double tap in the real data

The write-up's fix is not beaten only by a synthetic burst. On 2025-10-14 at 08:58:00 the same
user sent "A fox sleeping under falling snow" twice within the same second (`req-0047`,
`req-0048`): videos 44 and 46. From the history, the audit already says the pending row
would not have stopped 46: its request came less than one round trip (the check, then the
insert) after 44's. Replayed under the write-up's fix and under the claim:
'''),
        code('''
fox = loaded.requests[loaded.requests["video_id"].isin([44, 46])]
print(fox.to_string(index=False))
verdicts = history.duplicates.set_index("video_id").loc[[46], ["original_id", "class", "prevented_by_pending", "prevented_by_claim"]]
print(verdicts.to_string())
fox_table, fox_runs = replay_policies(
    fox, loaded.videos, policies=("pending", "claim"), speedup=SPEEDUP, db_latency_ms=DB_LATENCY_MS, seed=SEED
)
print(burst_verdict(fox_table).to_string(index=False))
'''),
        md(f'''
## A burst: {10} identical requests at once

The write-up's own test ("send 3 `/create` within 10 seconds") taken to its limit: 46's double
tap, ten times over, as a client retrying in a loop does. Each generation takes 4 minutes
(4 s replayed).
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
- The write-up's fix (`pending`) closes the minutes-long window of 54–56, but not the one
  between its SELECT and its INSERT, two round trips to Supabase. The real data already has
  a request inside it: **video 46**, a double tap under one second after 44, which the fix
  would still have generated (and paid for). A burst of ten does the same, more than once.
- The atomic claim generates exactly once in every case: the incident, 44/46, and the burst.
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
- `class`: **sequential** when an equivalent video (same user, same prompt key) was already
  saved when the duplicate was requested, at most 24 h before (a check on the prompt key would
  have caught it), **race** when the original was still in flight.
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
duplicates (45–53).
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
        md("""
## Which duplicates the bot's own checks caught

Seven of the eleven are sequential: an equivalent video was already saved when they were
requested. But the check added in `efcb167` compared the **exact prompt text**
(`.eq("prompt", prompt)`), and the write-up's fix kept that comparison. Per duplicate, whether
each policy would have prevented it (`audit.policies`; `check` is the check of `efcb167`,
`pending` the write-up's fix, `claim` the service):
"""),
        code("""
caught = result.duplicates[["video_id", "class", "prompt", "prevented_by_check", "prevented_by_pending", "prevented_by_claim"]]
print(caught.rename(columns=lambda c: c.replace("prevented_by_", "")).to_string(index=False))
sequential = caught[caught["class"] == "sequential"]
print(f"sequential: {len(sequential)}, caught by the check of efcb167: {int(sequential['prevented_by_check'].sum())} "
      f"{list(sequential.loc[sequential['prevented_by_check'], 'video_id'])}")
"""),
        md("""
## Conclusion

- The incident cost **$8**, not $12: 54 was the video the user asked for; 55 and 56 are the
  waste, and both are races (requested while 54 was still generating).
- The week cost **$44** in 11 duplicates. Only **2 of the 7 sequential** ones (48, 50) were
  caught by the check of `efcb167`: it matched the exact text, so a resend differing by case,
  spacing or a trailing "!" or "." (47, 49, 51, 52, 53) went through.
- The write-up's fix (pending row) would also have stopped the races 45, 55 and 56, but not 46
  (two requests in the same second) and none of the five variants: it would have left **$24**.
  A claim on the prompt key prevents all 11.
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
        md("## Waste by week (7 days counted back from the end of the period, as in the weekly report)"),
        code(FIGURE_NOTE + """
by_week = waste_by_week_figure(result.duplicates, end=UNTIL)
by_week.show()
"""),
        code("""
for trace in by_week.data:
    print(trace.name, {x: float(y) for x, y in zip(trace.x, trace.y)})
"""),
        md("""
## What each policy would have saved

Each duplicate judged against the history (`audit.policies`), each policy as the bot ran it:

- `none`: no check;
- `check`, the check of `efcb167`: a saved video with the **exact same prompt text** in the
  last 24 h;
- `pending`, the write-up's fix: the same exact-text check, but against a `generating` row
  inserted right after it (visible one second after its request: two round trips to
  Supabase), so it also stops races that are not double taps;
- `claim`, the service: one atomic claim on the prompt key; prevents every duplicate.

`check-by-key` and `pending-by-key` are what the two legacy checks would have done had they
matched the prompt key as the service does: a comparison, not something that ran.
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
        code("""
per_month = projection.set_index("policy")["wasted_usd_per_month"]
print(f"wasted per month: no check ${per_month['none']:.2f}, the write-up's fix (pending) ${per_month['pending']:.2f}, "
      f"claim-first ${per_month['claim']:.2f}")
"""),
        md("""
## Conclusion

At the rate of these 8 days (one incident: read it as an order of magnitude), duplicates
cost about **$167 a month** with no check.

- **The write-up's fix still wastes about $91 a month** ($24 of the $44 observed): it compares
  the exact prompt text, so a resend with another case, spacing or a trailing "!" passes, and
  a double tap like 46 beats its two round trips.
- **Claim-first wastes $0 a month**: it saves the $91 the fix leaves, on top of the $76 the
  fix saves.
- The write-up's "$50-200/month" brackets the waste; what its fix would have saved is about
  $76 of it.
"""),
    ]


def notebook_04() -> list[nbformat.NotebookNode]:
    return [
        md("""
# 04 · Which duplicate window should we run, and what does it cost us in annoyed users?

The service blocks a repeat of the same user's prompt key for 24 h. A longer window catches
more paid repeats; it also blocks more users who *wanted* a new video. This notebook puts the
two side by side for windows from 1 h to 7 days and three keys (`audit.tuning`, the same code
as `python -m audit tune`):

- `exact`: the prompt text as typed (the old duplicate check);
- `prompt_key`: case, spacing and trailing punctuation folded (what the service runs);
- `near≥90`: one user's prompts that rapidfuzz scores 90 or more alike.

A blocked repeat **looks intended** when it was requested after the earlier video had been
delivered and more than 6 hours after it (the user had it, kept it, and asked again); every
other blocked repeat is **caught** (a double tap, a resend while it generated, or soon after).
Each repeat is judged against the history as it happened.
"""),
        code(SETUP + """
from audit.synthetic import synthetic_requests, synthetic_videos
from audit.tuning import blocked_repeats, tune
from audit.tuning_page import tuning_figure, tuning_text
"""),
        md("## The incident's fortnight (`data/fixtures/`)"),
        code("""
loaded = audit.load_files(FIXTURES / "videos.csv", FIXTURES / "requests.csv")
fixture_table = tune(loaded.videos, loaded.requests)
print(tuning_text(fixture_table))
"""),
        code(FIGURE_NOTE + """
tuning_figure(fixture_table, title="Incident fortnight: caught dollars against intended repeats blocked").show()
"""),
        md("""
Every repeat today's rule (24 hours, `prompt_key`) blocks (each repeats its `earlier_id`'s prompt
in another spelling at most), with the proxy's verdict, and what
the near-duplicate key adds (a human reads these: the proxy cannot tell a variation from a
mistake). `hours_after_delivery` is empty when the repeat came before the earlier video was
delivered:
"""),
        code("""
repeats = blocked_repeats(loaded.videos, loaded.requests)
print(repeats[["video_id", "earlier_id", "prompt", "hours_after_delivery", "looks_intended"]].to_string(index=False))
near = audit.near_duplicates(loaded.videos, threshold=90)
print(near[["video_id", "earlier_id", "prompt", "earlier_prompt", "similarity"]].to_string(index=False))
"""),
        md("""
## A synthetic history (`audit.synthetic`, 200,000 videos, 60 days)

Users resend a few favourite prompts at random times; its prompts ("Prompt 3 for user 17")
differ by one character, so the near-duplicate key merges all of one user's prompts: read
that line as what an over-eager similarity does, not as a forecast.
"""),
        code("""
videos = synthetic_videos(200_000, seed=0)
synthetic_table = tune(videos, synthetic_requests(videos, seed=0))
print(tuning_text(synthetic_table))
"""),
        code(FIGURE_NOTE + """
tuning_figure(synthetic_table, title="Synthetic history: caught dollars against intended repeats blocked").show()
"""),
        md("""
## Conclusion

- On the incident's fortnight, every mistaken repeat ($24: double taps, resends while
  generating, resends minutes after) comes within **12 hours**: 1 h to 12 h catch the same
  $24 and block no repeat that looks intended.
- The **24-hour window** (today) blocks 5 more: users who asked again 18 to 24 hours after
  receiving their video (47, 48, 50, 51, 52). The write-up counted them as waste; by this
  proxy they are 5 users who wanted a new video and would have been shown the old one.
  48 h to 7 d add one more (13, a day and 7 minutes later) and catch nothing new.
- `exact` misses the case and punctuation variants ($16 instead of $24); `near≥90` adds one
  catch (23, the blue car after the red one, which the user surely meant): not worth blocking.
- A window no longer than the proxy's 6 hours cannot block a repeat that looks intended (both
  count hours from the earlier video): below 6 h the table says what is caught, above it what
  that costs. On this history 12 h still annoys nobody.
- **Recommendation**: the service's key (`prompt_key`), and a window of **12 hours**
  (`CLAIMFIRST_DUPLICATE_WINDOW_HOURS=12`): the same dollars caught on this history, nobody who
  came back the next day refused. Re-run `python -m audit tune` on a month of real traffic
  before changing it: a fortnight is a small sample, and the synthetic history (uniform
  resends) says nothing about when real users come back.
"""),
    ]


def notebook_05() -> list[nbformat.NotebookNode]:
    return [
        md("""
# 05 · The books against the provider's bill

Does what Replicate billed match what the service recorded? `audit.reconcile` (the same code
as `python -m audit reconcile`) joins every attempt (`videos.provider_job_id`, `cost_usd`) with
every prediction on the provider's list, and lists, by day, with the job ids behind each:
**leaks** (billed, no attempt knows the job), **unknown jobs** (recorded, not on the bill),
**double payments** (a job billed for a video the same user had already paid for within the
window) and **cost mismatches**.

The data: `data/fixtures/attempts.csv` (the incident's fortnight as the service's books, with
job ids and costs) and `predictions.json` (Replicate's list for those days, newest first, as
`GET /v1/predictions` returns it), both written by `data/fixtures/make_billing.py`, which lists
the differences it planted. Billed: $4 for every prediction that started.
"""),
        code(SETUP + """
from audit.reconcile import Pricing, reconcile
from audit.reconcile_page import reconcile_figure, reconcile_text
from audit.sources.attempts import load_attempts_file
from audit.sources.replicate import predictions_frame, read_predictions_file

attempts = load_attempts_file(FIXTURES / "attempts.csv", period=audit.Period())
predictions = predictions_frame(read_predictions_file(FIXTURES / "predictions.json"))
result = reconcile(attempts, predictions, pricing=Pricing(cost_per_video=4.0))
print(reconcile_text(result))
"""),
        md("## Per day"),
        code(FIGURE_NOTE + """
reconcile_figure(result.by_day).show()
"""),
        code("""
print(result.by_day.to_string(index=False))
"""),
        md("## The jobs behind each finding"),
        code("""
print("Leaks:")
print(result.leaks[["job_id", "created_at", "status", "billed_usd", "prompt"]].to_string(index=False))
print("\\nUnknown jobs:")
print(result.unknown[["id", "provider_job_id", "created_at", "status", "cost_usd"]].to_string(index=False))
print("\\nDouble payments:")
print(result.doubles[["job_id", "earlier_job_id", "video_ids", "tg_user_id", "gap_seconds", "billed_usd"]].to_string(index=False))
print("\\nCost mismatches:")
print(result.mismatches[["job_id", "video_ids", "billed_usd", "recorded_usd"]].to_string(index=False))
"""),
        md("## The bill agrees with the sweep"),
        code("""
sweep = audit.run_audit(attempts, None, as_of=AS_OF)
paid_twice = sorted(v for ids in result.doubles["video_ids"] for v in ids)
print("double payments:", paid_twice)
print("sweep duplicates:", sorted(sweep.duplicates["video_id"].tolist()))
print("same videos:", paid_twice == sorted(sweep.duplicates["video_id"].tolist()))
"""),
        md("""
## Conclusion

- The provider billed **$228** for 57 predictions; the books recorded **$220**.
- **$8 leaked**: two predictions no video knows, the two requests the bot gave up on
  (09 Oct 09:00, which succeeded at the provider after the bot stopped waiting, and 11 Oct
  13:02, which failed). Before the service recorded each job's id first, nothing showed them.
- **$44 paid twice**: the 11 double payments are the sweep's 11 duplicates, seen from the
  bill. The claim-first service makes these $0.
- Video 21 names a job the bill does not list ($4 recorded, not billed): a job id from another
  token. Video 8 failed, was billed, and was recorded at $0.
"""),
    ]


NOTEBOOKS = {
    "01": ("01_incident_reconstruction.ipynb", notebook_01),
    "02": ("02_replay_policies.ipynb", notebook_02),
    "03": ("03_savings.ipynb", notebook_03),
    "04": ("04_tuning.ipynb", notebook_04),
    "05": ("05_reconcile.ipynb", notebook_05),
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
    try:
        import kaleido  # noqa: F401  (plotly's PNG export)
    except ImportError:
        sys.exit('notebooks/build.py draws PNGs with kaleido: .venv/bin/pip install -e ".[dev,notebooks]"')
    os.environ[IMAGES_ENV] = "1"  # the kernels inherit it: figures get their PNG
    for key in sys.argv[1:] or sorted(NOTEBOOKS):
        print(f"{NOTEBOOKS[key][0]}: executed in {build(key):.1f} s")
