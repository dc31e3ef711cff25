"""The limits the claim enforces, on each store (SQLite and a real PostgreSQL): what counts,
what is refused, the Retry-After each refusal computes from the rows, the rolling window on the
database's clock (time passes by ageing the stored rows, `tests.stores.age`), and that neither a
duplicate nor a takeover is ever refused or counted twice.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from service.claim import ClaimRule, ClaimTicket, Holder, Limits, NewVideo
from service.errors import LimitReached
from service.prompt_key import prompt_key
from service.records import GenerationResult
from tests.stores import SyncStore, age

# Leases longer than any ageing below, so that only the takeover test sees one run out.
RULE = ClaimRule(window=timedelta(days=3), lease=timedelta(days=2))
DAY = 24 * 3600


def ask(store: SyncStore, rule: ClaimRule, prompt: str, user: int = 1) -> ClaimTicket | Holder | None:
    return store.claim(NewVideo(user, prompt, prompt_key(prompt)), rule)


def refused(store: SyncStore, rule: ClaimRule, prompt: str, user: int = 1) -> LimitReached:
    with pytest.raises(LimitReached) as caught:
        ask(store, rule, prompt, user)
    return caught.value


def won(outcome: object) -> ClaimTicket:
    assert isinstance(outcome, ClaimTicket), outcome
    return outcome


def test_daily_limit_counts_new_generations_and_answers_when_the_oldest_leaves(store: SyncStore) -> None:
    rule = replace(RULE, limits=Limits(user_daily=3))
    first = won(ask(store, rule, "one"))
    age(store.url, hours=2)
    won(ask(store, rule, "two"))
    won(ask(store, rule, "three"))
    error = refused(store, rule, "four")
    assert (error.limit, error.status_code, error.problem) == ("user_daily", 429, "/problems/user-daily-limit")
    # The oldest counting claim ("one", 2 h old) leaves the 24 h window in 22 h.
    assert DAY - 2 * 3600 - 10 <= error.retry_after <= DAY - 2 * 3600 + 1, error.retry_after
    assert error.headers() == {"Retry-After": str(error.retry_after)}
    # A duplicate is answered as one (409 upstream), never refused, whatever the count.
    holder = ask(store, rule, "ONE!")
    assert isinstance(holder, Holder) and holder.blocks and holder.video.id == first.video_id
    # Another user has a day of their own.
    won(ask(store, rule, "four", user=2))
    # 22 h later "one" is out of the window (the database's clock, as the stored rows see it).
    age(store.url, hours=22, seconds=1)
    won(ask(store, rule, "four"))
    assert refused(store, rule, "five").limit == "user_daily"


def test_a_failure_that_paid_nothing_gives_its_place_back(store: SyncStore) -> None:
    rule = replace(RULE, limits=Limits(user_daily=2))
    first = won(ask(store, rule, "one"))
    second = won(ask(store, rule, "two"))
    refused(store, rule, "three")
    store.fail(first, "provider refused the job")  # no job was ever asked for: nothing paid
    won(ask(store, rule, "three"))
    store.record_job(second, "job-2")
    store.fail(second, "provider error")  # it had a job: it may have been billed, it counts
    assert refused(store, rule, "four").limit == "user_daily"


def test_a_takeover_is_the_same_generation_not_a_new_one(store: SyncStore) -> None:
    rule = ClaimRule(window=timedelta(hours=1), lease=timedelta(seconds=30), limits=Limits(
        user_daily=1, user_concurrent=1, budget_usd=Decimal(4), reserve_usd=Decimal(4)))
    first = won(ask(store, rule, "one"))
    store.record_job(first, "job-1")
    age(store.url, seconds=31)  # its worker died: the lease ran out with the job running
    again = won(ask(store, rule, "one"))  # every limit is full, yet the takeover is not refused
    assert again.attempt == 2 and again.adopt_job_id == "job-1"
    # The superseded attempt stopped counting as the new one started: still exactly full.
    error = refused(store, rule, "two")
    assert error.limit in ("user_daily", "daily_budget")  # both wait ~24 h; concurrent far less


def test_a_claim_whose_worker_died_frees_its_running_place_at_the_sweep(store: SyncStore) -> None:
    # A claim won and never worked on (its request gave up after the commit, its process died):
    # nothing leaks for good. The sweep ends it within a lease; its place in the day stays
    # taken (its worker might still come back), the running one is given back.
    rule = ClaimRule(window=timedelta(hours=1), lease=timedelta(seconds=30),
                     limits=Limits(user_daily=2, user_concurrent=1))
    won(ask(store, rule, "one"))
    assert refused(store, rule, "two").limit == "user_concurrent"
    age(store.url, seconds=31)
    assert store.expire_abandoned() != []
    won(ask(store, rule, "two"))
    assert refused(store, rule, "three").limit == "user_daily"  # both full; the day waits longest


def test_concurrent_limit_counts_running_videos(store: SyncStore) -> None:
    rule = replace(RULE, limits=Limits(user_concurrent=2, typical_seconds=300))
    first = won(ask(store, rule, "one"))
    won(ask(store, rule, "two"))
    age(store.url, seconds=100)
    error = refused(store, rule, "three")
    assert (error.limit, error.problem) == ("user_concurrent", "/problems/user-concurrent-limit")
    # The oldest has run 100 s of a typical 300 s.
    assert 195 <= error.retry_after <= 201, error.retry_after
    age(store.url, seconds=280)
    assert refused(store, rule, "three").retry_after == 30  # overdue: a tenth of the typical time
    store.complete(first, GenerationResult("https://v.example/1.mp4", None, Decimal("4.00")))
    won(ask(store, rule, "three"))
    won(ask(store, rule, "four", user=2))


def test_budget_reserves_until_the_cost_is_recorded(store: SyncStore) -> None:
    rule = replace(RULE, limits=Limits(budget_usd=Decimal("10.00"), reserve_usd=Decimal("4.00")))
    first = won(ask(store, rule, "one", user=1))
    age(store.url, hours=1)
    won(ask(store, rule, "two", user=2))  # 8 reserved of 10
    error = refused(store, rule, "three", user=3)
    assert (error.limit, error.problem) == ("daily_budget", "/problems/daily-budget")
    # Room comes when "one" (1 h old) leaves the window: 10 - 4 + 4 <= 10.
    assert DAY - 3600 - 10 <= error.retry_after <= DAY - 3600 + 1, error.retry_after
    # Its cost recorded (cheaper than reserved): the room it leaves is the difference.
    store.complete(first, GenerationResult("https://v.example/1.mp4", None, Decimal("1.50")))
    won(ask(store, rule, "three", user=3))  # 1.50 + 4 + 4 = 9.50
    assert refused(store, rule, "four", user=4).limit == "daily_budget"


def test_the_tightest_limit_answers(store: SyncStore) -> None:
    rule = replace(RULE, limits=Limits(user_daily=1, user_concurrent=1, typical_seconds=60))
    won(ask(store, rule, "one"))
    error = refused(store, rule, "two")
    # Both are full; the request fits only once the daily one has room (~24 h, not ~60 s).
    assert error.limit == "user_daily" and error.retry_after > 3600


def test_no_limits_is_the_claim_as_it_was(store: SyncStore) -> None:
    for n in range(5):
        won(ask(store, RULE, f"prompt {n}"))
