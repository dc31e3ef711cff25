"""Savings per policy, projected to a month (notebook 03).

Takes the audit's policy comparison (`audit.policies.compare_policies`, `AuditResult.policies`).
The projection is deliberately simple and its assumptions are its parameters: the waste
observed in a period, scaled linearly to a month, traffic and duplicate rate as in the
period, the same price per video.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

__all__ = ["AVERAGE_MONTH", "monthly_projection"]

# 365.25 / 12 days: a calendar-neutral month.
AVERAGE_MONTH = timedelta(days=365.25 / 12)


def monthly_projection(policies: pd.DataFrame, *, observed: timedelta, month: timedelta = AVERAGE_MONTH) -> pd.DataFrame:
    """Per policy (an `AuditResult.policies` frame): waste and savings against ``none`` in the
    observed period, and both scaled by ``month / observed``."""
    if observed <= timedelta(0):
        raise ValueError("the observed period must be positive")
    baseline = float(policies.loc[policies["policy"] == "none", "wasted_usd"].iloc[0])
    scale = month / observed
    wasted = policies["wasted_usd"].astype(float)
    return pd.DataFrame(
        {
            "policy": policies["policy"].to_numpy(),
            "duplicates_prevented": policies["duplicates_prevented"].to_numpy(),
            "wasted_usd": wasted.round(2).to_numpy(),
            "saved_usd": (baseline - wasted).round(2).to_numpy(),
            "wasted_usd_per_month": (wasted * scale).round(2).to_numpy(),
            "saved_usd_per_month": ((baseline - wasted) * scale).round(2).to_numpy(),
        }
    )
