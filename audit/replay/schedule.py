"""What a replay sends and when: the schedule, built from the request log and the videos.

Each request is sent at its recorded time after the first request, divided by the speedup.
Its generation takes its historical duration (the linked video's save time minus the
request's ``received_at``), divided by the same speedup, so the overlap of generations, the
race window, is the one the incident had. A request that produced no video (or a video saved
as ``failed``) fails. When there is no history for a request (no ``--videos``, an unknown
video, a save time before the request), its duration is drawn uniformly from
``duration_range``, the 2-5 minutes the write-up gives for a generation, with a fixed seed.

With ``max_gap`` the idle time between bursts is skipped (`audit.replay.compress`): send times
and durations go through the replay clock, which keeps every race and every window of the
history, and chooses the window the replayed service runs (``attrs["window_seconds"]``).

`burst_requests` builds the other scenario: N identical requests at the same instant.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from audit.detect import DEFAULT_WINDOW
from audit.frames import normalise_requests, normalise_videos
from audit.replay.compress import replay_clock
from service.prompt_key import prompt_key

__all__ = ["DEFAULT_DURATION_RANGE", "DEFAULT_MAX_GAP", "DEFAULT_SPEEDUP", "POLICIES", "build_schedule", "burst_requests"]

# The admission policies a replay can run (the service's own names). Here, with the other
# settings of a replay, so the command line can offer them without loading the HTTP client.
POLICIES = ("none", "check", "pending", "claim")
# The write-up: "2-5 minutes of video generation".
DEFAULT_DURATION_RANGE = (120.0, 300.0)
# A 5-minute incident replays in 5 seconds, still slow enough that the incident's shortest
# gap that matters (request 3 at +264 s vs the first save at +289 s: 25 s) stays 0.4 s apart,
# far above the send lag.
DEFAULT_SPEEDUP = 60.0
# The command's default (the library keeps the true spacing unless asked). Each idle gap of the
# fixture's week (about 70: its requests, and the generations that had a later equivalent
# request) costs this much, so 0.5 s replays it in under a minute; it is still ten times the
# time a /create takes under a replayed 50 ms database round trip, so an event on either side of
# a shortened gap cannot overtake the other.
DEFAULT_MAX_GAP = 0.5

SCHEDULE_COLUMNS = [
    "request_id", "received_at", "tg_user_id", "prompt", "prompt_key", "video_id",
    "offset_seconds", "history_seconds", "duration_source", "duration_seconds", "sim_seconds", "sim_fail",
]


def build_schedule(
    requests: pd.DataFrame,
    videos: pd.DataFrame | None = None,
    *,
    speedup: float = DEFAULT_SPEEDUP,
    duration_range: tuple[float, float] = DEFAULT_DURATION_RANGE,
    seed: int = 0,
    max_gap: float | None = None,
    window: timedelta = DEFAULT_WINDOW,
    fixed_window: bool = False,
) -> pd.DataFrame:
    """One row per request, in send order, with when to send it and how its generation goes.

    ``requests`` and ``videos`` are canonical frames (`audit.frames`). Columns:
    ``offset_seconds`` (replay time after the first send), ``history_seconds`` (the
    historical generation time, NaN when unknown), ``duration_source`` (``history`` or
    ``drawn``), ``sim_seconds`` (the replayed generation time) and ``sim_fail``.
    """
    if speedup <= 0:
        raise ValueError("speedup must be positive")
    low, high = duration_range
    if not 0 <= low <= high:
        raise ValueError("duration range needs 0 <= min <= max")
    out = requests.reset_index(drop=True).copy()
    out["prompt_key"] = out["prompt"].map(prompt_key)
    first = out["received_at"].min()
    history_offset = (out["received_at"] - first).dt.total_seconds()

    history = pd.Series(float("nan"), index=out.index)
    failed_ids: set[int] = set()
    linked = out["video_id"]
    if videos is not None and not videos.empty:
        saved_at = linked.map(videos.set_index("id")["created_at"])
        history = (saved_at - out["received_at"]).dt.total_seconds()
        failed_ids = set(videos.loc[videos["status"] == "failed", "id"].astype(int))
    # A save before the request means the link is wrong, not a negative generation time.
    out["history_seconds"] = history.where(history >= 0).astype(float)

    # One draw per request, in send order, whether or not it is used: adding history for
    # one request must not change the drawn durations of the others.
    rng = random.Random(seed)
    drawn = pd.Series([rng.uniform(low, high) for _ in range(len(out))], dtype=float)
    known = out["history_seconds"].notna()
    out["duration_source"] = known.map({True: "history", False: "drawn"})
    out["duration_seconds"] = out["history_seconds"].where(known, drawn)
    # The clock runs over the requests in time order; rows stay in the log's order.
    order = np.argsort(history_offset.to_numpy(), kind="stable")
    start = history_offset.to_numpy()[order] / speedup
    end = start + out["duration_seconds"].to_numpy()[order] / speedup
    groups = list(zip(out["tg_user_id"].to_numpy()[order], out["prompt_key"].to_numpy()[order]))
    clock = replay_clock(start, end, groups, window=window.total_seconds() / speedup, max_gap=max_gap,
                         fixed_window=fixed_window)
    offsets, finishes = np.empty(len(out)), np.empty(len(out))
    offsets[order], finishes[order] = clock.at(start), clock.at(end)
    out["offset_seconds"] = offsets
    out["sim_seconds"] = finishes - offsets
    out["sim_fail"] = linked.isna() | linked.isin(failed_ids)
    out["sim_fail"] = out["sim_fail"].astype(bool)
    schedule = out[SCHEDULE_COLUMNS].copy()
    schedule.attrs["window_seconds"] = clock.window_seconds
    return schedule


def burst_requests(
    count: int,
    *,
    tg_user_id: int,
    prompt: str,
    at: datetime,
    generation_seconds: float = 240.0,
    first_video_id: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A history of `count` identical requests received at the same instant: (requests, videos).

    This is the write-up's own test ("/create" three times within seconds) taken to its
    limit: every request arrives within one database round trip of the others. As in the
    incident, every request produced its own video, each saved `generation_seconds` later,
    so a replay gives each generation that duration and none fails.
    """
    if count < 1:
        raise ValueError("a burst needs at least one request")
    received = pd.Timestamp(at)
    ids = list(range(first_video_id, first_video_id + count))
    requests = pd.DataFrame(
        {
            "request_id": [f"burst-{i + 1:03d}" for i in range(count)],
            "received_at": [received.isoformat()] * count,
            "tg_user_id": [tg_user_id] * count,
            "prompt": [prompt] * count,
            "video_id": ids,
        }
    )
    saved = (received + pd.Timedelta(seconds=generation_seconds)).isoformat()
    videos = pd.DataFrame(
        {
            "id": ids,
            "tg_user_id": [tg_user_id] * count,
            "prompt": [prompt] * count,
            "status": ["ready"] * count,
            "created_at": [saved] * count,
        }
    )
    return normalise_requests(requests, source="burst"), normalise_videos(videos, source="burst")
