"""aiogram and python-telegram-bot, each with the claimfirst handler and `ClaimFirst`, their
Bot API calls going to the stand-in on loopback: `feed` hands one update (Telegram's JSON) to
the framework as its own dispatch does (aiogram's `Dispatcher.feed_update`, PTB's
`Application.process_update`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from service import ClaimFirst, Settings
from tests.stand_ins.telegram import StandInTelegram

FRAMEWORKS = ["aiogram", "ptb"]

Feed = Callable[[dict[str, Any]], Awaitable[object]]


@dataclass
class BotUnderTest:
    cf: ClaimFirst
    feed: Feed

    async def settle(self) -> None:
        """Every generation ended and its outcome sent (the runner awaits the sends)."""
        await self.cf.runtime.runner.drain()


@asynccontextmanager
async def running_bot(framework: str, telegram: StandInTelegram, settings: Settings) -> AsyncIterator[BotUnderTest]:
    # ClaimFirst inside the bot's session: leaving it sends the last outcomes, which needs the session.
    maker = _aiogram if framework == "aiogram" else _ptb
    async with maker(telegram, settings) as running:
        yield running


@asynccontextmanager
async def _aiogram(telegram: StandInTelegram, settings: Settings) -> AsyncIterator[BotUnderTest]:
    from aiogram import Bot, Dispatcher
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.types import Update

    from service.telegram.aiogram import claimfirst_router

    session = AiohttpSession(api=TelegramAPIServer.from_base(telegram.base_url))
    async with Bot(telegram.token, session=session) as bot, ClaimFirst(settings) as cf:
        dispatcher = Dispatcher()
        dispatcher.include_router(claimfirst_router(cf))

        async def feed(update: dict[str, Any]) -> object:
            return await dispatcher.feed_update(bot, Update.model_validate(update, context={"bot": bot}))

        yield BotUnderTest(cf, feed)


@asynccontextmanager
async def _ptb(telegram: StandInTelegram, settings: Settings) -> AsyncIterator[BotUnderTest]:
    from telegram import Update
    from telegram.ext import Application

    from service.telegram.ptb import claimfirst_handler

    application = Application.builder().token(telegram.token).base_url(f"{telegram.base_url}/bot").build()
    async with application, ClaimFirst(settings) as cf:  # initialize (getMe) ... shutdown
        application.add_handler(claimfirst_handler(cf))

        async def feed(update: dict[str, Any]) -> object:
            return await application.process_update(Update.de_json(update, application.bot))

        yield BotUnderTest(cf, feed)
