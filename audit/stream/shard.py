"""One user shard of the streaming sweep: `audit.run_audit` on its rows, and what the merge needs.

Runs in a worker process (or in the sweep's own, with one job). `run_audit` gets only the
rows it can use: the look-back rows of the ``(user, prompt key)`` groups that hold a
duplicate (about half a shard; `audit.detect.in_duplicate_groups`), and of those only
`RULE_COLUMNS`; the count, the latest time and the stuck claims are taken from the whole
shard. The shard's duplicates leave as text, already written as ``duplicates.csv`` rows and
``summary.json`` items (`audit.report`'s own writers), in a file ``d-<shard>.arrow`` sorted
like the output ``(created_at, video_id)``, so the merge only interleaves. The rest comes
back to the parent in `ShardOutcome`: counts, the policies' verdicts, the stuck claims, and
the few rows the report page draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from audit.classify import CLASSES
from audit.detect import in_duplicate_groups
from audit.pipeline import run_audit
from audit.policies import POLICY_ROWS
from audit.report_page import MAX_TABLE_ROWS
from audit.stream.partition import LOGGED
from audit.stream.tables import VIDEO_SCHEMA, Spill, requests_from_times, videos_from_arrow
from audit.stream.text import duplicate_texts, iso_text
from audit.stuck import stuck_claims

__all__ = ["ShardJob", "ShardOutcome", "PARTS", "sweep_shard"]

assert "params" not in VIDEO_SCHEMA.names  # see `sweep_shard`: keys are functions of prompts
PARTS = pa.schema([("created_us", pa.int64()), ("video_id", pa.int64()), ("csv", pa.string()), ("json", pa.string())])
# The merge reads each shard's file a part at a time, and holds every shard's current part at
# once: 100 M rows make 208 shards of ~43 k duplicates, which parts of 50 k rows put all in
# memory together (~4 GB of text); parts of 5 k keep it near 0.5 GB.
_PART_ROWS = 5_000
# The page's figures read these of every duplicate; its table these too of the newest. No
# more: the page's frame has a row per duplicate (9 M at 100 M videos), and with every column
# of the newest it held 30 mostly empty columns, 14 GB at its peak.
# What `run_audit` and the stuck claims read of a shard's videos.
RULE_COLUMNS = ["id", "tg_user_id", "prompt", "status", "created_at", "updated_at", "prompt_key"]
SLIM_COLUMNS = ["video_id", "created_at", "class", "cost_usd"]
PAGE_COLUMNS = [*SLIM_COLUMNS, "original_id", "basis", "tg_user_id", "prompt", "requested_at", "gap_seconds"]


@dataclass(frozen=True)
class ShardJob:
    folder: Path
    shard: int
    with_requests: bool
    as_of: datetime
    window: timedelta
    cost_per_video: float
    lease: timedelta
    since: datetime | None
    until: datetime | None


@dataclass
class ShardOutcome:
    shard: int
    scanned: int
    by_class: dict[str, int]
    any_estimate: bool
    prevented: pd.DataFrame  # one bool column per policy row, one row per duplicate
    stuck: pd.DataFrame
    race_windows: pd.DataFrame  # the rows of race chains only: all the timeline draws
    slim: pd.DataFrame  # SLIM_COLUMNS of every duplicate
    newest: pd.DataFrame  # PAGE_COLUMNS of the newest MAX_TABLE_ROWS duplicates
    latest: pd.Timestamp | None  # the latest creation time scanned
    duplicates: int


def _int64(column: pa.ChunkedArray) -> np.ndarray:
    """An int64 (or timestamp) column without nulls as NumPy: a view of a one-chunk column."""
    return column.combine_chunks().view(pa.int64()).to_numpy() if len(column) else np.empty(0, dtype=np.int64)


def _at_least(times_us: np.ndarray, moment: datetime | None) -> np.ndarray:
    return np.ones(len(times_us), dtype=bool) if moment is None else times_us >= _us(moment)


def _us(moment: datetime) -> int:
    return pd.Timestamp(moment).value // 1000  # `value` is in nanoseconds whatever the unit


def _in_order(table: pa.Table) -> pa.Table:
    """The shard's rows in ``(created_at, id)`` order: the parts come in the file's order, each
    sorted, so a file written in time order needs no sort."""
    created, ids = _int64(table["created_at"]), _int64(table["id"])
    step = np.diff(created)
    if ((step > 0) | ((step == 0) & (np.diff(ids) > 0))).all():
        return table
    return table.take(np.lexsort((ids, created)))


def _duplicate_groups(table: pa.Table, look_back: np.ndarray, window: timedelta) -> np.ndarray:
    """The look-back rows whose ``(tg_user_id, prompt_key)`` group holds a duplicate (see
    `audit.detect.in_duplicate_groups`), about half of a shard's rows."""
    rows = table.select(["tg_user_id", "prompt_key", "status", "created_at", "id"])
    if not look_back.all():  # a period: the rows before its look-back take no part
        rows = rows.filter(look_back)
    users, _ = pd.factorize(_int64(rows["tg_user_id"]), sort=False)
    keys, distinct = pd.factorize(pd.Series(rows["prompt_key"].to_pandas()), sort=False)
    group = users.astype(np.int64) * max(len(distinct), 1) + keys
    ok = pc.not_equal(rows["status"], "failed").to_numpy().astype(bool, copy=False) if len(rows) else np.ones(0, bool)
    held = in_duplicate_groups(group, _int64(rows["created_at"]), _int64(rows["id"]), ok, window=window)
    keep = look_back.copy()
    keep[look_back] = held
    return keep


def _request_times(spill: Spill, shard: int, video_id: np.ndarray) -> pd.DataFrame:
    """The shard's request log (each video's earliest request time), for ``video_id`` only,
    in their order."""
    times = spill.read("l", shard, LOGGED)
    at = pd.Index(_int64(times["video_id"])).get_indexer(video_id)
    found = at >= 0
    received = times["received_at"].to_pandas()
    return requests_from_times(video_id[found], pd.Series(received.array.take(at[found])))


def sweep_shard(job: ShardJob) -> ShardOutcome:
    spill = Spill(job.folder)
    table = _in_order(spill.read("v", job.shard, VIDEO_SCHEMA).select(RULE_COLUMNS))
    created_us = _int64(table["created_at"])
    in_scope = _at_least(created_us, job.since)
    if job.until is not None:
        in_scope &= created_us <= _us(job.until)
    look_back = _at_least(created_us, None if job.since is None else job.since - job.window)
    # Everything the rule derives is per (user, prompt key) group, and an exact-prompt group
    # lies inside one key group (the key is a function of the prompt: the spill carries no
    # params), so `run_audit` sees only the groups holding a duplicate, and only the columns
    # it reads; what reads every row (the count, the latest time, the stuck claims) is taken
    # from the whole shard here.
    kept = table.filter(_duplicate_groups(table, look_back, job.window))
    generating = table.filter(pc.equal(table["status"], "generating")) if len(table) else table
    stuck = stuck_claims(videos_from_arrow(generating), as_of=job.as_of, lease=job.lease)
    latest = pd.Timestamp(int(created_us[in_scope].max()), unit="us", tz="UTC") if in_scope.any() else None
    videos = videos_from_arrow(kept)
    requests = None
    if job.with_requests:
        requests = _request_times(spill, job.shard, videos["id"].to_numpy(dtype=np.int64))
    result = run_audit(
        videos, requests, as_of=job.as_of, window=job.window, cost_per_video=job.cost_per_video, lease=job.lease,
        since=job.since, until=job.until, list_duplicates=False, videos_scanned=int(in_scope.sum()),
    )
    dups = result.duplicates
    # The two times both files print, made text once for both.
    iso = {c: iso_text(dups[c]) for c in ("created_at", "requested_at")}
    rows, items = duplicate_texts(dups, iso=iso)
    created_us = dups["created_at"].array.asi8 if len(dups) else np.empty(0, dtype=np.int64)
    path = spill.path("d", job.shard)
    path.parent.mkdir(exist_ok=True)
    with pa.ipc.new_stream(path, PARTS) as writer:
        for start in range(0, len(rows), _PART_ROWS):
            stop = start + _PART_ROWS
            writer.write_table(pa.table({"created_us": created_us[start:stop],
                                         "video_id": dups["video_id"].to_numpy(dtype=np.int64)[start:stop],
                                         "csv": rows[start:stop], "json": items[start:stop]}, schema=PARTS))
    windows = result.race_windows
    newest = dups.sort_values(["created_at", "video_id"], ascending=False).head(MAX_TABLE_ROWS)[PAGE_COLUMNS]
    return ShardOutcome(
        shard=job.shard,
        scanned=int(result.summary["videos_scanned"]),
        by_class={c: int(result.summary["by_class"][c]) for c in CLASSES},
        any_estimate=bool(len(dups)) and result.summary["classification_basis"] != "request_log",
        prevented=pd.DataFrame({p: dups[f"prevented_by_{p}"].to_numpy(dtype=bool) for p in POLICY_ROWS}),
        stuck=stuck,
        race_windows=windows.loc[windows["class"] == "race"] if len(windows) else windows,
        slim=dups[SLIM_COLUMNS],
        newest=newest,
        latest=latest,
        duplicates=len(dups),
    )
