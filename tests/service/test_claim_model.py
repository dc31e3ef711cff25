"""Random histories of requests, heartbeats, results, failures, sweeps and clock moves,
run against the real store (SQLite) and against a plain-Python model of the rule.

The model is deliberately naive: it keeps every video and asks `ClaimRule.blocks` of the
latest attempt per key. After every step the store must agree with it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from service.claim import FAILED, GENERATING, READY, ClaimRule, ClaimState, ClaimTicket, NewVideo
from service.generators import GenerationResult
from service.storage import SqlStore, make_engine, migrate
from tests.service.clock import ManualClock

RULE = ClaimRule(window=timedelta(hours=1), lease=timedelta(seconds=30))
RESULT = GenerationResult("https://v.example/x.mp4", None, Decimal("4.00"))
KEYS = st.sampled_from([(1, "a"), (1, "b"), (2, "a")])


@dataclass
class ModelVideo:
    ticket: ClaimTicket
    status: str
    lease_expires_at: object


class ClaimMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.engine = make_engine(f"sqlite:///{self.tmp.name}/model.db")
        migrate(self.engine)
        self.store = SqlStore(self.engine)
        self.clock = ManualClock()
        self.latest: dict[tuple[int, str], ModelVideo] = {}
        self.videos: list[ModelVideo] = []

    def _blocks(self, key) -> bool:
        holder = self.latest.get(key)
        if holder is None:
            return False
        state = ClaimState(holder.status, holder.ticket.attempt, holder.ticket.created_at, holder.lease_expires_at)
        return RULE.blocks(state, self.clock.now)

    @rule(key=KEYS)
    def request(self, key) -> None:
        expected_win = not self._blocks(key)
        ticket = self.store.try_claim(NewVideo(key[0], key[1], key[1]), now=self.clock.now, rule=RULE)
        assert (ticket is not None) == expected_win
        if ticket is None:
            return
        previous = self.latest.get(key)
        if previous is not None and previous.status == GENERATING:
            previous.status = FAILED  # taken over
        video = ModelVideo(ticket, GENERATING, RULE.lease_expiry(self.clock.now))
        self.latest[key] = video
        self.videos.append(video)

    @rule(seconds=st.sampled_from([1, 10, 29, 30, 31, 600, 3600]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)

    def _current(self, video: ModelVideo) -> bool:
        return self.latest[(video.ticket.tg_user_id, video.ticket.prompt_key)] is video and video.status == GENERATING

    @rule(data=st.data())
    def renew(self, data) -> None:
        if not self.videos:
            return
        video = data.draw(st.sampled_from(self.videos))
        ok = self.store.renew(video.ticket, now=self.clock.now, rule=RULE)
        assert ok == self._current(video)
        if ok:
            video.lease_expires_at = RULE.lease_expiry(self.clock.now)

    @rule(data=st.data())
    def complete(self, data) -> None:
        if not self.videos:
            return
        video = data.draw(st.sampled_from(self.videos))
        expected = self._current(video)
        assert self.store.complete(video.ticket, RESULT, now=self.clock.now) == expected
        video.status = READY if expected else (video.status if video.status == READY else FAILED)

    @rule(data=st.data())
    def fail(self, data) -> None:
        if not self.videos:
            return
        video = data.draw(st.sampled_from(self.videos))
        self.store.fail(video.ticket, "boom", now=self.clock.now)
        if video.status == GENERATING:
            video.status = FAILED

    @rule()
    def sweep(self) -> None:
        expired = [v for v in self.latest.values() if v.status == GENERATING and v.lease_expires_at <= self.clock.now]
        swept = self.store.expire_abandoned(now=self.clock.now)
        assert swept == sorted(v.ticket.video_id for v in expired)
        for video in expired:
            video.status = FAILED

    @invariant()
    def statuses_agree(self) -> None:
        for video in self.videos:
            assert self.store.get(video.ticket.video_id).status == video.status

    def teardown(self) -> None:
        self.engine.dispose()
        self.tmp.cleanup()


ClaimMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestClaimModel = ClaimMachine.TestCase
