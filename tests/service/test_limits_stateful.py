"""Histories of limited claims on SQLite and a real PostgreSQL, against a plain-Python model of
what counts (service.stores.limits).

Hypothesis composes requests from two users for a handful of prompts (new ones, duplicates, and
prompts whose video failed, with or without a provider job), provider jobs, outcomes with and
without costs, and time passing across the 24 h window. After every request the store must have
decided as the model does: a ticket, the blocking holder (a duplicate, whatever the counts), or
`LimitReached` naming one of the limits the model finds full. Invariant: the costs recorded in
the last 24 h never exceed the budget.

Time passes by ageing every stored time (`ClaimDriver.advance`), in steps of 7 and 11 hours: no
sum of them is within an hour of 24, so no row is ever near the window's edge while the store's
own clock moves on by the milliseconds an example takes. The lease and the duplicate window are
longer than any history, so no takeover of a live lease happens here (test_limits_store.py has
those); a failed video's key is taken again, which is a new generation, or an adoption when its
job's cost was never recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from service.claim import FAILED, GENERATING, READY, ClaimRule, ClaimTicket, Holder, Limits, NewVideo
from service.errors import LimitReached
from service.records import GenerationResult
from tests.service.claim_driver import ClaimDriver

LIMITS = Limits(user_daily=3, user_concurrent=2, budget_usd=Decimal(10), reserve_usd=Decimal(4))
RULE = ClaimRule(window=timedelta(days=60), lease=timedelta(days=60), limits=LIMITS)


@dataclass
class Model:
    user: int
    key: str
    hour: int  # when claimed, on the model's clock
    ticket: ClaimTicket
    status: str = GENERATING
    job: bool = False
    cost: Decimal | None = None

    @property
    def returned(self) -> bool:  # failed without a provider job: nothing paid, its place given back
        return self.status == FAILED and not self.job


class LimitedHistory(RuleBasedStateMachine):
    def __init__(self, driver: ClaimDriver) -> None:
        super().__init__()
        self.driver = driver
        driver.reset()
        self.now = 0
        self.videos: list[Model] = []

    def _recent(self) -> list[Model]:
        return [v for v in self.videos if self.now - v.hour < 24]

    def _full(self, user: int) -> set[str]:
        recent = self._recent()
        full = set()
        if sum(v.user == user and not v.returned for v in recent) >= 3:
            full.add("user_daily")
        if sum(v.user == user and v.status == GENERATING for v in self.videos) >= 2:
            full.add("user_concurrent")
        spent = sum((v.cost if v.cost is not None else Decimal(0) if v.returned else Decimal(4)) for v in recent)
        if spent + 4 > 10:
            full.add("daily_budget")
        return full

    @rule(user=st.sampled_from([1, 2]), key=st.sampled_from(["a", "b", "c", "d", "e"]))
    def ask(self, user: int, key: str) -> None:
        holder = next((v for v in reversed(self.videos) if (v.user, v.key) == (user, key)), None)
        adopts = holder is not None and holder.status == FAILED and holder.job and holder.cost is None
        full = set() if adopts else self._full(user)
        try:
            outcome = self.driver.claim(NewVideo(user, key, key))
        except LimitReached as exc:
            assert holder is None or holder.status == FAILED, "a duplicate was refused by a limit"
            assert exc.limit in full, (exc.limit, full)
            return
        if holder is not None and holder.status != FAILED:
            assert isinstance(outcome, Holder) and outcome.blocks and outcome.video.id == holder.ticket.video_id
            return
        assert not full, f"a new generation was let past {full}"
        assert isinstance(outcome, ClaimTicket), outcome
        assert (outcome.adopt_job_id is not None) == adopts
        self.videos.append(Model(user, key, self.now, outcome, job=adopts))

    def _generating(self) -> list[Model]:
        return [v for v in self.videos if v.status == GENERATING]

    @precondition(lambda self: self._generating())
    @rule(data=st.data())
    def record_job(self, data: st.DataObject) -> None:
        video = data.draw(st.sampled_from(self._generating()))
        assert self.driver.record_job(video.ticket, f"job-{video.ticket.video_id}")
        video.job = True

    @precondition(lambda self: self._generating())
    @rule(data=st.data(), cost=st.sampled_from([Decimal("1.50"), Decimal("4.00")]))
    def complete(self, data: st.DataObject, cost: Decimal) -> None:
        video = data.draw(st.sampled_from(self._generating()))
        assert self.driver.complete(video.ticket, GenerationResult("https://v.example/x.mp4", None, cost))
        video.status, video.cost = READY, cost

    @precondition(lambda self: self._generating())
    @rule(data=st.data(), cost=st.sampled_from([None, Decimal("1.25")]))
    def fail(self, data: st.DataObject, cost: Decimal | None) -> None:
        video = data.draw(st.sampled_from(self._generating()))
        self.driver.fail(video.ticket, "provider error", cost)
        video.status, video.cost = FAILED, cost if cost is not None else video.cost

    @rule(hours=st.sampled_from([7, 11]))
    def advance(self, hours: int) -> None:
        self.driver.advance(hours * 3600)
        self.now += hours

    @invariant()
    def recorded_costs_stay_under_the_budget(self) -> None:
        assert sum(v.cost or 0 for v in self._recent()) <= LIMITS.budget_usd


def test_limited_histories_follow_the_model(db_url: str) -> None:
    with ClaimDriver.open(db_url, RULE) as driver:
        run_state_machine_as_test(lambda: LimitedHistory(driver), settings=settings(
            max_examples=40, stateful_step_count=25, deadline=None, derandomize=True))
