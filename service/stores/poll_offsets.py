"""Where Telegram long polling stands: the `offset` of the next getUpdates, per bot, in the database.

Its own small engine, not the claim's pools: one read at start and one short write per handled
update, from the one polling process (Telegram refuses a second getUpdates on the same bot
with 409 Conflict, so two pollers cannot both advance it).
"""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
from sqlalchemy import Engine, select, update

from service.stores.engine import make_engine
from service.stores.models import TelegramPollOffset

__all__ = ["PollOffsets"]


class PollOffsets:
    def __init__(self, database_url: str, bot_id: int, *, prepare: bool = True) -> None:
        # `database_url`: the settings' `connect_url`, so the offsets are read in the schema the
        # service's own tables live in (CLAIMFIRST_DB_SCHEMA), through any pooler (`prepare`).
        self.bot_id = bot_id
        self._engine: Engine = make_engine(database_url, pool_size=1, prepare=prepare)

    async def load(self) -> int | None:
        """The offset the next getUpdates sends, or None before the first update was handled."""
        return await anyio.to_thread.run_sync(self._load)

    async def save(self, next_offset: int) -> None:
        """Record that every update below `next_offset` was handled (never moves backwards)."""
        await anyio.to_thread.run_sync(self._save, next_offset)

    def close(self) -> None:
        self._engine.dispose()

    def _load(self) -> int | None:
        with self._engine.connect() as conn:
            return conn.execute(select(TelegramPollOffset.next_offset)
                                .where(TelegramPollOffset.bot_id == self.bot_id)).scalar_one_or_none()

    def _save(self, next_offset: int) -> None:
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            moved = conn.execute(update(TelegramPollOffset)
                                 .where(TelegramPollOffset.bot_id == self.bot_id,
                                        TelegramPollOffset.next_offset < next_offset)
                                 .values(next_offset=next_offset, updated_at=now)).rowcount
            if moved:
                return
            exists = conn.execute(select(TelegramPollOffset.bot_id)
                                  .where(TelegramPollOffset.bot_id == self.bot_id)).first()
            if exists is None:
                conn.execute(TelegramPollOffset.__table__.insert().values(
                    bot_id=self.bot_id, next_offset=next_offset, updated_at=now))
