"""The `/create` use case, which both edges call (`service.http`, `service.telegram`): wires
settings, the store, the claim rule, the generator and the runner into one `Runtime`.

`Runtime.create` checks the backlog has room, wins the claim (committed before anything is
spent) within the request's time bound, then hands the generation to the background runner
and returns at once. Imports the layers below it only; no HTTP, no Telegram.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from service.callbacks import Deliverer
from service.claim import ClaimRule, Limits, NewVideo
from service.deadlines import request_deadline, within
from service.errors import DuplicateRequest, InvalidRequest, LimitReached, StorageUnavailable
from service.generation import GenerationJob, Generator, SimHints, make_generator
from service.generation.runner import GenerationRunner, OnOutcome
from service.logs import bind
from service.metrics import Metrics
from service.policies import Admission, admit
from service.settings import Settings
from service.stores import Store, open_store

__all__ = ["Runtime", "limits_of"]

# How long a real generation usually runs (2-5 minutes): the concurrent limit's Retry-After.
TYPICAL_GENERATION_SECONDS = 180.0


def limits_of(settings: Settings) -> Limits | None:
    """The claim's limits from the settings; None when none is set (the claim as it always was)."""
    limits = Limits(
        user_daily=settings.user_daily_limit, user_concurrent=settings.user_concurrent_limit,
        budget_usd=None if settings.daily_budget_usd is None else Decimal(str(settings.daily_budget_usd)),
        reserve_usd=Decimal(str(settings.cost_per_video_usd)),
        typical_seconds=(sum(settings.sim_seconds) / 2 if settings.generator == "sim" else TYPICAL_GENERATION_SECONDS),
    )
    return limits if limits.on else None


@dataclass
class Runtime:
    settings: Settings
    store: Store
    rule: ClaimRule
    runner: GenerationRunner
    metrics: Metrics = field(default_factory=Metrics)
    deliverer: Deliverer | None = None  # completion callbacks (service.callbacks), when a secret is set

    @classmethod
    def build(cls, settings: Settings, *, generator: Generator | None = None) -> Runtime:
        rule = ClaimRule(
            window=timedelta(hours=settings.duplicate_window_hours),
            lease=timedelta(seconds=settings.lease_seconds),
            limits=limits_of(settings),
        )
        generator = generator or make_generator(settings)
        store = open_store(settings)
        metrics = Metrics()
        runner = GenerationRunner(
            store, generator,
            rule=rule,
            max_concurrent=settings.max_concurrent_generations,
            max_queued=settings.max_queued_generations,
            timeout_seconds=settings.generation_timeout_seconds,
            db_timeout_seconds=settings.request_timeout_seconds,
            metrics=metrics,
        )
        deliverer = Deliverer(store, settings, metrics)
        runner.on_recorded = deliverer.nudge
        return cls(settings, store, rule, runner, metrics, deliverer)

    def start(self) -> None:
        """Start the background work: leases, the sweep, callback deliveries."""
        self.runner.start()
        if self.deliverer is not None:
            self.deliverer.start()

    async def stop(self) -> None:
        """Stop it: generations first (their outcomes are recorded, their callbacks made due for
        whichever worker runs next), then the deliverer."""
        await self.runner.stop()
        if self.deliverer is not None:
            await self.deliverer.stop()

    async def create(self, request: NewVideo, hints: SimHints | None = None,
                     on_outcome: OnOutcome | None = None) -> Admission:
        """Admit `request` and start its generation; `on_outcome` hears how it ended."""
        # Throttled (429) before any claim; DuplicateRequest (409) or StorageUnavailable (503)
        # before anything is submitted, so a request that fails here has started nothing.
        if request.callback_url is not None and self.settings.policy != "claim":
            raise InvalidRequest("callback_url needs CLAIMFIRST_POLICY=claim (the replay policies have no outbox)")
        if (throttled := self.runner.check_capacity()) is not None:
            # A full backlog still tells a duplicate which video it duplicates: a read, no claim.
            if self.settings.policy == "claim":
                holder = await self.bounded(self.store.holder(request, self.rule))
                if holder is not None and holder.blocks:
                    raise DuplicateRequest(holder.video)
            raise throttled
        try:
            admission = await self.bounded(admit(self.settings.policy, self.store, self.rule, request, self.deadline()))
        except LimitReached as exc:
            self.metrics.limit_reached(exc.limit)
            raise
        if admission.attempt > 1:
            self.metrics.takeovers.inc()
        # Before submit: the generation's task copies this context, so its log lines carry
        # the request id, video id and attempt too.
        bind(video_id=admission.video_id, attempt=admission.attempt)
        # The claim's params: the request's, or those of an earlier attempt whose job it was handed.
        params = admission.ticket.params if admission.ticket is not None else request.params
        job = GenerationJob(admission.video_id, request.tg_user_id, request.prompt, request.category, hints,
                            params=params)
        self.runner.submit(admission, job, on_outcome)
        return admission

    def deadline(self) -> float:
        """When the current request gives up: its scope's deadline (service.deadlines), or a
        full bound from now for a call made outside one."""
        return request_deadline() or time.monotonic() + self.settings.request_timeout_seconds

    async def bounded(self, call):  # type: ignore[no-untyped-def]
        """Await a store call within what is left of the request's time bound; a database that
        does not answer in time is StorageUnavailable (503). The claim itself carries the same
        deadline to the database, so one decided after it changes nothing.
        `within`, not `asyncio.wait_for`: the bound holds on a frozen database too."""
        try:
            return await within(call, max(0.0, self.deadline() - time.monotonic()))
        except TimeoutError:
            raise StorageUnavailable(
                f"database unavailable: no answer within {self.settings.request_timeout_seconds:g} s"
            ) from None
