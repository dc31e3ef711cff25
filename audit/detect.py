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

__all__ = ["DEFAULT_WINDOW", "mark_duplicates", "duplicate_pairs", "in_duplicate_groups"]

# The service's duplicate window (see `service.settings`): one rule for claim and audit.
DEFAULT_WINDOW = timedelta(hours=DEFAULT_DUPLICATE_WINDOW_HOURS)

_GROUP = ["tg_user_id", "prompt_key"]


def _in_time_order(created_us: np.ndarray, ids: np.ndarray) -> bool:
    if len(ids) < 2:
        return True
    step = np.diff(created_us)
    return bool(((step > 0) | ((step == 0) & (np.diff(ids) > 0))).all())


def mark_duplicates(
    videos: pd.DataFrame, *, window: timedelta = DEFAULT_WINDOW, group: np.ndarray | None = None
) -> pd.DataFrame:
    """Return ``videos`` (canonical frame) sorted by ``(created_at, id)`` with three columns
    added: ``is_duplicate`` (bool), ``previous_id`` and ``original_id`` (nullable ints, set on
    duplicates only).

    Runs on NumPy arrays in one pass over a permutation: rows in group order are a stable
    argsort of the group code (the frame is already in ``(created_at, id)`` order, so each
    group stays in it), and every forward fill is a running maximum of row positions. The
    frame itself is never reordered, which is what a 1 M-row sweep spent most of its
    detection time on.

    ``group``: ``audit.visible.group_codes(videos, ["tg_user_id", "prompt_key"])``, if the
    caller has it (`audit.run_audit` joins on it later; the text keys are factorised once).
    """
    created = videos["created_at"].dt.tz_convert("UTC").dt.as_unit("us")
    created_us = created.array.asi8
    ids = videos["id"].to_numpy(dtype=np.int64)
    if not _in_time_order(created_us, ids):  # canonical frames are; any other is put in order once
        order = np.lexsort((ids, created_us))
        return mark_duplicates(videos.iloc[order], window=window, group=None if group is None else group[order])
    if group is None:
        user_code, _ = pd.factorize(videos["tg_user_id"], sort=False)
        key_code, keys = pd.factorize(videos["prompt_key"], sort=False)
        group = user_code.astype(np.int64) * max(len(keys), 1) + key_code
    ok = (videos["status"] != "failed").to_numpy(dtype=bool)
    rule = _Rule(group, created_us, ids, ok, window)
    is_duplicate, previous_id, original_id = rule.in_row_order()
    return videos.assign(
        is_duplicate=is_duplicate,
        previous_id=pd.arrays.IntegerArray(previous_id, ~is_duplicate),
        original_id=pd.arrays.IntegerArray(original_id, ~is_duplicate.copy()),
    ).reset_index(drop=True)


def in_duplicate_groups(
    group: np.ndarray, created_us: np.ndarray, ids: np.ndarray, ok: np.ndarray, *, window: timedelta = DEFAULT_WINDOW
) -> np.ndarray:
    """One bool per row: whether the row's group holds a duplicate under the rule. Rows are
    in ``(created_at, id)`` order; ``group`` names each row's ``(tg_user_id, prompt_key)``
    (any integer coding), ``ok`` says the row is not failed.

    Everything the audit derives from a duplicate (its chain, class, verdicts, race window)
    reads only rows of its own group, so the rows of other groups can be left out of a
    sweep without changing its duplicates (`audit.stream.shard`)."""
    rule = _Rule(group, created_us, ids, ok, window)
    run = np.cumsum(rule.first_of_group) - 1  # each row's group, numbered in sorted order
    held = np.zeros(int(run[-1]) + 1 if len(run) else 0, dtype=bool)
    held[run[rule.duplicate]] = True
    out = np.empty(len(group), dtype=bool)
    out[rule.order] = held[run]
    return out


def _stable_order(codes: np.ndarray) -> np.ndarray:
    """``np.argsort(codes, kind="stable")`` of non-negative codes: by 16-bit digits, lowest
    first, when two digits hold them (NumPy sorts 16-bit keys by radix; int64 by timsort,
    three times slower on a shard's 430 k group codes)."""
    if not len(codes) or codes.min() < 0 or codes.max() >= 1 << 32:
        return np.argsort(codes, kind="stable")
    order = np.argsort((codes & 0xFFFF).astype(np.uint16), kind="stable")
    if codes.max() >= 1 << 16:
        order = order[np.argsort((codes[order] >> 16).astype(np.uint16), kind="stable")]
    return order


class _Rule:
    """The rule over rows in ``(created_at, id)`` order, in group order: rows in group order
    are a stable argsort of the group code (each group stays in time order), and every
    forward fill is a running maximum of row positions."""

    def __init__(self, group: np.ndarray, created_us: np.ndarray, ids: np.ndarray, ok: np.ndarray,
                 window: timedelta) -> None:
        n = len(ids)
        self.order = order = _stable_order(group)
        g, t, self.vid = group[order], created_us[order], ids[order]
        ok = ok[order]
        position = np.arange(n)
        self.first_of_group = first_of_group = np.ones(n, dtype=bool)
        first_of_group[1:] = g[1:] != g[:-1]
        group_start = np.maximum.accumulate(np.where(first_of_group, position, 0)) if n else position
        # The nearest earlier non-failed row: the running last non-failed position, shifted by one.
        last_ok = np.maximum.accumulate(np.where(ok, position, -1)) if n else position
        previous = np.empty(n, dtype=np.int64)
        previous[:1] = -1
        previous[1:] = last_ok[:-1]
        has_previous = previous >= group_start
        self.safe = safe = np.where(has_previous, previous, 0)
        window_us = int(pd.Timedelta(window) / pd.Timedelta(microseconds=1))
        self.duplicate = duplicate = has_previous & (t - t[safe] <= window_us)
        # Chains: each non-failed non-duplicate starts one; its id runs on over its group.
        self.root = np.maximum.accumulate(np.where(ok & ~duplicate, position, -1)) if n else position

    def in_row_order(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(is_duplicate, previous_id, original_id)`` per row, in the rows' own order."""
        order, n = self.order, len(self.order)
        is_duplicate = np.empty(n, dtype=bool)
        is_duplicate[order] = self.duplicate
        previous_id = np.empty(n, dtype=np.int64)
        previous_id[order] = self.vid[self.safe]
        original_id = np.empty(n, dtype=np.int64)
        original_id[order] = self.vid[np.where(self.duplicate, self.root, 0)] if n else self.vid
        return is_duplicate, previous_id, original_id


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
