"""The background runner: generates admitted requests with bounded concurrency and a bounded
backlog, keeps their leases alive, records every outcome, and sweeps claims whose workers died.

Leases. One heartbeat task renews every lease this process holds in one statement per
interval (a third of the lease: two beats in a row may fail before a claim expires), on the
store's reserved connections, so a burst of requests can never starve it. A failed beat is
retried after `HEARTBEAT_RETRY_SECONDS`, not a full interval. A lease is lost only when the
database says so (a newer attempt took the key over): then nobody will accept this
generation's result, so this process stops waiting on it, but never cancels its provider job:
the attempt that took over adopted it. Only the attempt that holds the claim may stop a job
(`GenerationJob.may_cancel`). While the database cannot be reached nobody else can take the
key either, so an outage alone cancels nothing.

Every database call here is bounded with `service.deadlines.within`, which answers at the
deadline even against a frozen server (asyncio.wait_for would wait out psycopg's cancel);
the writes it gives up on are fenced and idempotent, so one that still lands is harmless.

Outcomes. A paid result is never dropped: the write that records how a generation ended is
retried with backoff until the database answers (the heartbeat keeps the lease alive
meanwhile), and the store accepts a late result that nobody superseded. Cancelled, timed-out
and superseded generations still record what the generator charged, unless their job was
handed on (the store keeps a job's cost on the newest attempt that carries it). Only the
generation is ever cancelled, never the write that records it; `stop` waits for those writes,
for at most `STOP_GRACE_SECONDS` once the database stops answering, and hands running provider
jobs over instead of stopping them.

The sweep. Every lease, abandoned claims that never asked for a provider job are failed;
those with one are claimed on their users' behalf and their jobs adopted (`adopt_abandoned`),
so a paid result ends recorded even when nobody asks again.

Backlog. Each queued generation holds a claim and a user waiting for it; past
`max_concurrent + max_queued` generations, new work is refused (429) *before* any claim is
taken (`check_capacity`). A queued generation is an entry in a deque, not a task waiting on a
semaphore: a task, its coroutines and its waiter made 26 objects per entry for the collector
to walk (8 now), and with the backlog limit lifted (bench/create_throughput.py) those walks
were the new-claim path's latency tail. Its task starts when a generation frees its slot.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TypeVar

from service.claim import FAILED, READY, ClaimRule
from service.deadlines import within
from service.errors import (
    ClaimContention, ClaimfirstError, DuplicateRequest, GenerationError, LimitReached, StorageUnavailable, Throttled,
)
from service.generation.generators import GenerationJob, GenerationResult, Generator
from service.metrics import Metrics
from service.policies import Admission, Recorder, admit
from service.stores.base import Store

__all__ = ["GenerationRunner", "RunnerStats", "VideoOutcome", "OnOutcome"]

log = logging.getLogger("claimfirst.runner")
T = TypeVar("T")

# A heartbeat that failed is retried this soon: a blip of a second or two must not eat the
# lease's margin, and one statement per second per process is nothing to a database.
HEARTBEAT_RETRY_SECONDS = 1.0
# Outcome writes retry from this delay, doubling up to the cap: quick after a blip, gentle on
# a database that is coming back from a restart.
OUTCOME_RETRY_FIRST_SECONDS = 0.2
OUTCOME_RETRY_MAX_SECONDS = 5.0
# On shutdown, how long unrecordable outcomes are retried before they are logged and left to
# the lease (the next request or the sweep frees the key). uvicorn's own grace is longer.
STOP_GRACE_SECONDS = 10.0
# Until a generation has finished here, Retry-After for a full backlog assumes this long
# (real generations take 2-5 minutes; the figure only has to be of the right order).
DEFAULT_GENERATION_SECONDS = 60.0


@dataclass
class RunnerStats:
    submitted: int = 0
    started: int = 0
    ready: int = 0
    failed: int = 0
    lost: int = 0
    unrecorded: int = 0  # outcomes the database never took before shutdown (logged)
    handed_over: int = 0  # running provider jobs left to the next sweep when stopping

    @property
    def in_flight(self) -> int:
        return self.submitted - self.ready - self.failed - self.lost - self.unrecorded - self.handed_over


@dataclass(frozen=True)
class VideoOutcome:
    """How a generation ended, once the database has it: what `submit`'s `on_outcome` gets.

    `status` is ready, failed, or superseded (a newer attempt took the claim over; its own
    caller hears how that one ends)."""

    video_id: int | None
    status: str
    video_url: str | None = None
    error: str | None = None


OnOutcome = Callable[[VideoOutcome], Awaitable[None]]


@dataclass(frozen=True)
class _Outcome:
    result: GenerationResult | None = None
    error: str = ""
    cost_usd: Decimal | None = None
    lost: bool = False
    adopted: bool = False  # the result came from an earlier attempt's provider job
    handed_over: bool = False  # stopping with a running provider job: released for adoption
    job_id: str | None = None  # a provider job whose id is not recorded yet: written with the outcome


@dataclass
class _Hold:
    """A lease this process renews, from admission until its outcome is recorded."""

    ticket: object  # ClaimTicket
    lost: asyncio.Event = field(default_factory=asyncio.Event)


# A submitted generation, queued or running: what `_run` is started with.
_Entry = tuple[Admission, GenerationJob, "_Hold | None", "OnOutcome | None"]


class GenerationRunner:
    def __init__(
        self,
        store: Store,
        generator: Generator,
        *,
        rule: ClaimRule,
        max_concurrent: int,
        max_queued: int,
        timeout_seconds: float,
        db_timeout_seconds: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.generator = generator
        self.rule = rule
        self.lease = lease = rule.lease
        self.heartbeat_seconds = lease.total_seconds() / 3
        # Sweeping once per lease bounds how long an abandoned claim shows `generating` to two
        # leases; a new request takes an expired claim over without waiting for the sweep.
        self.sweep_seconds = lease.total_seconds()
        self.timeout_seconds = timeout_seconds
        self.db_timeout_seconds = db_timeout_seconds
        self.max_concurrent = max_concurrent
        self.capacity = max_concurrent + max_queued
        self.stats = RunnerStats()
        self.metrics = metrics
        self._running = 0  # generations holding one of the max_concurrent slots
        # With the context it was submitted in: a task copies the context it is created in,
        # and a queued one is created by whichever generation frees a slot, whose request id
        # its log lines would otherwise carry.
        self._queued: deque[tuple[_Entry, contextvars.Context]] = deque()
        self._holds: dict[int, _Hold] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._generations: set[asyncio.Task[GenerationResult]] = set()
        self._stopping = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self._mean_seconds = DEFAULT_GENERATION_SECONDS
        # Told when an outcome is recorded here (the callbacks' deliverer looks for it at once).
        self.on_recorded: Callable[[], None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._background = [loop.create_task(self._heartbeat_forever(), name="heartbeat"),
                            loop.create_task(self._sweep_until_stopped(), name="sweeper")]

    async def stop(self) -> None:
        """Stop in-flight generations and wait until each is recorded (or given up): one with a
        running provider job is handed over (its lease ended, the job left running for the next
        sweep anywhere to adopt), any other is recorded failed."""
        self._stopping.set()
        for generation in list(self._generations):
            generation.cancel()
        while self._queued:  # each sees the stop: recorded as stopped, nothing generated
            self._start(*self._queued.popleft())
        await self.drain()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def drain(self) -> None:
        """Wait until every submitted generation has finished and been recorded."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- admission ---------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        return self.stats.in_flight

    def check_capacity(self) -> Throttled | None:
        """Throttled (429) when the backlog is full, else None; asked before any claim.

        A soft bound: requests being admitted at this instant are not counted yet (counting
        them would turn a burst of duplicates into 429s instead of 409s), so the backlog can
        overshoot by the requests in flight, which the server's concurrency limit bounds."""
        if self.backlog < self.capacity:
            return None
        queued = max(1, self.backlog - self.max_concurrent)
        retry_after = max(1, math.ceil(self._mean_seconds * queued / self.max_concurrent))
        return Throttled(
            f"{self.backlog} generations are running or queued here (the limit is {self.capacity}); "
            "nothing was claimed, try again later.", retry_after=retry_after)

    def submit(self, admission: Admission, job: GenerationJob, on_outcome: OnOutcome | None = None) -> None:
        """Start generating an admitted request in the background; `on_outcome` is awaited
        once its outcome is recorded (never when it could not be: then nothing is known)."""
        self.stats.submitted += 1
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        hold = None
        if admission.ticket is not None:
            hold = self._holds[admission.ticket.video_id] = _Hold(admission.ticket)
        entry = (admission, job, hold, on_outcome)
        if self._running < self.max_concurrent or self._stopping.is_set():
            self._start(entry)
        else:
            self._queued.append((entry, contextvars.copy_context()))

    def _start(self, entry: _Entry, context: contextvars.Context | None = None) -> None:
        self._running += 1
        task = asyncio.get_running_loop().create_task(self._run(*entry), name=f"video-{entry[1].video_id}",
                                                      context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _free_slot(self) -> None:
        # Before the outcome is recorded: a database slow to take it must not hold the next
        # generation back. Queued entries start in order; `drain` sees their tasks, since the
        # slot is freed by a task still running.
        self._running -= 1
        if self._queued:
            self._start(*self._queued.popleft())

    # -- generation --------------------------------------------------------------------

    async def _run(self, admission: Admission, job: GenerationJob, hold: _Hold | None,
                   on_outcome: OnOutcome | None) -> None:
        try:
            outcome = await self._generate(admission, job, hold)
            status = await self._record(admission.recorder, outcome, job.video_id)
            if status is not None and self.on_recorded is not None:
                self.on_recorded()
        finally:
            if hold is not None:
                self._holds.pop(admission.ticket.video_id, None)  # type: ignore[union-attr]
            if self.metrics is not None:
                self.metrics.in_flight.dec()
        if on_outcome is not None and status is not None:
            url = outcome.result.video_url if outcome.result is not None and status == READY else None
            try:
                await on_outcome(VideoOutcome(job.video_id, status, url, outcome.error or None))
            except Exception:  # a listener's bug must never take the runner down
                log.exception("video %s: the outcome listener failed", job.video_id)

    async def _generate(self, admission: Admission, job: GenerationJob, hold: _Hold | None) -> _Outcome:
        """Generate in the slot `_start` took for it; the slot is freed when this returns."""
        jobs: list[str] = []  # provider jobs this attempt started or adopted
        recorded: list[str] = []  # those whose id the database took
        claim_lost: list[bool] = []
        try:
            if self._stopping.is_set():
                # Queued when the service stopped: an attempt that was handed a running job hands
                # it on again; any other never started and is recorded failed, nothing spent.
                if _has_job(admission):
                    return _Outcome(error=_STOPPED, handed_over=True)
                return _Outcome(error=_STOPPED)
            self.stats.started += 1
            started = time.monotonic()
            ticket = admission.ticket
            adopt = ticket.adopt_job_id if ticket is not None else None
            search_since = ticket.adopt_requested_at if ticket is not None else None
            adopted: list[bool] = []

            async def on_job_started(job_id: str) -> None:
                jobs.append(job_id)
                adopted.append(adopt is not None and job_id == adopt)
                held = await self._job_started(admission.recorder, job_id)
                recorded.append(job_id)
                if not held:
                    claim_lost.append(True)
                    raise GenerationError(f"claim lost before provider job {job_id} was recorded; the job runs on",
                                          cost_usd=self.generator.cost_usd)

            async def on_job_requested() -> None:
                if not await self._retrying(admission.recorder.request_job, what="provider job request",
                                            deadline=time.monotonic() + self.lease.total_seconds()):
                    raise GenerationError("claim lost before a provider job was asked for; nothing was created")

            def may_cancel() -> bool:
                # Only the attempt that holds the claim, and chose to stop, stops its job.
                lease_lost = hold is not None and hold.lost.is_set()
                return not (lease_lost or claim_lost or self._stopping.is_set())

            job = replace(
                job, adopt_job_id=adopt, on_job_started=on_job_started, on_job_requested=on_job_requested,
                search_since=search_since, may_cancel=may_cancel,
                search_age_seconds=(ticket.created_at - search_since).total_seconds() if search_since and ticket else 0.0)
            generation = asyncio.create_task(asyncio.wait_for(self.generator.generate(job), self.timeout_seconds))
            self._generations.add(generation)
            lost = asyncio.create_task(hold.lost.wait()) if hold is not None else None
            try:
                await asyncio.wait({generation, *([lost] if lost else [])}, return_when=asyncio.FIRST_COMPLETED)
                if not generation.done():
                    generation.cancel()
                    await asyncio.wait({generation})
                    return _Outcome(error=_LEASE_LOST, cost_usd=self._spent(jobs), lost=True)
            finally:
                self._generations.discard(generation)
                if lost is not None:
                    lost.cancel()
        finally:
            self._free_slot()
        # A job whose id the database never took (the stop's grace ran out first) is written
        # with the outcome, so no paid job is missing from the books.
        unrecorded = jobs[-1] if jobs and jobs[-1] not in recorded else None
        interrupted = generation.cancelled() or generation.exception() is not None and self._stopping.is_set()
        if interrupted and admission.ticket is not None and (jobs or _has_job(admission)):
            # A stopping service hands a provider job over instead of cancelling or failing it
            # (whether its generation was cancelled or could not record the job before the
            # grace ran out): the lease is ended, the job runs on, and the next sweep anywhere
            # adopts it (paid once).
            return _Outcome(error=_STOPPED, handed_over=True, job_id=unrecorded)
        if generation.cancelled():
            return _Outcome(error=_STOPPED, cost_usd=self._spent(jobs))
        exc = generation.exception()
        if isinstance(exc, TimeoutError):
            return _Outcome(error=f"generation timed out after {self.timeout_seconds:g} s", cost_usd=self._spent(jobs))
        if exc is not None:  # any generator error marks the video failed, never leaks
            cost = getattr(exc, "cost_usd", None)
            if cost is None and (jobs or getattr(admission.ticket, "adopt_job_id", None)):
                cost = self.generator.cost_usd  # a provider job existed: it billed, whatever failed here
            return _Outcome(error=f"{type(exc).__name__}: {exc}", cost_usd=cost, job_id=unrecorded)
        # A running mean of how long generations take here, for Retry-After when full.
        self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * (time.monotonic() - started)
        return _Outcome(result=generation.result(), adopted=any(adopted))

    def _spent(self, jobs: list[str]) -> Decimal | None:
        """What a started, then abandoned, generation cost: the price of a provider job if one
        was started (the database keeps it off this row if the job was handed on); a generator
        without provider jobs (the simulated one) charges its price all the same."""
        if getattr(self.generator, "provider_jobs", False) and not jobs:
            return None
        return getattr(self.generator, "cost_usd", None)

    async def _job_started(self, recorder: Recorder, job_id: str) -> bool:
        """Make the provider's job id durable before the generator waits on it; whether this
        attempt still holds the claim. Retried until the database takes it, like an outcome:
        a job whose id is lost is money the books never show."""
        return await self._retrying(lambda: recorder.record_job(job_id), what="provider job id")

    async def _record(self, recorder: Recorder, outcome: _Outcome, video_id: int | None) -> str | None:
        """Record the outcome; the status recorded (ready, failed, superseded), None if none was."""
        try:
            if outcome.job_id is not None:
                await self._retrying(lambda: recorder.record_job(outcome.job_id), what="provider job id")  # type: ignore[arg-type]
            if outcome.handed_over:
                await self._retrying(recorder.release, what="hand-over")
                log.info("video %s: stopping; its provider job runs on and is handed over", video_id)
                self.stats.handed_over += 1
                self._ended("handed_over", outcome, video_id)
                return None
            if outcome.result is not None:
                accepted = await self._retrying(lambda: recorder.complete(outcome.result), what="result")  # type: ignore[arg-type]
                if accepted:
                    self.stats.ready += 1
                    self._ended("adopted" if outcome.adopted else "ready", outcome, video_id)
                    return READY
                log.warning("video %s: late result rejected, its claim was superseded", video_id)
                self.stats.lost += 1
                self._ended("superseded", outcome, video_id)
                return SUPERSEDED
            await self._retrying(lambda: recorder.fail(outcome.error, outcome.cost_usd), what="failure")
        except StorageUnavailable as exc:
            log.error("video %s: outcome never recorded (%s); the lease will free the key", video_id, exc)
            self.stats.unrecorded += 1
            self._ended(None, outcome, video_id)
            return None
        if outcome.lost:
            log.warning("video %s: lease lost, generation cancelled", video_id)
            self.stats.lost += 1
            self._ended("superseded", outcome, video_id)
            return SUPERSEDED
        log.info("video %s failed: %s", video_id, outcome.error)
        self.stats.failed += 1
        self._ended("failed", outcome, video_id)
        return FAILED

    def _ended(self, how: str | None, outcome: _Outcome, video_id: int | None) -> None:
        """Count an ended generation and what it cost (None: its outcome was never recorded,
        but the money was spent all the same)."""
        cost = outcome.result.cost_usd if outcome.result is not None else outcome.cost_usd
        if how is not None:
            log.info("video %s: generation %s", video_id, how, extra={"video_id": video_id, "outcome": how})
        if self.metrics is not None:
            self.metrics.generation_ended(how, cost)

    async def _retrying(self, write: Callable[[], Awaitable[T]], *, what: str, deadline: float | None = None) -> T:
        """Run `write` until the database answers; give up only past `deadline` or the stop grace."""
        delay = OUTCOME_RETRY_FIRST_SECONDS
        while True:
            try:
                return await within(write(), self.db_timeout_seconds)
            except (StorageUnavailable, TimeoutError) as exc:
                if self._stopping.is_set() and deadline is None:
                    deadline = time.monotonic() + STOP_GRACE_SECONDS
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise StorageUnavailable(f"gave up recording the {what}: {str(exc) or 'timed out'}") from exc
                log.warning("recording the %s failed (%s); retrying in %.1f s", what, str(exc) or "timed out", delay)
                await asyncio.sleep(delay)  # backoff between retries, not synchronisation
                delay = min(delay * 2, OUTCOME_RETRY_MAX_SECONDS)

    # -- leases ------------------------------------------------------------------------

    async def renew_once(self) -> bool:
        """One heartbeat for every held lease; False when the database did not answer."""
        holds = list(self._holds.values())
        if not holds:
            return True
        try:
            held = await within(self.store.renew([h.ticket for h in holds], self.lease),  # type: ignore[misc]
                                          self.db_timeout_seconds)
        except (StorageUnavailable, TimeoutError) as exc:
            log.warning("heartbeat for %d leases failed (%s)", len(holds), str(exc) or "timed out")
            return False
        for hold in holds:
            if hold.ticket.video_id not in held:  # type: ignore[attr-defined]
                hold.lost.set()
        return True

    async def _heartbeat_forever(self) -> None:
        delay = self.heartbeat_seconds
        while True:
            await asyncio.sleep(delay)  # the heartbeat's cadence
            ok = await self.renew_once()
            delay = self.heartbeat_seconds if ok else min(HEARTBEAT_RETRY_SECONDS, self.heartbeat_seconds)

    # -- the sweep ---------------------------------------------------------------------

    async def sweep_once(self) -> list[int]:
        # Never this process's own holds: after a pause its sweep and its heartbeat wake together,
        # and a sweep that won would cancel a generation this process is still paying for.
        return await within(self.store.expire_abandoned(list(self._holds)), self.db_timeout_seconds)

    async def adopt_abandoned(self) -> list[int]:
        """Claim, on their users' behalf, abandoned claims whose provider job may run on or be
        done, and finish each by adopting its job (never creating one): a paid result ends
        recorded without anybody asking again. The same conditional upsert as a request, so
        a live holder that renewed meanwhile, another process's sweep, or the user's own retry
        wins instead, once. Bounded per sweep; the rest wait for the next."""
        adopted: list[int] = []
        if self._stopping.is_set():
            return adopted
        for request in await within(self.store.adoptable(ADOPT_PER_SWEEP, list(self._holds)), self.db_timeout_seconds):
            deadline = time.monotonic() + self.db_timeout_seconds
            try:
                admission = await within(admit("claim", self.store, self.rule, request, deadline),
                                         self.db_timeout_seconds)
            except (DuplicateRequest, ClaimContention):
                continue  # taken in between: its new holder finishes it
            except LimitReached:
                # An adoption is a takeover, which no limit refuses; this one's holder changed in
                # between into one that is not (a user's new request will be judged on its own).
                continue
            job = GenerationJob(admission.video_id, request.tg_user_id, request.prompt, request.category,
                                adopt_only=True, params=admission.ticket.params if admission.ticket else request.params)
            self.submit(admission, job)
            adopted.append(admission.video_id)  # type: ignore[arg-type]
        return adopted

    async def _sweep_until_stopped(self) -> None:
        # The first sweep one interval after start, like every other: a claim abandoned by a
        # process that just died has a lease that may still be running anyway.
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), self.sweep_seconds)
                return
            except TimeoutError:
                pass
            try:
                expired = await self.sweep_once()
                if expired:
                    log.warning("sweep: marked abandoned videos failed: %s", expired)
                adopted = await self.adopt_abandoned()
                if adopted:
                    log.warning("sweep: adopting the provider jobs of abandoned claims as videos %s", adopted)
            except (ClaimfirstError, TimeoutError) as exc:
                log.warning("sweep failed: %s", str(exc) or "timed out")


# Abandoned claims adopted per sweep, at most: each is a claim statement and a generation slot;
# more wait one lease for the next sweep (any process's).
ADOPT_PER_SWEEP = 16
SUPERSEDED = "superseded"
_STOPPED = "service stopped during generation"


def _has_job(admission: Admission) -> bool:
    """Whether the attempt was handed a provider job (or a job to look for) when it claimed."""
    ticket = admission.ticket
    return ticket is not None and (ticket.adopt_job_id is not None or ticket.adopt_requested_at is not None)
_LEASE_LOST = "lease lost while generating; generation cancelled"
