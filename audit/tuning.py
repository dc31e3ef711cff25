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

__all__ = ["DEFAULT_WINDOWS", "DEFAULT_INTENDED_AFTER", "CURRENT", "key_names", "near_groups", "tune"]

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
    videos = normalise_videos(videos)
    requests = normalise_requests(requests) if requests is not None else None
    created = videos["created_at"].array.asi8  # microseconds, canonical frames are sorted
    ok = (videos["status"] != "failed").to_numpy()
    ready = (videos["status"] == "ready").to_numpy()
    delivered = videos["updated_at"].where(videos["updated_at"].notna(), videos["created_at"]).dt.as_unit("us").array.asi8
    asked = request_times(videos, requests)["requested_at"].dt.as_unit("us").array.asi8
    users = videos["tg_user_id"].to_numpy()
    exact, keyed = (group_codes(videos, ["tg_user_id", c]) for c in ("prompt", "prompt_key"))
    near = group_codes(videos.assign(_near=near_groups(videos, threshold=similarity)), ["tg_user_id", "_near"])
    after_us = int(intended_after / timedelta(microseconds=1))
    counted = in_period(videos["created_at"], since, until).to_numpy()
    rows = []
    for name, codes in zip(key_names(similarity), (exact, keyed, near), strict=True):
        earlier = _nearest_earlier(codes, ok)
        has = (earlier >= 0) & counted
        safe = np.maximum(earlier, 0)
        gap = np.where(has, created - created[safe], np.iinfo(np.int64).max)
        intended = has & ready[safe] & (asked - delivered[safe] > after_us)
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
