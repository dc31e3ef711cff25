"""Stuck claims: videos still ``generating`` long after their lease ran out.

A ``generating`` row is a claim in progress. The service renews its lease by heartbeat; a row
whose last update is older than the lease belongs to a worker that died or hung, and blocks
the user's prompt until it is swept. Before the fix there were no ``generating`` rows at all,
so on the incident's data this list is empty.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from audit.defaults import DEFAULT_LEASE_SECONDS

__all__ = ["DEFAULT_LEASE", "stuck_claims"]

# The service's lease (see `service.settings`). An audit of a service run with another
# `CLAIMFIRST_LEASE_SECONDS` should pass that one.
DEFAULT_LEASE = timedelta(seconds=DEFAULT_LEASE_SECONDS)


def stuck_claims(videos: pd.DataFrame, *, as_of: datetime, lease: timedelta = DEFAULT_LEASE) -> pd.DataFrame:
    """``id, tg_user_id, prompt, created_at, last_seen_at, age_seconds`` for every
    ``generating`` video whose last update (``updated_at``, else ``created_at``) is more than
    ``lease`` before ``as_of`` (UTC-aware)."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    generating = videos.loc[videos["status"] == "generating"]
    last_seen = generating["updated_at"].fillna(generating["created_at"])
    age = pd.Timestamp(as_of).tz_convert("UTC") - last_seen
    stuck = generating.loc[age > pd.Timedelta(lease)]
    out = stuck[["id", "tg_user_id", "prompt", "created_at"]].copy()
    out["last_seen_at"] = last_seen[age > pd.Timedelta(lease)]
    out["age_seconds"] = age[age > pd.Timedelta(lease)].dt.total_seconds()
    return out.reset_index(drop=True)
