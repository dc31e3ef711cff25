"""What each duplicate-prevention policy would have prevented, judged from the history.

The four policies, in the order the bot went through them:

- ``none``: generate every request. Prevents nothing.
- ``check``: check for an equivalent video, generate, save (commit ``efcb167``). The
  check only sees saved videos, so it prevents the **sequential** duplicates and no race.
  "Equivalent" is the prompt key here, as the issue's rule says ("any check would have
  blocked it"); the bot's real check matched the prompt exactly (`.eq("prompt", prompt)`), so
  it would also have let the case and spacing variants through. The replay's `check` and
  `pending` policies (`service.policies`) reproduce that exact match.
- ``pending``: check, then immediately insert a ``generating`` row, generate, update (the
  write-up's fix). It also prevents a race when the duplicate's request arrived after the
  other request's pending row was written: ``r_W + pending_gap <= r_V`` for some non-failed
  equivalent video W whose request is within the window before V's. Two requests inside
  ``pending_gap`` of each other both pass the check before either row exists: a double tap.
- ``claim``: one conditional write on a unique key before generating (the service). Prevents
  every duplicate.

Assumptions, stated because the numbers depend on them:

- Each duplicate is judged against the videos that actually exist (a first-order estimate):
  blocking one duplicate is assumed not to unblock another. Chains where a blocked video
  was the only thing that would have blocked a later one are rare and only make the
  estimate for ``check``/``pending`` slightly generous.
- ``pending_gap`` is how long after a request its pending row becomes visible to others: the
  check and the insert, two round trips to Supabase over HTTP. One second by default.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from audit.detect import DEFAULT_WINDOW

__all__ = ["POLICIES", "DEFAULT_PENDING_GAP", "prevented_by", "compare_policies"]

POLICIES = ("none", "check", "pending", "claim")
# Two HTTP round trips to Supabase (check, then insert) from the bot's host: about a second.
DEFAULT_PENDING_GAP = timedelta(seconds=1)
_GROUP = ["tg_user_id", "prompt_key"]


def prevented_by(
    classified: pd.DataFrame,
    marked: pd.DataFrame,
    requested: pd.DataFrame,
    *,
    window: timedelta = DEFAULT_WINDOW,
    pending_gap: timedelta = DEFAULT_PENDING_GAP,
) -> pd.DataFrame:
    """One boolean column per policy (``none, check, pending, claim``), one row per
    classified duplicate (same order), True where that policy would have prevented it."""
    out = pd.DataFrame(index=classified.index)
    sequential = classified["class"] == "sequential"
    out["none"] = False
    out["check"] = sequential
    out["claim"] = True
    if classified.empty:
        out["pending"] = pd.Series([], dtype=bool)
        return out[list(POLICIES)]
    ok = marked.loc[marked["status"] != "failed", [*_GROUP, "id"]].merge(
        requested, on="id", how="left"
    )
    ok = ok.rename(columns={"id": "other_id", "requested_at": "other_requested_at"})
    ok = ok[[*_GROUP, "other_id", "other_requested_at"]].sort_values("other_requested_at")
    probe = classified[["video_id", *_GROUP, "requested_at"]].copy()
    probe["visible_before"] = probe["requested_at"] - pd.Timedelta(pending_gap)
    probe = probe.reset_index().sort_values("visible_before")
    # The latest other request whose pending row was visible when V checked.
    matched = pd.merge_asof(
        probe,
        ok,
        left_on="visible_before",
        right_on="other_requested_at",
        by=_GROUP,
        direction="backward",
        allow_exact_matches=True,
    )
    blocked = (
        matched["other_id"].notna()
        & (matched["other_id"] != matched["video_id"])
        & ((matched["requested_at"] - matched["other_requested_at"]) <= pd.Timedelta(window))
    ).fillna(False)
    pending = pd.Series(blocked.to_numpy(), index=matched["index"].to_numpy()).reindex(out.index)
    out["pending"] = sequential | pending.astype(bool)
    return out[list(POLICIES)]


def compare_policies(
    prevented: pd.DataFrame, *, videos_scanned: int, cost_per_video: float
) -> pd.DataFrame:
    """``policy, duplicates_prevented, generations, wasted_usd``: one row per policy.

    ``generations`` is how many videos would have been generated (scanned minus prevented);
    ``wasted_usd`` what the duplicates left unprevented cost.
    """
    total = len(prevented)
    rows = []
    for policy in POLICIES:
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
