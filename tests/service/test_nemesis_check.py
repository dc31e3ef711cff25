"""The nemesis's checker on hand-made outcomes: what it counts as a broken promise, so a
nemesis run that passes means what it says (bench/nemesis_check.py)."""

from __future__ import annotations

import sys
from decimal import Decimal

import pytest

from tests.service.live import ROOT

sys.path.insert(0, str(ROOT / "bench"))  # the bench's modules import each other by bare name
from nemesis_check import check  # noqa: E402

PRICE = 4


def outcome(jobs_per_user: dict[int, int]) -> dict:
    videos, bill, predictions = [], [], []
    for user, jobs in jobs_per_user.items():
        for n in range(jobs):
            job = f"j{user}-{n}"
            videos.append({"id": len(videos) + 1, "tg_user_id": user, "prompt_key": f"u{user} k{n}", "status": "ready",
                           "attempt": 1, "cost_usd": Decimal(PRICE), "provider_job_id": job, "error": None})
            bill.append({"id": job})
            predictions.append({"id": job, "input": {"prompt": f"u{user} k{n}"}, "status": "succeeded"})
    return {"videos": videos, "provider": {"bill": bill, "predictions": predictions, "price_usd": PRICE}}


def verdict(jobs_per_user: dict[int, int], limits: dict | None):  # type: ignore[no-untyped-def]
    return check(**outcome(jobs_per_user), sent=[], windows=[], host_names={}, bound_seconds=3.0, limits=limits)


def test_without_limits_the_limit_columns_are_zero_and_pass() -> None:
    result = verdict({1: 3, 2: 1}, None)
    assert result.passed and result.columns["users_over_daily_limit"] == 0 and result.columns["budget_overrun_usd"] == 0


@pytest.mark.parametrize(("daily", "budget", "over", "overrun"), [
    (3, 16.0, 0, 0.0),  # user 1 at the limit, the bill at the budget: kept
    (2, 16.0, 1, 0.0),  # user 1 billed 3 jobs with a limit of 2
    (3, 12.0, 0, 4.0),  # $16 billed against a $12 budget
])
def test_billed_jobs_over_a_limit_or_the_budget_fail_the_run(daily: int, budget: float, over: int,
                                                              overrun: float) -> None:
    result = verdict({1: 3, 2: 1}, {"daily": daily, "concurrent": 2, "budget_usd": budget})
    assert (result.columns["users_over_daily_limit"], result.columns["budget_overrun_usd"]) == (over, overrun)
    assert result.passed == (over == 0 and overrun == 0)
