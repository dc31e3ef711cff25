"""The application: one FastAPI app holding both edges around one `Runtime`: the HTTP API
(`service.http`) and, when TELEGRAM_BOT_TOKEN is set, the Telegram webhook (`service.telegram`).

`create_app` builds it (tests, embedding programs); `serving_app` is the factory
`python -m service` hands uvicorn. Above both edges, below `service.__main__` only.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from service.generation import Generator
from service.housekeeping import forget_old_rows
from service.http.auth import webhook_refusal
from service.runtime import Runtime
from service.settings import Settings
from service.stores.engine import make_engine, migrate

__all__ = ["create_app", "serving_app"]

log = logging.getLogger("claimfirst")


def create_app(settings: Settings | None = None, *, generator: Generator | None = None) -> FastAPI:
    """Build the app. Settings come from the environment unless given."""
    from service.http.routes import install

    settings = settings or Settings()
    if refusal := webhook_refusal(settings):
        raise ValueError(refusal)
    runtime = Runtime.build(settings, generator=generator)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await anyio.to_thread.run_sync(_migrate, settings.connect_url, settings.db_prepare)
        await runtime.store.open()
        runtime.start()
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
            await runtime.stop()
            # After the runner: the generations it cancelled tell their users, then the bot
            # gets a moment to send that before the store closes.
            if app.state.telegram is not None:
                await app.state.telegram.close()
            await runtime.store.close()

    app = FastAPI(
        title="claimfirst",
        summary="Claim-first video generation: one atomic claim per prompt, never two payments.",
        lifespan=lifespan,
        docs_url=None,  # served from local assets by service.http.docs, not a CDN
        redoc_url=None,
    )
    app.state.runtime = runtime
    # What /healthz names: the configured generator, or (built in code: tests, bench) its class.
    app.state.generator = settings.generator if generator is None else type(generator).__name__
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


def _migrate(database_url: str, prepare: bool = True) -> None:
    engine = make_engine(database_url, prepare=prepare)
    try:
        migrate(engine)
    finally:
        engine.dispose()
