"""One user shard of the streaming sweep: `audit.run_audit` on its rows, and what the merge needs.

Runs in a worker process (or in the sweep's own, with one job). The shard's duplicates leave
as text, already written as ``duplicates.csv`` rows and ``summary.json`` items
(`audit.report`'s own writers), in a file ``d-<shard>.arrow`` sorted like the output
``(created_at, video_id)``, so the merge only interleaves. The rest comes back to the parent
in `ShardOutcome`: counts, the policies' verdicts, the stuck claims, and the few rows the
report page draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from audit.classify import CLASSES
from audit.pipeline import run_audit
from audit.policies import POLICY_ROWS
from audit.report_page import MAX_TABLE_ROWS
from audit.stream.partition import LOGGED
from audit.stream.tables import VIDEO_SCHEMA, Spill, requests_from_times, videos_from_arrow
from audit.stream.text import duplicate_texts
from audit.words import iso_utc

__all__ = ["ShardJob", "ShardOutcome", "PARTS", "sweep_shard"]

PARTS = pa.schema([("created_us", pa.int64()), ("video_id", pa.int64()), ("csv", pa.string()), ("json", pa.string())])
_PART_ROWS = 50_000
# The page's figures read these of every duplicate; its table these too of the newest. No
# more: the page's frame has a row per duplicate (9 M at 100 M videos), and with every column
# of the newest it held 30 mostly empty columns, 14 GB at its peak.
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


def sweep_shard(job: ShardJob) -> ShardOutcome:
    spill = Spill(job.folder)
    videos = videos_from_arrow(spill.read("v", job.shard, VIDEO_SCHEMA))
    requests = None
    if job.with_requests:
        times = spill.read("l", job.shard, LOGGED)
        requests = requests_from_times(times["video_id"].to_numpy(), times["received_at"].to_pandas())
    result = run_audit(
        videos, requests, as_of=job.as_of, window=job.window, cost_per_video=job.cost_per_video, lease=job.lease,
        since=job.since, until=job.until, list_duplicates=False,
    )
    dups = result.duplicates
    # The two times both files print, made text once for both.
    iso = {c: iso_utc(dups[c]).tolist() for c in ("created_at", "requested_at")}
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
        by_class={c: int((dups["class"] == c).sum()) for c in CLASSES},
        any_estimate=bool((dups["basis"] == "estimate").any()),
        prevented=pd.DataFrame({p: dups[f"prevented_by_{p}"].to_numpy(dtype=bool) for p in POLICY_ROWS}),
        stuck=result.stuck_claims,
        race_windows=windows.loc[windows["class"] == "race"] if len(windows) else windows,
        slim=dups[SLIM_COLUMNS],
        newest=newest,
        latest=result.videos["created_at"].max() if len(result.videos) else None,
        duplicates=len(dups),
    )
