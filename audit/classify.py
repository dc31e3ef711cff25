"""Why each duplicate happened: ``sequential`` or ``race``, and the in-flight windows behind it.

- **sequential**: when V was requested, an equivalent (same user and prompt key) non-failed
  video earlier than V had already been saved, at most the window before V's request. A
  check by prompt key at V's request would have blocked V.
- **race**: none was saved yet, so V's generation overlapped an equivalent one in flight. Only
  a claim taken before generating blocks it.

Two instants, decided so that "sequential" means exactly "a check at V's request would have
found it":

- **Saved** is the row's ``created_at``: from then on the row is in the table for any check
  to find. An original still ``generating`` (the service's claim rows, the write-up's pending
  rows) therefore counts as saved from its ``created_at``; a failed one never counts, as in
  the duplicate rule.
- **The window** is measured back from V's *request*, as the bot's check did
  (``created_at >= now - 24 h`` at request time), not from V's save.

A request logged at, or by clock skew after, its own save is clamped to the save; a video
saved at that same instant still counts as earlier (by id, as in the rule), V itself never.

The request time of each video comes from the bot's request log (``requests.video_id``; the
earliest request that produced the video). Without a log, or for a video the log does not
mention, it is estimated as ``created_at`` minus the middle of an assumed generation-time range
(the write-up's 2-5 minutes), and the row says so in ``basis = "estimate"``. The estimate
assumes ``created_at`` is the save time, which holds for the incident's data: before the fix
a row was written only when generation ended. In the service's own table ``created_at`` is
the claim time instead, so estimates there are rough; duplicates there can only come from a
lease taken over, and the report marks every estimated row.

A video is "in flight" from its request to its save: ``[requested_at, created_at]``.
`race_windows` lists those intervals for every video of a chain, for the report's timeline.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from audit.detect import DEFAULT_WINDOW
from audit.visible import group_codes, row_positions, seen_by_check, taken

__all__ = [
    "DEFAULT_GENERATION_RANGE",
    "CLASSES",
    "request_times",
    "classify_duplicates",
    "race_windows",
]

# The write-up: "2-5 minutes of video generation". Only used when the request log is missing.
DEFAULT_GENERATION_RANGE = (timedelta(minutes=2), timedelta(minutes=5))
CLASSES = ("sequential", "race")
_GROUP = ["tg_user_id", "prompt_key"]


def request_times(
    videos: pd.DataFrame,
    requests: pd.DataFrame | None = None,
    *,
    generation_range: tuple[timedelta, timedelta] = DEFAULT_GENERATION_RANGE,
) -> pd.DataFrame:
    """``id, requested_at, basis`` for every video: from the log where it has the video, else
    estimated (``created_at`` minus the middle of ``generation_range``)."""
    low, high = generation_range
    created = videos["created_at"].reset_index(drop=True)
    requested = created - pd.Timedelta((low + high) / 2)
    basis = pd.Series("estimate", index=created.index, dtype=object)
    ids = videos["id"].reset_index(drop=True)
    if requests is not None and len(requests):
        logged = requests.loc[requests["video_id"].notna().to_numpy(dtype=bool)]
        logged_ids = logged["video_id"].to_numpy(dtype=np.int64)
        index = pd.Index(logged_ids)
        if np.array_equal(logged_ids, ids.to_numpy(dtype=np.int64)):  # the shard's log: a request per video, in order
            found = pd.Series(logged["received_at"].array, index=created.index)
        elif index.is_unique:  # a request per video: each is the earliest
            at = index.get_indexer(ids.to_numpy(dtype=np.int64))
            found = pd.Series(logged["received_at"].array.take(at, allow_fill=True), index=created.index)
        else:
            found = ids.map(logged.groupby("video_id")["received_at"].min())
        has = found.notna()
        requested = requested.where(~has, found)
        basis = basis.where(~has, "request_log")
    # A request cannot come after its own save; a log that says so is clamped, not trusted.
    requested = requested.where(requested <= created, created)
    return pd.DataFrame({"id": ids, "requested_at": requested.dt.as_unit("us"), "basis": basis})


def classify_duplicates(
    pairs: pd.DataFrame,
    marked: pd.DataFrame,
    requested: pd.DataFrame,
    *,
    window: timedelta = DEFAULT_WINDOW,
    keyed: np.ndarray | None = None,
) -> pd.DataFrame:
    """Add ``requested_at``, ``basis`` and ``class`` to `audit.detect.duplicate_pairs` rows.
    ``keyed``: ``group_codes(marked, ["tg_user_id", "prompt_key"])``, if the caller has it.

    Sequential means: some non-failed video of the same user and prompt key, earlier than V
    by ``(created_at, id)``, was saved at or before V's request and at most the window before
    it. Otherwise the duplicate is a race.
    """
    at, requested_at = row_positions(pairs["video_id"], marked, requested)
    out = pairs.reset_index(drop=True).assign(
        requested_at=taken(requested["requested_at"], requested_at), basis=taken(requested["basis"], requested_at))
    if out.empty:
        out["class"] = pd.Series([], dtype=object)
        return out
    # Probes and rows are rows of `marked`: join on one integer per (user, key), named once.
    keyed = group_codes(marked, _GROUP) if keyed is None else keyed
    saved = (marked["status"] != "failed").to_numpy(dtype=bool)
    sequential = seen_by_check(
        pd.DataFrame({"probe_id": out["video_id"].to_numpy(), "at": out["requested_at"].array,
                      "own_at": out["created_at"].array, "group": np.where(at >= 0, keyed[at], -1)}),
        pd.DataFrame({"group": keyed[saved], "row_id": marked["id"].to_numpy()[saved],
                      "visible_at": marked["created_at"].array[saved]}),
        by=["group"],
        window=window,
        ties="earlier",
    )
    out["class"] = pd.Series(sequential, index=out.index).map({True: "sequential", False: "race"})
    return out


def race_windows(marked: pd.DataFrame, classified: pd.DataFrame, requested: pd.DataFrame) -> pd.DataFrame:
    """The in-flight interval of every video in a chain that has a duplicate.

    Columns: ``chain_id`` (the original's id), ``video_id``, ``role`` (``original`` or
    ``duplicate``), ``class`` (the duplicate's class; for the original, ``race`` when any of its
    duplicates raced it), ``tg_user_id``, ``prompt``, ``requested_at``, ``saved_at``, ``basis``.
    Sorted by chain then request time.
    """
    columns = ["chain_id", "video_id", "role", "class", "tg_user_id", "prompt", "requested_at", "saved_at", "basis"]
    if classified.empty:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    chain = classified["original_id"].to_numpy(dtype=np.int64)
    video = classified["video_id"].to_numpy(dtype=np.int64)
    classes = classified["class"].to_numpy(dtype=object)
    # A chain's original: "race" when any of its duplicates raced it. Chains in id order.
    chains, of_chain = np.unique(chain, return_inverse=True)
    raced = np.bincount(of_chain, weights=classes == "race", minlength=len(chains)) > 0
    video_id = np.concatenate([chains, video])
    at, requested_at = row_positions(pd.Series(video_id), marked, requested, guess_duplicates=False)
    chain_id = np.concatenate([chains, chain])
    # Sorted here, on the keys alone, so every column is taken once and in order.
    asked = taken(requested["requested_at"], requested_at).array.asi8
    order = np.lexsort((video_id, np.where(asked == np.iinfo(np.int64).min, np.iinfo(np.int64).max, asked), chain_id))
    at, requested_at = at[order], requested_at[order]
    roles = np.array(["original", "duplicate"], dtype=object)[(np.arange(len(video_id)) >= len(chains)).astype(int)]
    return pd.DataFrame(
        {
            "chain_id": chain_id[order],
            "video_id": video_id[order],
            "role": roles[order],
            "class": np.concatenate([np.where(raced, "race", "sequential").astype(object), classes])[order],
            "tg_user_id": taken(marked["tg_user_id"], at),
            "prompt": taken(marked["prompt"], at),
            "requested_at": taken(requested["requested_at"], requested_at),
            "saved_at": taken(marked["created_at"], at),
            "basis": taken(requested["basis"], requested_at),
        }
    )
