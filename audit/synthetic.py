"""Synthetic video histories: for the 1 M-row benchmark and for tests that need volume.

Users resend a few favourite prompts with gaps drawn around the 24 h window, some requests
fail, and a few rows are still ``generating`` so every branch of the rule is exercised.
Deterministic for a seed.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from audit.words import iso_utc

__all__ = ["synthetic_videos", "synthetic_requests", "to_iso_text"]

_START = datetime(2025, 1, 1, tzinfo=UTC)


def synthetic_videos(
    rows: int, *, seed: int = 0, users: int | None = None, prompts_per_user: int = 8, days: float = 60.0
) -> pd.DataFrame:
    """A canonical-shaped videos frame of ``rows`` rows (ids 1…rows in ``created_at`` order).

    Timestamps are whole seconds, so equal ``created_at`` values occur and the ``id``
    tie-break matters. Prompts vary in case and trailing punctuation, which the key folds.
    """
    rng = np.random.default_rng(seed)
    users = users or max(1, rows // 50)
    user = rng.integers(0, users, rows)
    prompt_no = rng.integers(0, prompts_per_user, rows)
    seconds = np.sort(rng.integers(0, int(days * 86400), rows))
    status = rng.choice(np.array(["ready", "failed", "generating"]), rows, p=[0.9, 0.08, 0.02])
    variant = rng.integers(0, 3, rows)
    base = np.char.add(np.char.add("Prompt ", prompt_no.astype(str)), " for user ")
    base = np.char.add(base, user.astype(str))
    prompt = np.where(variant == 1, np.char.upper(base), np.where(variant == 2, np.char.add(base, "!"), base))
    created = pd.Timestamp(_START) + pd.to_timedelta(seconds, unit="s")
    return pd.DataFrame(
        {
            "id": np.arange(1, rows + 1),
            "tg_user_id": 5_000_000_000 + user,
            "prompt": prompt.astype(object),
            "status": status.astype(object),
            "created_at": created.as_unit("us"),
            "updated_at": created.as_unit("us"),
        }
    )


def synthetic_requests(videos: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """The request log of a `synthetic_videos` history: one request per video, received 2-5
    minutes (the write-up's generation time) before the video was saved."""
    rng = np.random.default_rng(seed)
    lead = pd.to_timedelta(rng.integers(120, 301, len(videos)), unit="s")
    return pd.DataFrame(
        {
            "request_id": [f"req-{i}" for i in videos["id"]],
            "received_at": (videos["created_at"] - lead).dt.as_unit("us"),
            "tg_user_id": videos["tg_user_id"],
            "prompt": videos["prompt"],
            "video_id": videos["id"],
        }
    )


def to_iso_text(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its UTC times as ISO 8601 text with ``+00:00``, as a CSV export holds them."""
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype):
            out[column] = iso_utc(out[column])
    return out
