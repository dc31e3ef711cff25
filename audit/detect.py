"""Vectorised duplicate detection: the rule, over a whole videos frame at once.

The rule (the same as the service's claim): a video V is a **duplicate** when an earlier video
U, earlier by ``(created_at, id)``, has the same ``tg_user_id`` and prompt key, U is not
``failed``, and ``V.created_at - U.created_at <= window``. V's own status does not matter: a
failed V was still a generation the claim would have refused to start.

Within one ``(tg_user_id, prompt_key)`` group sorted by ``(created_at, id)``, the earlier
non-failed video closest in time to V is the best candidate for U, so "some U within the
window exists" is "the nearest earlier non-failed video is within the window". That is a
forward fill, which is what makes the rule vectorisable (and expressible as window functions
in SQL, see `audit.sources.database`).

Two ids are reported for each duplicate:

- ``previous_id``: that nearest earlier non-failed video, the evidence that V is a duplicate;
- ``original_id``: the first video of V's chain, the video the cleanup keeps. A chain starts
  at a non-failed video that is not itself a duplicate; every duplicate after it in the group
  belongs to it until the next such video. For the incident, 56's previous is 55, its
  original 54. A chain of resends can reach further back than one window; ``original_id``
  follows it, ``previous_id`` never does.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from audit.defaults import DEFAULT_DUPLICATE_WINDOW_HOURS

__all__ = ["DEFAULT_WINDOW", "mark_duplicates", "duplicate_pairs"]

# The service's duplicate window (see `service.settings`): one rule for claim and audit.
DEFAULT_WINDOW = timedelta(hours=DEFAULT_DUPLICATE_WINDOW_HOURS)

_GROUP = ["tg_user_id", "prompt_key"]


def _in_time_order(created_us: np.ndarray, ids: np.ndarray) -> bool:
    if len(ids) < 2:
        return True
    step = np.diff(created_us)
    return bool(((step > 0) | ((step == 0) & (np.diff(ids) > 0))).all())


def mark_duplicates(videos: pd.DataFrame, *, window: timedelta = DEFAULT_WINDOW) -> pd.DataFrame:
    """Return ``videos`` (canonical frame) sorted by ``(created_at, id)`` with three columns
    added: ``is_duplicate`` (bool), ``previous_id`` and ``original_id`` (nullable ints, set on
    duplicates only).

    Runs on NumPy arrays in one pass over a permutation: rows in group order are a stable
    argsort of the group code (the frame is already in ``(created_at, id)`` order, so each
    group stays in it), and every forward fill is a running maximum of row positions. The
    frame itself is never reordered, which is what a 1 M-row sweep spent most of its
    detection time on.
    """
    created = videos["created_at"].dt.tz_convert("UTC").dt.as_unit("us")
    created_us = created.array.asi8
    ids = videos["id"].to_numpy(dtype=np.int64)
    if not _in_time_order(created_us, ids):  # canonical frames are; any other is put in order once
        return mark_duplicates(videos.iloc[np.lexsort((ids, created_us))], window=window)
    n = len(ids)
    user_code, _ = pd.factorize(videos["tg_user_id"], sort=False)
    key_code, keys = pd.factorize(videos["prompt_key"], sort=False)
    group = user_code.astype(np.int64) * max(len(keys), 1) + key_code
    order = np.argsort(group, kind="stable")
    g, t, vid = group[order], created_us[order], ids[order]
    ok = (videos["status"] != "failed").to_numpy(dtype=bool)[order]

    position = np.arange(n)
    first_of_group = np.ones(n, dtype=bool)
    first_of_group[1:] = g[1:] != g[:-1]
    group_start = np.maximum.accumulate(np.where(first_of_group, position, 0)) if n else position
    # The nearest earlier non-failed row: the running last non-failed position, shifted by one.
    last_ok = np.maximum.accumulate(np.where(ok, position, -1)) if n else position
    previous = np.empty(n, dtype=np.int64)
    previous[:1] = -1
    previous[1:] = last_ok[:-1]
    has_previous = previous >= group_start
    safe = np.where(has_previous, previous, 0)
    duplicate = has_previous & (t - t[safe] <= int(pd.Timedelta(window) / pd.Timedelta(microseconds=1)))
    # Chains: each non-failed non-duplicate starts one; its id runs on over its group.
    root = np.maximum.accumulate(np.where(ok & ~duplicate, position, -1)) if n else position

    is_duplicate = np.empty(n, dtype=bool)
    is_duplicate[order] = duplicate
    previous_id = np.empty(n, dtype=np.int64)
    previous_id[order] = vid[safe]
    original_id = np.empty(n, dtype=np.int64)
    original_id[order] = vid[np.where(duplicate, root, 0)] if n else vid
    return videos.assign(
        is_duplicate=is_duplicate,
        previous_id=pd.arrays.IntegerArray(previous_id, ~is_duplicate),
        original_id=pd.arrays.IntegerArray(original_id, ~is_duplicate.copy()),
    ).reset_index(drop=True)


def duplicate_pairs(marked: pd.DataFrame) -> pd.DataFrame:
    """One row per duplicate of a `mark_duplicates` frame, joined with its original's and its
    previous video's times: ``video_id, original_id, previous_id, tg_user_id, prompt,
    prompt_key, status, created_at, original_created_at, previous_created_at, gap_seconds``."""
    dups = marked.loc[marked["is_duplicate"]]
    # Times stay tz-aware arrays throughout: `.to_numpy()` of one is an object array of
    # Timestamps, which cost a 1 M-row sweep a second.
    times = pd.Series(marked["created_at"].array, index=marked["id"].to_numpy())
    out = pd.DataFrame(
        {
            "video_id": dups["id"].to_numpy(dtype=np.int64),
            "original_id": dups["original_id"].to_numpy(dtype=np.int64),
            "previous_id": dups["previous_id"].to_numpy(dtype=np.int64),
            "tg_user_id": dups["tg_user_id"].to_numpy(),
            "prompt": dups["prompt"].array,
            "prompt_key": dups["prompt_key"].array,
            "status": dups["status"].array,
            "created_at": dups["created_at"].array,
        }
    )
    out["original_created_at"] = times.reindex(out["original_id"].to_numpy()).array
    out["previous_created_at"] = times.reindex(out["previous_id"].to_numpy()).array
    for column in ("created_at", "original_created_at", "previous_created_at"):
        out[column] = out[column].dt.tz_convert("UTC").dt.as_unit("us")
    out["gap_seconds"] = (out["created_at"] - out["previous_created_at"]).dt.total_seconds().astype(np.float64)
    return out
