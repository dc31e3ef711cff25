"""What each duplicate-prevention policy would have prevented, judged from the history.

The four policies, in the order the bot went through them, with the same names and the same
behaviour as the replay's (`service.policies`, `python -m audit replay`):

- ``none``: generate every request. Prevents nothing.
- ``check``: look for a saved video, generate, save (the check of commit ``efcb167``). It
  matched the **exact prompt text** (``.eq("prompt", prompt)``) of any status, saved at most
  the window before the request (``.gte("created_at", now - 24 h)``). It only sees saved
  videos, so it prevents no race, and it lets every case, spacing or punctuation variant
  through ("Fireworks over Sydney harbour!").
- ``pending``: look for a ``generating``/``ready`` row with the exact text, insert a
  ``generating`` row, generate, update it (the write-up's fix). V is prevented when another
  non-failed request W of the same user and exact text had its pending row visible when V
  checked: ``r_W + pending_gap <= r_V`` and at most the window before ``r_V``. Two requests
  inside ``pending_gap`` of each other both pass the check before either row exists: a double
  tap (video 46).
- ``claim``: one conditional write on a unique (user, prompt key) before generating (the
  service). Prevents every duplicate.

Two extra rows say what the legacy checks would have done had they matched the prompt key,
as the service does: ``check-by-key`` (the ``sequential`` duplicates, plus any that only a
failed row would have blocked) and ``pending-by-key``. They are comparisons, not policies
anyone ran.

Assumptions, stated because the numbers depend on them:

- Each duplicate is judged against the videos that actually exist (a first-order estimate):
  blocking one duplicate is assumed not to unblock another. Chains where a blocked video
  was the only thing that would have blocked a later one are rare and only make the
  estimate for ``check``/``pending`` slightly generous.
- ``pending_gap`` is how long after a request its pending row becomes visible to others: the
  check and the insert, two round trips to Supabase over HTTP. One second by default.
- Under ``pending`` a request that later failed is ignored, although its row was
  ``generating`` (and so blocking) while it ran: that makes ``pending`` slightly pessimistic
  where failed generations overlap a duplicate (none in the fixtures).
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from audit.detect import DEFAULT_WINDOW
from audit.visible import group_codes, row_positions, seen_by_check

__all__ = ["POLICIES", "KEYED_VARIANTS", "POLICY_ROWS", "DEFAULT_PENDING_GAP", "prevented_by", "compare_policies"]

POLICIES = ("none", "check", "pending", "claim")
KEYED_VARIANTS = ("check-by-key", "pending-by-key")
POLICY_ROWS = POLICIES + KEYED_VARIANTS
# Two HTTP round trips to Supabase (check, then insert) from the bot's host: about a second.
DEFAULT_PENDING_GAP = timedelta(seconds=1)
_EXACT = ["tg_user_id", "prompt"]
_KEYED = ["tg_user_id", "prompt_key"]


def prevented_by(
    classified: pd.DataFrame,
    marked: pd.DataFrame,
    requested: pd.DataFrame,
    *,
    window: timedelta = DEFAULT_WINDOW,
    pending_gap: timedelta = DEFAULT_PENDING_GAP,
    keyed: np.ndarray | None = None,
) -> pd.DataFrame:
    """One boolean column per `POLICY_ROWS` name, one row per classified duplicate (same
    order), True where that policy would have prevented it. ``keyed``: ``group_codes(marked,
    ["tg_user_id", "prompt_key"])``, if the caller has it."""
    out = pd.DataFrame(index=classified.index)
    out["none"] = False
    out["claim"] = True
    # Every row here is a row of `marked`: name its (user, prompt) and (user, key) once.
    keyed = group_codes(marked, _KEYED) if keyed is None else keyed
    exact = group_codes(marked, _EXACT)
    at, _ = row_positions(classified["video_id"], marked, requested)
    probes = pd.DataFrame(
        {"probe_id": classified["video_id"].to_numpy(), "at": classified["requested_at"].array,
         "own_at": classified["created_at"].array, "exact": np.where(at >= 0, exact[at], -1),
         "keyed": np.where(at >= 0, keyed[at], -1)}
    )
    # What `check` can see: every saved row, of any status, from its save on.
    ids = marked["id"].to_numpy()
    saved = pd.DataFrame({"row_id": ids, "visible_at": marked["created_at"].array, "exact": exact, "keyed": keyed})
    # What `pending` can see: each non-failed request's row, from its insert on.
    ok = (marked["status"] != "failed").to_numpy(dtype=bool)
    if np.array_equal(requested["id"].to_numpy(), ids):  # `request_times(marked)`: row for row
        pending_rows = saved.loc[ok].assign(visible_at=requested["requested_at"].array[ok])
    else:
        times = requested[["id", "requested_at"]].rename(columns={"id": "row_id", "requested_at": "visible_at"})
        pending_rows = saved.loc[ok].drop(columns="visible_at").merge(times, on="row_id")
    pending_rows["visible_at"] = (pending_rows["visible_at"] + pd.Timedelta(pending_gap)).dt.as_unit("us")
    for name, by in (("check", "exact"), ("check-by-key", "keyed")):
        out[name] = seen_by_check(probes, saved, by=[by], window=window, ties="earlier")
    for name, by in (("pending", "exact"), ("pending-by-key", "keyed")):
        out[name] = seen_by_check(probes, pending_rows, by=[by], window=window, ties="any")
    return out[list(POLICY_ROWS)].astype(bool)


def compare_policies(
    prevented: pd.DataFrame, *, videos_scanned: int, cost_per_video: float
) -> pd.DataFrame:
    """``policy, duplicates_prevented, generations, wasted_usd``: one row per `POLICY_ROWS`
    name, the four policies first.

    ``generations`` is how many videos would have been generated (scanned minus prevented);
    ``wasted_usd`` what the duplicates left unprevented cost.
    """
    total = len(prevented)
    rows = []
    for policy in POLICY_ROWS:
        count = int(prevented[policy].sum()) if total else 0
        rows.append(
            {
                "policy": policy,
                "duplicates_prevented": count,
                "generations": videos_scanned - count,
                "wasted_usd": round((total - count) * cost_per_video, 2),
            }
        )
    return pd.DataFrame(rows)
