"""Which window and which key to run: for each, what it would have caught and whom it would
have annoyed, from the history.

The manager's question: "what window should we run, and what does it cost us in annoyed
users?". For every pair of a **window** (1 h … 7 d) and a **key function**, this replays the
duplicate rule of `audit.detect` over the history and splits the repeats it would have
blocked in two:

- **caught**: repeats that look like mistakes (a double tap, a resend while the first was
  generating, a resend soon after it arrived). Each one blocked is a generation not paid for.
- **intended**: repeats that look wanted. The proxy: the repeat was *requested after the
  earlier video had been delivered* (``ready``) and *more than* ``intended_after`` (default
  6 h) after it was. A user who got the video, kept it for hours and asks again most likely
  wants a new one; blocking them shows the old video instead. These are the annoyed users.

The key functions, from the strictest:

- ``exact``: the prompt text as typed (the old duplicate check);
- ``prompt_key``: `service.prompt_key`, case, spacing, invisible characters and trailing
  punctuation folded (what the service runs);
- ``near≥T``: prompt keys of one user whose rapidfuzz similarity (`audit.near`) is at least
  T. Each user's distinct keys are grouped greedily in first-use order: a key joins the
  group of the first earlier key it scores T or more against, else starts a group.

What "would have blocked" means: as in the sweep, a video V is blocked when the nearest
earlier non-failed video of the same user and key was created at most the window before V
(`audit.detect`); with (24 h, ``prompt_key``) that is exactly the sweep's duplicates. Each
video is judged against the history as it happened (first order: blocking one repeat is
assumed not to unblock a later one, as in `audit.policies`). "Delivered" is the earlier
video's ``updated_at`` when it is ``ready`` (its save time in the bot's history), and the
repeat's request time comes from the request log, else is estimated (`audit.classify`).

Vectorised: one pass per key function finds each video's nearest earlier non-failed video
(a running maximum over rows sorted by group, as `audit.detect` does), then every window is
one comparison of the same gap array. Only the near-duplicate grouping loops, once per user.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process

from audit.classify import request_times
from audit.detect import DEFAULT_WINDOW
from audit.frames import normalise_requests, normalise_videos
from audit.near import DEFAULT_SIMILARITY
from audit.sources.base import in_period
from audit.visible import group_codes

__all__ = ["DEFAULT_WINDOWS", "DEFAULT_INTENDED_AFTER", "CURRENT", "key_names", "near_groups", "tune", "blocked_repeats"]

DEFAULT_WINDOWS = tuple(timedelta(hours=h) for h in (1, 3, 6, 12, 24, 48, 72, 168))
# A user who kept a video this long before asking again most likely wants another one.
DEFAULT_INTENDED_AFTER = timedelta(hours=6)
CURRENT = (DEFAULT_WINDOW, "prompt_key")  # what the service runs today


def key_names(similarity: float = DEFAULT_SIMILARITY) -> tuple[str, str, str]:
    return ("exact", "prompt_key", f"near≥{similarity:g}")


def near_groups(videos: pd.DataFrame, *, threshold: float = DEFAULT_SIMILARITY) -> np.ndarray:
    """A group number per row: its user's prompt keys grouped by similarity (module docstring)."""
    pairs = videos[["tg_user_id", "prompt_key"]].drop_duplicates(keep="first")  # first-use order
    group = np.empty(len(pairs), dtype=np.int64)
    next_group = 0
    users = pairs["tg_user_id"].to_numpy()
    keys = pairs["prompt_key"].to_numpy(dtype=object)
    order = np.argsort(users, kind="stable")
    bounds = np.flatnonzero(np.r_[True, users[order][1:] != users[order][:-1], True])
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        rows = order[start:stop]
        if len(rows) == 1:
            group[rows[0]] = next_group
            next_group += 1
            continue
        scores = process.cdist(keys[rows], keys[rows], scorer=fuzz.ratio, score_cutoff=threshold)
        leaders: list[int] = []
        for i, row in enumerate(rows):
            leader = next((j for j in leaders if scores[i, j] >= threshold), None)
            if leader is None:
                leaders.append(i)
                group[row] = next_group
                next_group += 1
            else:
                group[row] = group[rows[leader]]
    lookup = pd.Series(group, index=pd.MultiIndex.from_frame(pairs))
    return lookup.reindex(pd.MultiIndex.from_frame(videos[["tg_user_id", "prompt_key"]])).to_numpy(dtype=np.int64)


def _nearest_earlier(codes: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Per row (rows in time order), the position of the nearest earlier ``ok`` row with the
    same code, or -1."""
    n = len(codes)
    order = np.argsort(codes, kind="stable")  # groups in time order, as in `audit.detect`
    position = np.arange(n)
    first = np.ones(n, dtype=bool)
    first[1:] = codes[order][1:] != codes[order][:-1]
    start = np.maximum.accumulate(np.where(first, position, 0)) if n else position
    last_ok = np.maximum.accumulate(np.where(ok[order], position, -1)) if n else position
    previous = np.full(n, -1, dtype=np.int64)
    previous[1:] = last_ok[:-1]
    found = np.where(previous >= start, order[np.maximum(previous, 0)], -1)
    out = np.empty(n, dtype=np.int64)
    out[order] = found
    return out


@dataclass(frozen=True)
class _History:
    """What every (key, window) verdict reads, computed once per history."""

    videos: pd.DataFrame
    created: np.ndarray  # microseconds
    asked: np.ndarray  # the repeat's request time, microseconds
    delivered: np.ndarray  # the video's delivery (its save) time, microseconds
    ready: np.ndarray
    codes: dict[str, np.ndarray]  # key name -> group code per video
    earlier: dict[str, np.ndarray]  # key name -> nearest earlier non-failed video (row), -1 if none


def _history(videos: pd.DataFrame, requests: pd.DataFrame | None, similarity: float) -> _History:
    videos = normalise_videos(videos)
    requests = normalise_requests(requests) if requests is not None else None
    ok = (videos["status"] != "failed").to_numpy()
    exact, keyed = (group_codes(videos, ["tg_user_id", c]) for c in ("prompt", "prompt_key"))
    near = group_codes(videos.assign(_near=near_groups(videos, threshold=similarity)), ["tg_user_id", "_near"])
    codes = dict(zip(key_names(similarity), (exact, keyed, near), strict=True))
    return _History(
        videos=videos,
        created=videos["created_at"].array.asi8,  # microseconds, canonical frames are sorted
        asked=request_times(videos, requests)["requested_at"].dt.as_unit("us").array.asi8,
        delivered=videos["updated_at"].where(videos["updated_at"].notna(), videos["created_at"])
        .dt.as_unit("us").array.asi8,
        ready=(videos["status"] == "ready").to_numpy(),
        codes=codes,
        earlier={name: _nearest_earlier(c, ok) for name, c in codes.items()},
    )


def _verdicts(h: _History, name: str, intended_after: timedelta, counted: np.ndarray):
    """Per video, for one key: has an earlier video, the gap to it (µs) and whether a repeat
    of it looks intended (the module's proxy)."""
    earlier = h.earlier[name]
    has = (earlier >= 0) & counted
    safe = np.maximum(earlier, 0)
    gap = np.where(has, h.created - h.created[safe], np.iinfo(np.int64).max)
    after_us = int(intended_after / timedelta(microseconds=1))
    intended = has & h.ready[safe] & (h.asked - h.delivered[safe] > after_us)
    return earlier, gap, intended


def tune(
    videos: pd.DataFrame,
    requests: pd.DataFrame | None = None,
    *,
    windows: tuple[timedelta, ...] = DEFAULT_WINDOWS,
    similarity: float = DEFAULT_SIMILARITY,
    intended_after: timedelta = DEFAULT_INTENDED_AFTER,
    cost_per_video: float = 4.0,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """One row per (key, window): ``key, window_hours, blocked, blocked_usd, caught, caught_usd,
    intended_blocked, users_annoyed, intended_share, current``; keys strictest first,
    windows ascending. ``intended_share`` is the share of blocked repeats that look intended.
    Only videos created in ``[since, until]`` are counted; earlier ones (pass one longest
    window of them) are what they repeat."""
    h = _history(videos, requests, similarity)
    users = h.videos["tg_user_id"].to_numpy()
    counted = in_period(h.videos["created_at"], since, until).to_numpy()
    rows = []
    for name in h.codes:
        _, gap, intended = _verdicts(h, name, intended_after, counted)
        for window in sorted(windows):
            blocked = gap <= int(window / timedelta(microseconds=1))
            wanted = blocked & intended
            caught = int((blocked & ~wanted).sum())
            rows.append(
                {
                    "key": name,
                    "window_hours": window.total_seconds() / 3600,
                    "blocked": int(blocked.sum()),
                    "blocked_usd": round(int(blocked.sum()) * cost_per_video, 2),
                    "caught": caught,
                    "caught_usd": round(caught * cost_per_video, 2),
                    "intended_blocked": int(wanted.sum()),
                    "users_annoyed": int(len(np.unique(users[wanted]))),
                    "intended_share": round(float(wanted.sum() / blocked.sum()), 4) if blocked.any() else 0.0,
                    "current": (window, name) == CURRENT,
                }
            )
    return pd.DataFrame(rows)


def blocked_repeats(
    videos: pd.DataFrame,
    requests: pd.DataFrame | None = None,
    *,
    window: timedelta = DEFAULT_WINDOW,
    key: str = "prompt_key",
    similarity: float = DEFAULT_SIMILARITY,
    intended_after: timedelta = DEFAULT_INTENDED_AFTER,
) -> pd.DataFrame:
    """The repeats one (window, key) of `tune` blocks, one row each, for a human to read:
    ``video_id, earlier_id, tg_user_id, prompt, earlier_prompt, hours_after_delivery,
    looks_intended``. ``hours_after_delivery`` is from the earlier video's delivery to the
    repeat's request (NaN when the earlier one was not delivered before the repeat was asked)."""
    h = _history(videos, requests, similarity)
    if key not in h.codes:
        raise ValueError(f"unknown key {key!r}: one of {', '.join(h.codes)}")
    earlier, gap, intended = _verdicts(h, key, intended_after, np.ones(len(h.videos), dtype=bool))
    rows = np.flatnonzero(gap <= int(window / timedelta(microseconds=1)))
    before = earlier[rows]
    v = h.videos
    after = (h.asked[rows] - h.delivered[before]) / 3.6e9
    return pd.DataFrame({
        "video_id": v["id"].to_numpy()[rows],
        "earlier_id": v["id"].to_numpy()[before],
        "tg_user_id": v["tg_user_id"].to_numpy()[rows],
        "prompt": v["prompt"].to_numpy()[rows],
        "earlier_prompt": v["prompt"].to_numpy()[before],
        "hours_after_delivery": np.where(h.ready[before] & (after >= 0), after, np.nan).round(1),
        "looks_intended": intended[rows],
    })
