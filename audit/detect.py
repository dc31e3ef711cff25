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

from service.settings import DEFAULT_DUPLICATE_WINDOW_HOURS

__all__ = ["DEFAULT_WINDOW", "mark_duplicates", "duplicate_pairs"]

# The service's duplicate window (see `service.settings`): one rule for claim and audit.
DEFAULT_WINDOW = timedelta(hours=DEFAULT_DUPLICATE_WINDOW_HOURS)

_GROUP = ["tg_user_id", "prompt_key"]


def mark_duplicates(videos: pd.DataFrame, *, window: timedelta = DEFAULT_WINDOW) -> pd.DataFrame:
    """Return ``videos`` (canonical frame) sorted by ``(created_at, id)`` with three columns
    added: ``is_duplicate`` (bool), ``previous_id`` and ``original_id`` (nullable ints, set on
    duplicates only)."""
    ordered = videos.sort_values([*_GROUP, "created_at", "id"], kind="stable").reset_index(drop=True)
    ok = ordered["status"] != "failed"
    # One integer code per group, factorised once: every groupby below reuses it.
    by = ordered.groupby(_GROUP, sort=False, dropna=False).ngroup().to_numpy()
    ok_at = ordered["created_at"].where(ok)
    ok_id = ordered["id"].astype("Int64").where(ok)

    # The nearest earlier non-failed video: the previous row's "last non-failed so far".
    last_ok_at = ok_at.groupby(by, sort=False).ffill()
    last_ok_id = ok_id.groupby(by, sort=False).ffill()
    previous_at = last_ok_at.groupby(by, sort=False).shift(1)
    previous_id = last_ok_id.groupby(by, sort=False).shift(1)

    gap = ordered["created_at"] - previous_at
    is_duplicate = (gap <= pd.Timedelta(window)).fillna(False).astype(bool)

    # Chains: each non-failed non-duplicate starts one; forward-fill its id over the group.
    root_id = ordered["id"].astype("Int64").where(ok & ~is_duplicate)
    chain_root = root_id.groupby(by, sort=False).ffill()

    out = ordered.copy()
    out["is_duplicate"] = is_duplicate.to_numpy()
    out["previous_id"] = previous_id.where(is_duplicate).astype("Int64")
    out["original_id"] = chain_root.where(is_duplicate).astype("Int64")
    return out.sort_values(["created_at", "id"], kind="stable").reset_index(drop=True)


def duplicate_pairs(marked: pd.DataFrame) -> pd.DataFrame:
    """One row per duplicate of a `mark_duplicates` frame, joined with its original's and its
    previous video's times: ``video_id, original_id, previous_id, tg_user_id, prompt,
    prompt_key, status, created_at, original_created_at, previous_created_at, gap_seconds``."""
    dups = marked.loc[marked["is_duplicate"]]
    times = marked.set_index("id")["created_at"]
    out = pd.DataFrame(
        {
            "video_id": dups["id"].astype("int64").to_numpy(),
            "original_id": dups["original_id"].astype("int64").to_numpy(),
            "previous_id": dups["previous_id"].astype("int64").to_numpy(),
            "tg_user_id": dups["tg_user_id"].to_numpy(),
            "prompt": dups["prompt"].to_numpy(),
            "prompt_key": dups["prompt_key"].to_numpy(),
            "status": dups["status"].to_numpy(),
            "created_at": dups["created_at"].to_numpy(),
        }
    )
    out["created_at"] = pd.to_datetime(out["created_at"], utc=True).dt.as_unit("us")
    out["original_created_at"] = times.reindex(out["original_id"]).to_numpy()
    out["previous_created_at"] = times.reindex(out["previous_id"]).to_numpy()
    for column in ("original_created_at", "previous_created_at"):
        out[column] = pd.to_datetime(out[column], utc=True).dt.as_unit("us")
    out["gap_seconds"] = (out["created_at"] - out["previous_created_at"]).dt.total_seconds().astype(np.float64)
    return out
