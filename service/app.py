"""The application: wires settings, storage, the claim rule, the generator and the runner,
and builds the FastAPI app around them (`create_app`).

`Runtime.create` is the `/create` use case: validate, win the claim (committed before
anything is spent), then hand the generation to the background runner and return at once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio.to_thread
from fastapi import FastAPI

from service.claim import ClaimRule, NewVideo
from service.generators import GenerationJob, Generator, SimHints, make_generator
from service.policies import Admission, admit
from service.runner import GenerationRunner
from service.settings import Settings
from service.storage import SqlStore, make_engine, migrate

__all__ = ["Runtime", "create_app", "utc_now"]

log = logging.getLogger("claimfirst")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    store: SqlStore
    rule: ClaimRule
    runner: GenerationRunner
    clock: Callable[[], datetime]

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        generator: Generator | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> Runtime:
        store = SqlStore(make_engine(settings.database_url), round_trip_latency_ms=settings.db_latency_ms)
        rule = ClaimRule(
            window=timedelta(hours=settings.duplicate_window_hours),
            lease=timedelta(seconds=settings.lease_seconds),
        )
        generator = generator or make_generator(settings)
        runner = GenerationRunner(
            store, generator, clock,
            max_concurrent=settings.max_concurrent_generations,
            heartbeat_seconds=settings.heartbeat_seconds,
            sweep_seconds=settings.sweep_seconds,
            timeout_seconds=settings.generation_timeout_seconds,
        )
        return cls(settings, store, rule, runner, clock)

    async def create(self, request: NewVideo, hints: SimHints | None = None) -> Admission:
        # Admission is blocking SQL; run it off the event loop. It raises DuplicateRequest
        # (409) or StorageUnavailable (503) before anything is submitted, so a request that
        # fails here has started no generation.
        admission = await anyio.to_thread.run_sync(
            admit, self.settings.policy, self.store, self.rule, request, self.clock
        )
        job = GenerationJob(admission.video_id, request.tg_user_id, request.prompt, request.category, hints)
        self.runner.submit(admission.recorder, job)
        return admission


def create_app(
    settings: Settings | None = None,
    *,
    generator: Generator | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> FastAPI:
    """Build the app. Settings come from the environment unless given."""
    from service.routes import install

    settings = settings or Settings()
    runtime = Runtime.build(settings, generator=generator, clock=clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(migrate, runtime.store.engine)
        runtime.runner.start()
        log.info("claimfirst ready: %s, policy=%s", runtime.store.engine.url.render_as_string(), settings.policy)
        try:
            yield
        finally:
            await runtime.runner.stop()
            runtime.store.engine.dispose()

    app = FastAPI(
        title="claimfirst",
        summary="Claim-first video generation: one atomic claim per prompt, never two payments.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install(app)
    return app
