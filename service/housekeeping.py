"""Rows the service only needs for a while, deleted hourly by every process (the app's lifespan).

- Idempotency-Keys older than the duplicate window: `begin_key` already ignores them.
- Telegram deliveries (`telegram_updates`) older than `UPDATE_MEMORY`: Telegram keeps an
  update it could not deliver for at most 24 hours, so no redelivery can be older.

Without this both tables grow by a row per keyed request or per message, forever. A DELETE
that another process has already done deletes nothing, so running it in every process is
harmless; a database that does not answer is logged and tried again an hour later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from service.errors import ClaimfirstError

if TYPE_CHECKING:
    from service.runtime import Runtime

__all__ = ["Chore", "forget_old_rows", "forget_once", "FORGET_EVERY_SECONDS", "UPDATE_MEMORY", "FORGET_BATCH"]

log = logging.getLogger("claimfirst.housekeeping")

# Bounds each table to about its retention plus an hour of traffic.
FORGET_EVERY_SECONDS = 3600.0
# Twice Telegram's 24 hours: a margin for a clock or a queue, and still a bounded table.
UPDATE_MEMORY = timedelta(hours=48)
# Rows per DELETE of the Telegram deliveries: tens of milliseconds each, far inside the time
# bound, even on the first run over a table that grew unpruned (a year of a busy bot is
# millions of rows: one DELETE of all of them would outlast its bound and be cancelled, every
# hour, forever). The keys have always been pruned hourly, so one statement suffices there.
FORGET_BATCH = 10_000


@dataclass(frozen=True)
class Chore:
    what: str
    forget: Callable[[], Awaitable[int]]  # one statement: how many rows it deleted
    batch: int | None = None  # the statement's limit: repeated while it deletes that many


async def forget_old_rows(runtime: Runtime) -> None:
    """Every `FORGET_EVERY_SECONDS`, until cancelled."""
    window = timedelta(hours=runtime.settings.duplicate_window_hours)
    store = runtime.store
    chores = [
        Chore(f"Idempotency-Keys older than {window}", lambda: store.forget_keys(window)),
        Chore(f"Telegram deliveries older than {UPDATE_MEMORY}",
              lambda: store.forget_updates(UPDATE_MEMORY, FORGET_BATCH), FORGET_BATCH),
    ]
    while True:
        await forget_once(runtime, chores)
        await asyncio.sleep(FORGET_EVERY_SECONDS)  # the cadence, not synchronisation


async def forget_once(runtime: Runtime, chores: list[Chore]) -> None:
    for chore in chores:
        forgotten = 0
        try:
            while True:
                deleted = await runtime.bounded(chore.forget())
                forgotten += deleted
                if chore.batch is None or deleted < chore.batch:
                    break
        except ClaimfirstError as exc:  # the next chore, and the next hour, still run
            log.warning("forgetting %s failed after %d rows: %s", chore.what, forgotten, exc)
            continue
        if forgotten:
            log.info("forgot %d %s", forgotten, chore.what)
