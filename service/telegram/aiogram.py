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

from typing import TYPE_CHECKING

try:
    from aiogram import Bot, Router
    from aiogram.exceptions import AiogramError, TelegramBadRequest
    from aiogram.filters import Command, CommandObject
    from aiogram.types import Message, ReplyParameters
except ImportError as exc:  # the framework is an extra
    raise ImportError(f"service.telegram.aiogram needs aiogram: pip install 'claimfirst[aiogram]' ({exc})") from exc

from service.telegram.dialogue import Senders, bot_senders, take_create

if TYPE_CHECKING:
    from service.embed import ClaimFirst

__all__ = ["claimfirst_router"]


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
    # In a group, the answer shows which /create it answers; if that message is gone by now,
    # the answer is still sent.
    quote = ReplyParameters(message_id=message.message_id, allow_sending_without_reply=True)
    return bot_senders(bot, message.chat.id, quote, errors=AiogramError, refused_url=TelegramBadRequest)
