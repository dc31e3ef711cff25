"""The application: wires settings, the store, the claim rule, the generator and the runner,
and builds the FastAPI app around them (`create_app`), with the Telegram webhook when
TELEGRAM_BOT_TOKEN is set (`service.telegram`).

`Runtime.create` is the `/create` use case: check the backlog has room, win the claim
(committed before anything is spent) within the request's time bound, then hand the
generation to the background runner and return at once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import anyio.to_thread
from fastapi import FastAPI

from service.claim import ClaimRule, NewVideo
from service.deadlines import request_deadline, within
from service.errors import DuplicateRequest, StorageUnavailable
from service.generators import GenerationJob, Generator, SimHints, make_generator
from service.housekeeping import forget_old_rows
from service.logs import bind
from service.metrics import Metrics
from service.policies import Admission, admit
from service.runner import GenerationRunner, OnOutcome
from service.settings import Settings
from service.storage import make_engine, migrate
from service.stores import Store, open_store

__all__ = ["Runtime", "create_app", "serving_app"]

log = logging.getLogger("claimfirst")


@dataclass
class Runtime:
    settings: Settings
    store: Store
    rule: ClaimRule
    runner: GenerationRunner
    metrics: Metrics = field(default_factory=Metrics)

    @classmethod
    def build(cls, settings: Settings, *, generator: Generator | None = None) -> Runtime:
        rule = ClaimRule(
            window=timedelta(hours=settings.duplicate_window_hours),
            lease=timedelta(seconds=settings.lease_seconds),
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
        return cls(settings, store, rule, runner, metrics)

    async def create(self, request: NewVideo, hints: SimHints | None = None,
                     on_outcome: OnOutcome | None = None) -> Admission:
        """Admit `request` and start its generation; `on_outcome` hears how it ended."""
        # Throttled (429) before any claim; DuplicateRequest (409) or StorageUnavailable (503)
        # before anything is submitted, so a request that fails here has started nothing.
        if (throttled := self.runner.check_capacity()) is not None:
            # A full backlog still tells a duplicate which video it duplicates: a read, no claim.
            if self.settings.policy == "claim":
                holder = await self.bounded(self.store.holder(request, self.rule))
                if holder is not None and holder.blocks:
                    raise DuplicateRequest(holder.video)
            raise throttled
        admission = await self.bounded(admit(self.settings.policy, self.store, self.rule, request, self.deadline()))
        if admission.attempt > 1:
            self.metrics.takeovers.inc()
        # Before submit: the generation's task copies this context, so its log lines carry
        # the request id, video id and attempt too.
        bind(video_id=admission.video_id, attempt=admission.attempt)
        job = GenerationJob(admission.video_id, request.tg_user_id, request.prompt, request.category, hints)
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


def create_app(settings: Settings | None = None, *, generator: Generator | None = None) -> FastAPI:
    """Build the app. Settings come from the environment unless given."""
    from service.routes import install

    settings = settings or Settings()
    runtime = Runtime.build(settings, generator=generator)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await anyio.to_thread.run_sync(_migrate, settings.database_url)
        await runtime.store.open()
        runtime.runner.start()
        forgetting: asyncio.Task[None] | None = None
        try:
            forgetting = asyncio.get_running_loop().create_task(forget_old_rows(runtime), name="forget-old-rows")
            log.info("claimfirst ready: %s, policy=%s", runtime.store.dialect, settings.policy)
            yield
        finally:
            # Also when starting failed half-way: nothing started here may outlive the app.
            if forgetting is not None:
                forgetting.cancel()
                await asyncio.gather(forgetting, return_exceptions=True)
            await runtime.runner.stop()
            # After the runner: the generations it cancelled tell their users, then the bot
            # gets a moment to send that before the store closes.
            if app.state.telegram is not None:
                await app.state.telegram.close()
            await runtime.store.close()

    app = FastAPI(
        title="claimfirst",
        summary="Claim-first video generation: one atomic claim per prompt, never two payments.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install(app)
    app.state.telegram = None
    if settings.telegram_enabled:
        from service.telegram.webhook import TelegramBot, install_webhook

        app.state.telegram = TelegramBot.from_settings(runtime)
        install_webhook(app, app.state.telegram)
    return app


# A young-generation collection every 10,000 allocations instead of Python's 700: a request
# allocates a few hundred objects that reference counting frees anyway. Measured in-process
# over 20,000 duplicate /create: 2,282 young collections with the default, 213 with this.
GC_YOUNG_THRESHOLD = 10_000


def serving_app() -> FastAPI:
    """The factory `python -m service` hands uvicorn: `create_app` in a process that serves
    only it, with the collector tuned for a long-running server. Everything built so far
    (imported modules, the app, ~125,000 objects) is frozen out of the collector's reach:
    it lives as long as the process, and scanning it made every full collection a pause of
    60-170 ms. Not in `create_app`: a test process builds many apps and frees them."""
    app = create_app()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    return app


def _migrate(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
