"""`python -m service telegram poll`: the same bot with long polling (getUpdates), no public address.

    offset ◀── the database (telegram_poll_offsets)
      ▼
    getUpdates(offset, timeout) ──▶ each update, in order:
                                      bot.take(update)      the webhook's own handling: record_update
                                      │                     (update_id dedupe), then the claim
                                      save offset = id + 1
                                      wait for its replies  (so a stop lands between updates)

At most once per update, as with the webhook: a redelivered update (the offset not saved yet,
or Telegram not told yet) is recognised by `record_update` and not handled again. A database
that does not answer leaves the update where it is; it is tried again after a pause, and the
offset does not move past it. SIGTERM or SIGINT: the update in hand is finished, its offset
saved, a getUpdates in flight is abandoned (Telegram keeps what it had not confirmed), and the
process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import ValidationError

from service.deadlines import deadline_scope
from service.errors import StorageUnavailable
from service.stores.poll_offsets import PollOffsets
from service.telegram.api import Update
from service.telegram.bot import TelegramBot
from service.telegram.client import TelegramApiError

__all__ = ["Poller", "bot_id_of"]

log = logging.getLogger("claimfirst.telegram")

# A failed getUpdates or an unrecorded update is tried again after this long (bounded backoff).
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)


def bot_id_of(token: str) -> int:
    """The bot's numeric id: the part of its token before the colon (`123456:ABC…`)."""
    head = token.partition(":")[0]
    if not head.isdigit():
        raise ValueError("TELEGRAM_BOT_TOKEN is not a bot token (expected <digits>:<secret>)")
    return int(head)


class Poller:
    def __init__(self, bot: TelegramBot, offsets: PollOffsets, *, poll_seconds: int) -> None:
        self.bot, self.offsets, self.poll_seconds = bot, offsets, poll_seconds
        self.stopping = asyncio.Event()
        self.handled = 0

    def stop(self) -> None:
        log.info("stop asked: finishing the update in hand, then exiting")
        self.stopping.set()

    async def run(self) -> None:
        """Poll until `stop`; every update below the saved offset was handled."""
        offset = await self.offsets.load()
        failures = 0
        while not self.stopping.is_set():
            batch = await self._until_stopped(self._get_updates(offset))
            if batch is None:
                return
            if isinstance(batch, Exception):
                failures += 1
                log.warning("getUpdates failed (%s); trying again", batch)
                await self._pause(failures)
                continue
            failures = 0
            for raw in batch:
                if self.stopping.is_set():
                    return
                offset = await self._handle(raw)

    async def _get_updates(self, offset: int | None) -> list[dict[str, Any]] | Exception:
        payload: dict[str, Any] = {"timeout": self.poll_seconds, "allowed_updates": ["message"]}
        if offset is not None:
            payload["offset"] = offset
        try:
            result = await self.bot.api.call("getUpdates", payload)
        except TelegramApiError as exc:
            return exc
        return [item for item in result if isinstance(item, dict) and isinstance(item.get("update_id"), int)]

    async def _handle(self, raw: dict[str, Any]) -> int:
        """Take one update (retrying while the database is away), save the offset past it."""
        next_offset = int(raw["update_id"]) + 1
        try:
            update = Update.model_validate(raw)
        except ValidationError as exc:
            log.warning("update %s is not an Update (%s): skipped", raw["update_id"], exc.error_count())
            update = None
        failures = 0
        while update is not None:
            try:
                with deadline_scope(self.bot.runtime.settings.request_timeout_seconds):
                    await self.bot.take(update)
                break
            except StorageUnavailable as exc:
                failures += 1
                log.warning("update %s not recorded (%s); trying again", update.update_id, exc)
                if self.stopping.is_set():  # not handled: the offset stays, a restart takes it
                    return next_offset - 1
                await self._pause(failures)
        await self._save(next_offset)
        self.handled += 1
        # Its replies before the next update: a stop then lands between updates, and the
        # chat sees answers in the order it asked.
        # Shielded: a stop ends the wait, not the replies (`close` gives them their grace).
        await self._until_stopped(asyncio.shield(self.bot.drain()))
        return next_offset

    async def _save(self, next_offset: int) -> None:
        for attempt in range(1, len(RETRY_SECONDS) + 2):
            try:
                await self.offsets.save(next_offset)
                return
            except Exception as exc:  # the database: the dedupe still covers a redelivery
                if attempt > len(RETRY_SECONDS):
                    log.warning("offset %s not saved (%s): a restart may see those updates again", next_offset, exc)
                    return
                await asyncio.sleep(RETRY_SECONDS[attempt - 1])  # backoff between tries

    async def _until_stopped(self, work: Any) -> Any:
        """`work`'s result, or None once `stop` was called first (then `work` is cancelled)."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None

    async def _pause(self, failures: int) -> None:
        seconds = RETRY_SECONDS[min(failures, len(RETRY_SECONDS)) - 1]
        await self._until_stopped(asyncio.sleep(seconds))  # backoff, cut short by a stop
