"""aiogram 3: `/create <prompt>` in your own bot claims exactly as the built-in bot does.

    from aiogram import Bot, Dispatcher
    from service import ClaimFirst
    from service.telegram.aiogram import claimfirst_router

    async with Bot(token) as bot, ClaimFirst.from_env() as cf:
        dispatcher = Dispatcher()
        dispatcher.include_router(claimfirst_router(cf))
        await dispatcher.start_polling(bot, close_bot_session=False)

The router answers `/create` (and `/create@yourbot`) from a person with the built-in bot's
words (`service.telegram.dialogue`): started, "you already asked", busy, unavailable, and
later the video or the failure. Those outcomes are sent while the generation's runner task
ends, so `ClaimFirst` must be left before the bot's session closes (the order above; polling
must not close it first). Needs the `[aiogram]` extra; nothing else in `service` imports aiogram.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

try:
    from aiogram import Bot, Router
    from aiogram.exceptions import AiogramError, TelegramBadRequest
    from aiogram.filters import Command, CommandObject
    from aiogram.types import Message, ReplyParameters
except ImportError as exc:  # the framework is an extra
    raise ImportError(f"service.telegram.aiogram needs aiogram: pip install 'claimfirst[aiogram]' ({exc})") from exc

from service.telegram.dialogue import Senders, take_create

if TYPE_CHECKING:
    from service.embed import ClaimFirst

__all__ = ["claimfirst_router"]

log = logging.getLogger("claimfirst.telegram")


def claimfirst_router(cf: ClaimFirst, *, command: str = "create", name: str = "claimfirst") -> Router:
    """A Router to include in your Dispatcher: `/<command> <prompt>` -> `cf.create`."""
    router = Router(name=name)

    @router.message(Command(command))
    async def create(message: Message, command: CommandObject, bot: Bot) -> None:
        sender = message.from_user
        if sender is None or sender.is_bot:
            return  # a channel post or another bot: not a person's request
        await take_create(cf, sender.id, (command.args or "").strip(), _senders(bot, message))

    return router


def _senders(bot: Bot, message: Message) -> Senders:
    chat_id = message.chat.id
    # In a group, the answer shows which /create it answers; if that message is gone by now,
    # the answer is still sent.
    quote = ReplyParameters(message_id=message.message_id, allow_sending_without_reply=True)

    async def reply(words: str) -> None:
        await _sent(bot.send_message(chat_id=chat_id, text=words, reply_parameters=quote), chat_id)

    async def text(words: str) -> None:
        await _sent(bot.send_message(chat_id=chat_id, text=words), chat_id)

    async def video(url: str, caption: str) -> bool:
        return await _sent(bot.send_video(chat_id=chat_id, video=url, caption=caption), chat_id, quiet_on_400=True)

    return Senders(reply=reply, text=text, video=video)


async def _sent(call: Awaitable[object], chat_id: int, *, quiet_on_400: bool = False) -> bool:
    """Await one Bot API call; False (logged) when it did not work. Never retried forever."""
    try:
        await call
        return True
    except AiogramError as exc:
        if not (quiet_on_400 and isinstance(exc, TelegramBadRequest)):
            log.warning("reply to chat %s lost: %s", chat_id, exc)
        return False
