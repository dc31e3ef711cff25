"""`ClaimFirst`: the claim for a bot that keeps its own process (aiogram, python-telegram-bot, …).

    from service import ClaimFirst, DuplicateRequest

    async with ClaimFirst.from_env() as cf:      # or ClaimFirst(settings)
        try:
            admission = await cf.create(tg_user_id, prompt, on_outcome=send_video)
        except DuplicateRequest as dup:          # dup.existing: the holder's id, status, url
            ...

It is the `Runtime` the HTTP service and the webhook bot call, started and stopped the way the
app's lifespan does it: the same claim, leases, heartbeats, fencing, provider adoption, bounded
waits, metrics and hourly chores. Entering migrates per `CLAIMFIRST_MIGRATE_ON_START` (off: the
database must be at head). Every exception is one of `service.errors`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import anyio

from service.callbacks import check_callback_url
from service.claim import NewVideo
from service.errors import ClaimfirstError, InvalidRequest
from service.generation import Generator
from service.generation.runner import OnOutcome
from service.housekeeping import forget_old_rows
from service.policies import Admission
from service.params import check_params
from service.prompt_key import key_with_params, prompt_key
from service.records import VideoRecord
from service.runtime import Runtime
from service.settings import Settings
from service.stores.engine import current_revision, head_revision, make_engine, migrate

__all__ = ["ClaimFirst", "MAX_PROMPT_CHARS"]

MAX_PROMPT_CHARS = 2000  # as POST /create


class ClaimFirst:
    def __init__(self, settings: Settings | None = None, *, generator: Generator | None = None) -> None:
        self.settings = settings or Settings()
        self.runtime = Runtime.build(self.settings, generator=generator)
        self._chores: asyncio.Task[None] | None = None

    @classmethod
    def from_env(cls, *, generator: Generator | None = None) -> ClaimFirst:
        return cls(Settings(), generator=generator)

    async def __aenter__(self) -> ClaimFirst:
        await anyio.to_thread.run_sync(self._prepare_schema)
        await self.runtime.store.open()
        self.runtime.start()
        self._chores = asyncio.get_running_loop().create_task(forget_old_rows(self.runtime), name="forget-old-rows")
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        if self._chores is not None:
            self._chores.cancel()
            await asyncio.gather(self._chores, return_exceptions=True)
        await self.runtime.stop()
        await self.runtime.store.close()

    def _prepare_schema(self) -> None:
        engine = make_engine(self.settings.connect_url, prepare=self.settings.db_prepare)
        try:
            if self.settings.migrate_on_start:
                migrate(engine)
            elif (current := current_revision(engine)) != (head := head_revision()):
                raise ClaimfirstError(f"the database is at revision {current or 'none'}, not {head}: "
                                         "run `python -m service migrate` (CLAIMFIRST_MIGRATE_ON_START is false)")
        finally:
            engine.dispose()

    async def create(self, tg_user_id: int, prompt: str, category: str | None = None, *,
                     on_outcome: OnOutcome | None = None, params: Mapping[str, Any] | None = None,
                     callback_url: str | None = None) -> Admission:
        """Claim (user, prompt key) and start the generation in the background; `on_outcome`
        hears how it ended. DuplicateRequest when a video holds the key, Throttled when the
        backlog is full, StorageUnavailable when the database does not answer in time,
        InvalidRequest for a prompt with no content or over 2,000 characters, params that
        `POST /create` would refuse (service.params), or a callback_url the settings refuse
        (service.callbacks: `on_outcome` hears in-process, a callback_url durably, from
        whichever process is running when the video ends)."""
        if not isinstance(tg_user_id, int) or tg_user_id < 1:
            raise InvalidRequest("tg_user_id must be a whole number > 0")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequest(f"prompt is over {MAX_PROMPT_CHARS} characters")
        if not (key := prompt_key(prompt)):
            raise InvalidRequest("prompt is empty once whitespace, invisible characters and trailing punctuation go")
        try:
            checked = check_params(params)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        if callback_url is not None:
            check_callback_url(callback_url, self.settings)
        key = key_with_params(key, checked, self.settings.key_params)
        return await self.runtime.create(NewVideo(tg_user_id, prompt, key, category, checked, callback_url=callback_url),
                                         on_outcome=on_outcome)

    async def get(self, video_id: int) -> VideoRecord:
        """The video's record (VideoNotFound when there is none)."""
        return await self.runtime.bounded(self.runtime.store.get(video_id))
