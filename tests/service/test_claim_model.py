"""Random histories of requests, heartbeats, results, failures, sweeps and time passing,
run against the real store (SQLite) and against a plain-Python model of the rule.

The model is deliberately naive: it keeps every video and asks `ClaimRule.blocks` of the
latest attempt per key. After every step the store must agree with it. Time passes by ageing
the stored rows; the model's clock moves by the same amounts. The store's clock also moves
for real while an example runs (milliseconds), so the steps are even numbers of seconds and
the lease and window odd ones: no sum of steps lands within a second of an edge.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from service import GenerationResult
from service.claim import FAILED, GENERATING, READY, ClaimRule, ClaimState, ClaimTicket, NewVideo
from tests.stores import age, migrated_store

RULE = ClaimRule(window=timedelta(seconds=3601), lease=timedelta(seconds=31))
RESULT = GenerationResult("https://v.example/x.mp4", None, Decimal("4.00"))
KEYS = st.sampled_from([(1, "a"), (1, "b"), (2, "a")])


@dataclass
class ModelVideo:
    ticket: ClaimTicket
    status: str
    claimed_at: datetime
    lease_expires_at: datetime | None
    swept: bool = False  # failed by the sweep, not by its worker: a heartbeat may take it back


class ClaimMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.url = f"sqlite:///{self.tmp.name}/model.db"
        self._opened = migrated_store(self.url)
        self.store = self._opened.__enter__()
        self.now = datetime(2025, 10, 15, tzinfo=UTC)  # the model's clock
        self.latest: dict[tuple[int, str], ModelVideo] = {}
        self.videos: list[ModelVideo] = []

    def _blocks(self, key) -> bool:
        holder = self.latest.get(key)
        if holder is None:
            return False
        state = ClaimState(holder.status, holder.ticket.attempt, holder.claimed_at, holder.lease_expires_at)
        return RULE.blocks(state, self.now)

    @rule(key=KEYS)
    def request(self, key) -> None:
        expected_win = not self._blocks(key)
        outcome = self.store.claim(NewVideo(key[0], key[1], key[1]), RULE)
        assert isinstance(outcome, ClaimTicket) == expected_win
        if not expected_win:
            assert outcome is not None and outcome.blocks
            return
        previous = self.latest.get(key)
        if previous is not None and previous.status == GENERATING:
            previous.status = FAILED  # taken over
        video = ModelVideo(outcome, GENERATING, self.now, self.now + RULE.lease)
        self.latest[key] = video
        self.videos.append(video)

    @rule(seconds=st.sampled_from([2, 10, 28, 30, 32, 600, 3600]))
    def advance(self, seconds: int) -> None:
        age(self.url, seconds=seconds)
        self.now += timedelta(seconds=seconds)

    def _current(self, video: ModelVideo) -> bool:
        return self.latest[(video.ticket.tg_user_id, video.ticket.prompt_key)] is video

    @rule(data=st.data())
    def renew(self, data) -> None:
        if not self.videos:
            return
        video = data.draw(st.sampled_from(self.videos))
        held = self.store.renew([video.ticket], RULE.lease) == {video.ticket.video_id}
        assert held == (self._current(video) and (video.status == GENERATING or video.swept))
        if held:
            video.status, video.swept, video.lease_expires_at = GENERATING, False, self.now + RULE.lease

    @rule(data=st.data())
    def complete(self, data) -> None:
        if not self.videos:
            return
        video = data.draw(st.sampled_from(self.videos))
        # Fenced on the attempt: accepted while no newer attempt took the key over.
        expected = self._current(video)
        assert self.store.complete(video.ticket, RESULT) == expected
        if expected:
            video.status, video.swept, video.lease_expires_at = READY, False, None
        elif video.status != READY:
            video.status = FAILED

    @rule(data=st.data())
    def fail(self, data) -> None:
        if not self.videos:
            return
        video = data.draw(st.sampled_from(self.videos))
        self.store.fail(video.ticket, "boom")
        if video.status == GENERATING:
            video.status = FAILED
            video.lease_expires_at = None
        video.swept = False

    @rule()
    def sweep(self) -> None:
        expired = [v for v in self.latest.values()
                   if v.status == GENERATING and v.lease_expires_at is not None and v.lease_expires_at <= self.now]
        swept = self.store.expire_abandoned()
        assert swept == sorted(v.ticket.video_id for v in expired)
        for video in expired:
            video.status, video.swept, video.lease_expires_at = FAILED, True, None

    @invariant()
    def statuses_agree(self) -> None:
        for video in self.videos:
            assert self.store.get(video.ticket.video_id).status == video.status

    def teardown(self) -> None:
        self._opened.__exit__(None, None, None)
        self.tmp.cleanup()


ClaimMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestClaimModel = ClaimMachine.TestCase
