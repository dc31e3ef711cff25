"""Histories of the claim on SQLite and a real PostgreSQL, against a plain-Python model.

Hypothesis composes histories of requests for colliding prompts ("Cats!", "cats", "CATS ?"
share one key) from two users, the worker's fenced writes by any ticket ever issued (old,
superseded ones too: a late write), heartbeats of several tickets at once, provider job
records, sweeps, and time passing across the lease and the window. After every step the store
must agree with the model on each key's holder (attempt, status, lease), on whether a new
request would be blocked, on every video (status, error, published url, cost, job), and on what
each write returned; and the store's own rows must show no key with two ready/generating
videos inside one window, nor a claim whose status differs from its video's.

The model is `ClaimRule.blocks` (the rule the stores' SQL states, held together with it at the
edges by test_claim_rule.py) plus the fencing contract in plain Python: a dict per (user, key)
of the holder, and every video. `test_claim_model.py` is its smaller SQLite-only ancestor;
this one adds PostgreSQL, colliding prompts, the provider job and its adoption, batch renews,
errors and costs, and the window.

Time: the stores read their clock inside SQL, which a test cannot set, so time passes by moving
every stored time back (`ClaimDriver.advance`): the same, for the store, as its clock moving
forward by as much. The model's clock moves by the same amounts. The store's real clock also
moves while an example runs (milliseconds per step), always forwards, so every step is a
multiple of 20 s and the lease (30 s) and window (1 h 10 s) end 10 s off that grid: every age
the model computes is at least `MARGIN` (10 s) from an edge, more than an example's wall-clock
time. The steps land 10 s before and after both edges (20/40 s, 3600/3620 s). The exact edges
(a lease ending "now", the inclusive window) are test_claim_rule.py's. An example that ran
longer than the margin fails, saying so, rather than compare across an edge; and each stored
time must be the model's, late by no more than the example has run (`_times_agree`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle, RuleBasedStateMachine, invariant, multiple, precondition, rule, run_state_machine_as_test,
)

from service.claim import FAILED, GENERATING, READY, ClaimRule, ClaimState, ClaimTicket, Holder, NewVideo
from service.records import GenerationResult
from service.prompt_key import prompt_key
from service.stores.base import ABANDONED_ERROR, LATE_ERROR, SUPERSEDED_ERROR, VideoRecord, key_digest
from tests.service.claim_driver import ClaimDriver, StoredClaim, StoredVideo

RULE = ClaimRule(window=timedelta(hours=1, seconds=10), lease=timedelta(seconds=30))
STEPS = [20, 40, 600, 3600, 3620]  # seconds; see the module's docstring
MARGIN = timedelta(seconds=10)
assert all(s % 20 == 0 for s in STEPS) and RULE.lease.seconds % 20 == 10 and RULE.window.seconds % 20 == 10

USERS = st.sampled_from([1, 2])
PROMPTS = st.sampled_from(["Cats!", "cats", "CATS ?", "Dogs…", "dogs"])
KEY_OF_DIGEST = {key_digest(key): key for key in ("cats", "dogs")}
RESULTS = st.sampled_from([GenerationResult("https://v.example/a.mp4", None, Decimal("4.00")),
                           GenerationResult("https://v.example/b.mp4", "https://v.example/b.jpg", Decimal("2.50"))])
FAILURES = st.sampled_from([("provider error", None), ("timed out", Decimal("1.25"))])

Key = tuple[int, str]


def key_of(ticket: ClaimTicket) -> Key:
    return (ticket.tg_user_id, ticket.prompt_key)


# -- the model ----------------------------------------------------------------------------


@dataclass
class ModelVideo:
    id: int
    key: Key
    prompt: str  # the request's own words: "CATS ?" is stored as sent, under the key "cats"
    attempt: int
    created_at: datetime
    status: str = GENERATING
    error: str | None = None
    url: str | None = None
    cost: Decimal | None = None
    job: str | None = None


@dataclass
class ModelClaim:
    video: ModelVideo  # the holder: its attempt is the claim's
    status: str
    claimed_at: datetime
    lease_expires_at: datetime | None


class ClaimModel:
    """What the stores should do, on the model's own clock."""

    def __init__(self, note: Callable[[str], None]) -> None:
        self.note = note  # what happened, for Hypothesis' statistics and the scripted histories
        self.now = datetime(2025, 10, 15, tzinfo=UTC)
        self.claims: dict[Key, ModelClaim] = {}
        self.videos: dict[int, ModelVideo] = {}

    def blocks(self, key: Key) -> bool:
        claim = self.claims.get(key)
        if claim is None:
            return False
        state = ClaimState(claim.status, claim.video.attempt, claim.claimed_at, claim.lease_expires_at)
        return RULE.blocks(state, self.now)

    def current(self, ticket: ClaimTicket) -> bool:
        """Whether `ticket` is still its key's latest attempt: the fence of every write."""
        return self.claims[key_of(ticket)].video.attempt == ticket.attempt

    def claimed(self, ticket: ClaimTicket, prompt: str) -> tuple[int, str | None]:
        """A won claim: (the attempt it should have, the provider job it should adopt)."""
        key = key_of(ticket)
        held = self.claims.get(key)
        attempt = 1 if held is None else held.video.attempt + 1
        # A takeover fences off the attempts still generating and hands on their job; else the
        # holder's job when it failed without its cost recorded (its outcome was never written).
        # The handed-on job goes on the new row at once: its cost is the new attempt's.
        superseded = sorted((v for v in self.videos.values()
                             if v.key == key and v.status == GENERATING and v.attempt < attempt),
                            key=lambda v: v.attempt)
        jobs = [v.job for v in superseded if v.job is not None]
        unpaid = held is not None and held.video.status == FAILED and held.video.cost is None
        adopt = jobs[-1] if jobs else (held.video.job if unpaid else None)  # type: ignore[union-attr]
        for video in superseded:
            video.status = FAILED
            video.error = SUPERSEDED_ERROR.format(attempt=attempt, video_id=ticket.video_id)
        video = ModelVideo(ticket.video_id, key, prompt, attempt, self.now, job=adopt)
        self.videos[video.id] = video
        self.claims[key] = ModelClaim(video, GENERATING, self.now, self.now + RULE.lease)
        return attempt, adopt

    def renew(self, tickets: list[ClaimTicket]) -> set[int]:
        held = set()
        for ticket in tickets:
            claim = self.claims[key_of(ticket)]
            video = claim.video
            # A claim the sweep marked abandoned is taken back if nobody took it over since; one
            # its own worker finished or failed never is.
            swept = claim.status == FAILED and video.status == FAILED and video.error == ABANDONED_ERROR
            if self.current(ticket) and (claim.status == GENERATING or swept):
                self.note("heartbeat: took back a swept claim" if swept else "heartbeat: held")
                claim.status, claim.lease_expires_at = GENERATING, self.now + RULE.lease
                if video.status == FAILED:
                    video.status, video.error = GENERATING, None
                held.add(video.id)
            else:
                self.note("heartbeat: refused")
        return held

    def record_job(self, ticket: ClaimTicket, job: str) -> bool:
        # The job's id goes on the attempt's own row whatever became of the claim (the job is
        # paid for); the answer is whether the attempt still holds it.
        claim = self.claims[key_of(ticket)]
        self.videos[ticket.video_id].job = job
        held = self.current(ticket) and claim.status == GENERATING
        self.note(f"record_job: recorded, claim {'held' if held else 'lost'}")
        return held

    def handed_on(self, video: ModelVideo) -> bool:
        """Whether a newer attempt carries this row's job: then the cost is that attempt's."""
        return video.job is not None and any(
            n.job == video.job and n.id != video.id and n.key[0] == video.key[0] and n.attempt > video.attempt
            for n in self.videos.values())

    def complete(self, ticket: ClaimTicket, result: GenerationResult) -> bool:
        claim, video = self.claims[key_of(ticket)], self.videos[ticket.video_id]
        if self.current(ticket):  # fenced on the attempt only: a late result nobody superseded counts
            swept = claim.status == FAILED and video.error == ABANDONED_ERROR
            self.note(f"complete: accepted from a {'swept' if swept else claim.status} claim")
            claim.status, claim.lease_expires_at = READY, None
            video.status, video.url, video.cost, video.error = READY, result.video_url, result.cost_usd, None
            return True
        self.note("complete: superseded, rejected")
        # The money was spent: the cost is kept on this attempt's row, nothing is published,
        # unless its job was handed on (the adopter records it: once per job).
        if video.status != READY:
            cost = video.cost if self.handed_on(video) else result.cost_usd
            video.status, video.cost, video.error = FAILED, cost, video.error or LATE_ERROR
        return False

    def fail(self, ticket: ClaimTicket, error: str, cost: Decimal | None) -> None:
        claim, video = self.claims[key_of(ticket)], self.videos[ticket.video_id]
        self.note(f"fail: {'current' if self.current(ticket) else 'superseded'} ticket, {claim.status} claim")
        if self.current(ticket) and claim.status == GENERATING:
            claim.status, claim.lease_expires_at = FAILED, None
        if video.status != READY:
            # The worker's word replaces the sweep's "abandoned", never a takeover's note.
            if video.status == GENERATING or video.error == ABANDONED_ERROR:
                video.error = error
            else:
                video.error = video.error or error
            video.status = FAILED
            video.cost = video.cost if cost is None or self.handed_on(video) else cost

    def sweep(self) -> list[int]:
        # A claim with a provider job is not failed but left for adoption (the runner's sweep
        # claims it on its user's behalf): only claims that never had a job are swept.
        expired = [c for c in self.claims.values() if c.status == GENERATING and c.video.job is None
                   and c.lease_expires_at is not None and c.lease_expires_at <= self.now]
        self.note(f"sweep: {len(expired)} expired")
        for claim in expired:
            claim.status, claim.lease_expires_at = FAILED, None
            if claim.video.status == GENERATING:
                claim.video.status, claim.video.error = FAILED, ABANDONED_ERROR
        return sorted(c.video.id for c in expired)


# -- the state machine ----------------------------------------------------------------------


class ClaimHistory(RuleBasedStateMachine):
    tickets = Bundle("tickets")

    def __init__(self, driver: ClaimDriver, note: Callable[[str], None] = event) -> None:
        super().__init__()
        self.driver = driver
        driver.reset()
        self.model = ClaimModel(note)
        self.jobs = itertools.count(1)
        self.started = driver.now()  # the database's real clock: how long the example has run

    # `starts_job`: the winner's worker starts its provider job and records it at once, as the
    # runner does; without it a takeover would rarely find a job to adopt.
    @rule(target=tickets, user=USERS, prompt=PROMPTS, starts_job=st.booleans())
    def create(self, user: int, prompt: str, starts_job: bool = False):  # type: ignore[no-untyped-def]
        request = NewVideo(user, prompt, prompt_key(prompt))
        key = (user, request.prompt_key)
        held = self.model.claims.get(key)
        blocked = self.model.blocks(key)
        outcome = self.driver.claim(request)
        if blocked:
            self.model.note(f"create: blocked by a {held.status} holder")  # type: ignore[union-attr]
            # Lost: the same round trip brings back the holder, and it blocks.
            assert isinstance(outcome, Holder), outcome
            assert outcome.blocks
            assert (outcome.video.id, outcome.claim.attempt, outcome.claim.status) == (
                held.video.id, held.video.attempt, held.status)  # type: ignore[union-attr]
            return multiple()
        self.model.note("create: first claim" if held is None else f"create: took over a {held.status} holder")
        assert isinstance(outcome, ClaimTicket), outcome
        assert (outcome.tg_user_id, outcome.prompt_key) == key
        attempt, adopt = self.model.claimed(outcome, prompt)
        if adopt is not None:
            self.model.note("create: adopted a provider job")
        assert (outcome.attempt, outcome.adopt_job_id) == (attempt, adopt)
        if starts_job:
            self._record_job(outcome)
        return outcome

    @rule(seconds=st.sampled_from(STEPS))
    def time_passes(self, seconds: int) -> None:
        self.driver.advance(seconds)
        self.model.now += timedelta(seconds=seconds)

    @rule(batch=st.lists(tickets, min_size=1, max_size=3, unique_by=lambda t: t.video_id))
    def heartbeat(self, batch: list[ClaimTicket]) -> None:
        expected = self.model.renew(batch)
        assert self.driver.renew(batch) == expected

    @rule(ticket=tickets)
    def record_job(self, ticket: ClaimTicket) -> None:
        self._record_job(ticket)

    def _record_job(self, ticket: ClaimTicket) -> None:
        job = f"job-{next(self.jobs)}"
        expected = self.model.record_job(ticket, job)
        assert self.driver.record_job(ticket, job) is expected

    @rule(ticket=tickets, result=RESULTS)
    def complete(self, ticket: ClaimTicket, result: GenerationResult) -> None:
        expected = self.model.complete(ticket, result)
        assert self.driver.complete(ticket, result) is expected

    @rule(ticket=tickets, failure=FAILURES)
    def fail(self, ticket: ClaimTicket, failure: tuple[str, Decimal | None]) -> None:
        self.model.fail(ticket, *failure)
        self.driver.fail(ticket, *failure)

    # Only while some claim is generating: an empty sweep of an idle key space is a wasted step.
    @precondition(lambda self: any(c.status == GENERATING for c in self.model.claims.values()))
    @rule()
    def sweep(self) -> None:
        expected = self.model.sweep()
        assert self.driver.sweep() == expected

    # -- after every step ------------------------------------------------------------------

    @invariant()
    def store_agrees_with_model(self) -> None:
        claims, videos = self.driver.claims(), {v.record.id: v for v in self.driver.videos()}
        self._holders_agree(claims)
        self._times_agree(claims, videos)
        self._blocking_agrees()
        self._videos_agree(videos)
        self._one_live_video_per_key_and_window(claims, videos)

    def _holders_agree(self, claims: list[StoredClaim]) -> None:
        stored = {(c.tg_user_id, KEY_OF_DIGEST[c.key_digest]): c for c in claims}
        assert stored.keys() == self.model.claims.keys()
        for key, claim in self.model.claims.items():
            row = stored[key]
            assert (row.video_id, row.attempt, row.status) == (claim.video.id, claim.video.attempt, claim.status), key
            assert (row.lease_expires_at is None) is (claim.lease_expires_at is None), key

    def _times_agree(self, claims: list[StoredClaim], stored: dict[int, StoredVideo]) -> None:
        """Each stored time is the model's, late by the real time between its write and now,
        which is at most how long this example has run: the claim's start and its video's, and
        the lease's end (a lease a few seconds short, or renewed from the claim rather than
        from the beat, is caught here, not only at the edges)."""
        now = self.driver.now()
        ran = now - self.started
        assert ran < MARGIN, f"the example ran {ran} of real time, past the grid's margin of {MARGIN}"
        slack = timedelta(milliseconds=1)  # SQLite's clock keeps milliseconds

        def late(stored_at: datetime, model_at: datetime) -> bool:
            lag = (now - stored_at) - (self.model.now - model_at)  # how much later the store wrote it
            return -slack <= lag <= ran + slack

        for row in claims:
            claim = self.model.claims[(row.tg_user_id, KEY_OF_DIGEST[row.key_digest])]
            assert late(row.claimed_at, claim.claimed_at), row
            if row.lease_expires_at is not None and claim.lease_expires_at is not None:
                assert late(row.lease_expires_at, claim.lease_expires_at), row
        for video_id, video in stored.items():
            assert late(video.record.created_at, self.model.videos[video_id].created_at), video_id

    def _blocking_agrees(self) -> None:
        """Whether a new request for each key would be refused, as the store's own read says (a
        key with no claim row has no holder: `_holders_agree` saw there is none)."""
        for (user, key), claim in self.model.claims.items():
            holder = self.driver.holder(NewVideo(user, key, key))
            assert holder is not None and holder.blocks is self.model.blocks((user, key)), (user, key)
            assert (holder.video.id, holder.claim.attempt, holder.claim.status) == (
                claim.video.id, claim.video.attempt, claim.status)

    def _videos_agree(self, stored: dict[int, StoredVideo]) -> None:
        assert stored.keys() == self.model.videos.keys()
        for video_id, video in self.model.videos.items():
            row, job = stored[video_id].record, stored[video_id].provider_job_id
            assert ((row.tg_user_id, row.prompt_key), row.prompt, row.attempt) == (
                video.key, video.prompt, video.attempt), video_id
            assert (row.status, row.error, row.video_url, row.cost_usd, job) == (
                video.status, video.error, video.url, video.cost, video.job), video_id

    def _one_live_video_per_key_and_window(self, claims: list[StoredClaim], stored: dict[int, StoredVideo]) -> None:
        """The service's promise, read from the store's rows alone: per key, no two videos that
        are ready or generating within one window of each other, at most one generating, and
        the claim's status is its video's."""
        live: dict[Key, list[VideoRecord]] = {}
        for video in (v.record for v in stored.values()):
            if video.status in (READY, GENERATING):
                live.setdefault((video.tg_user_id, video.prompt_key), []).append(video)
        for key, videos in live.items():
            created = sorted(v.created_at for v in videos)
            assert all(later - earlier > RULE.window for earlier, later in itertools.pairwise(created)), key
            assert sum(v.status == GENERATING for v in videos) <= 1, key
        for claim in claims:
            assert claim.status == stored[claim.video_id].record.status, claim


# Derandomized: CI runs the same histories every time (and keeps no example database).
SETTINGS = settings(max_examples=60, stateful_step_count=30, deadline=None, derandomize=True)


def test_claim_histories_follow_the_model(db_url: str) -> None:
    with ClaimDriver.open(db_url, RULE) as driver:
        run_state_machine_as_test(lambda: ClaimHistory(driver), settings=SETTINGS)


# -- written histories: the cases the random ones must reach, reached on purpose ---------------


class Scripted:
    """A `ClaimHistory` driven by hand: each step is a rule, then the invariant, as in a random run."""

    def __init__(self, driver: ClaimDriver) -> None:
        self.notes: list[str] = []
        self.machine = ClaimHistory(driver, self.notes.append)

    def __getattr__(self, name: str) -> Callable[..., object]:
        step = getattr(self.machine, name)

        def checked(*args: object) -> object:
            outcome = step(*args)
            self.machine.store_agrees_with_model()
            return outcome

        return checked

    def video(self, ticket: ClaimTicket) -> VideoRecord:
        return next(v.record for v in self.machine.driver.videos() if v.record.id == ticket.video_id)


CATS = GenerationResult("https://v.example/cats.mp4", None, Decimal("4.00"))


def test_a_late_result_after_the_sweep_is_accepted_when_nobody_took_over(db_url: str) -> None:
    with ClaimDriver.open(db_url, RULE) as driver:
        history = Scripted(driver)
        ticket = history.create(1, "Cats!")
        assert isinstance(ticket, ClaimTicket)
        history.time_passes(40)  # the worker went silent past its lease (an outage)
        history.sweep()
        assert history.video(ticket).error == ABANDONED_ERROR
        history.complete(ticket, CATS)
        assert "complete: accepted from a swept claim" in history.notes
        assert history.video(ticket).video_url == CATS.video_url
        history.create(1, "cats")  # and it blocks its duplicates again
        assert "create: blocked by a ready holder" in history.notes


def test_a_superseded_ticket_writes_nothing_and_its_job_is_adopted(db_url: str) -> None:
    with ClaimDriver.open(db_url, RULE) as driver:
        history = Scripted(driver)
        first = history.create(1, "Cats!")
        history.record_job(first)
        history.time_passes(40)
        second = history.create(1, "CATS ?")  # the same key: a takeover
        assert isinstance(first, ClaimTicket) and isinstance(second, ClaimTicket)
        assert (second.attempt, second.adopt_job_id) == (2, "job-1")
        history.complete(first, CATS)  # the late result of the superseded attempt
        history.heartbeat([first, second])
        history.record_job(first)
        history.fail(first, ("provider error", None))
        assert history.notes.count("complete: superseded, rejected") == 1
        assert (history.video(first).status, history.video(first).video_url) == (FAILED, None)
        history.complete(second, CATS)
        assert history.video(second).status == READY


def test_a_ready_video_blocks_for_the_window_and_a_swept_lease_can_be_taken_back(db_url: str) -> None:
    with ClaimDriver.open(db_url, RULE) as driver:
        history = Scripted(driver)
        ready, live = history.create(1, "Cats!"), history.create(1, "Dogs…")
        history.complete(ready, CATS)
        history.time_passes(40)
        history.sweep()  # the dogs' lease ran out: abandoned
        history.heartbeat([live])  # its worker was alive after all, and nobody took the key
        assert "heartbeat: took back a swept claim" in history.notes
        history.time_passes(3560)  # 3,600 s after the cats video: 10 s inside the window
        history.create(1, "cats")
        assert "create: blocked by a ready holder" in history.notes
        history.time_passes(20)  # 10 s past it
        again = history.create(1, "cats")
        assert isinstance(again, ClaimTicket) and again.attempt == 2
