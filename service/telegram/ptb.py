"""python-telegram-bot (v21, v22): `/create <prompt>` in your own bot claims exactly as the
built-in bot does.

    from contextlib import AsyncExitStack
    from telegram.ext import Application
    from service import ClaimFirst
    from service.telegram.ptb import claimfirst_handler

    stack = AsyncExitStack()

    async def start(app: Application) -> None:
        app.add_handler(claimfirst_handler(await stack.enter_async_context(ClaimFirst.from_env())))

    async def stop(app: Application) -> None:
        await stack.aclose()

    Application.builder().token(token).post_init(start).post_stop(stop).build().run_polling()

The handler answers `/create` (and `/create@yourbot`) from a person with the built-in bot's
words (`service.telegram.dialogue`): started, "you already asked", busy, unavailable, and
later the video or the failure. Those outcomes are sent while the generation's runner task
ends, so `ClaimFirst` is left in `post_stop`, while the bot can still send. Edited messages
are not requests. Needs the `[ptb]` extra; nothing else in `service` imports telegram.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    from telegram import Bot, Message, ReplyParameters, Update
    from telegram.error import BadRequest, TelegramError
    from telegram.ext import CommandHandler, ContextTypes, filters
except ImportError as exc:  # the framework is an extra
    raise ImportError(f"service.telegram.ptb needs python-telegram-bot: pip install 'claimfirst[ptb]' ({exc})") from exc

from service.telegram.dialogue import Senders, bot_senders, prompt_of, take_create

if TYPE_CHECKING:
    from service.embed import ClaimFirst

__all__ = ["claimfirst_handler"]


def claimfirst_handler(cf: ClaimFirst, *, command: str = "create") -> CommandHandler[Any, None]:
    """A handler for `Application.add_handler`: `/<command> <prompt>` -> `cf.create`."""

    async def create(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, sender = update.message, update.effective_user
        if message is None or sender is None or sender.is_bot:
            return
        await take_create(cf, sender.id, prompt_of(message.text), _senders(context.bot, message))

    # UpdateType.MESSAGE: CommandHandler also takes edited messages by default.
    return CommandHandler(command, create, filters=filters.UpdateType.MESSAGE)


def _senders(bot: Bot, message: Message) -> Senders:
    # In a group, the answer shows which /create it answers; if that message is gone by now,
    # the answer is still sent.
    quote = ReplyParameters(message_id=message.message_id, allow_sending_without_reply=True)
    return bot_senders(bot, message.chat.id, quote, errors=TelegramError, refused_url=BadRequest)
