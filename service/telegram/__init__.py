"""The Telegram bot: `/create <prompt>` sent to the bot claims exactly as `POST /create` does.

    api.py      pydantic models of the Bot API JSON this bot reads (Update, Message, User, Chat,
                MessageEntity) and of every Bot API answer; `command_of` reads a command
    client.py   `BotApi`: calls to {TELEGRAM_API_BASE}/bot<token>/<method> over one httpx client,
                transient failures retried, a 429's retry_after honoured, the token kept out of logs
    replies.py  every text the bot sends
    dialogue.py one /create in, the answers out: what every bot below says, and when
    bot.py      `TelegramBot`: one delivery in, a claim and the replies out
    aiogram.py  `claimfirst_router(cf)`: the same /create in your own aiogram 3 bot ([aiogram] extra)
    ptb.py      `claimfirst_handler(cf)`: the same in your python-telegram-bot bot ([ptb] extra)
    webhook.py  `POST /telegram/webhook`, enabled by TELEGRAM_BOT_TOKEN
    cli.py      `python -m service telegram set-webhook --url …`

May import `service.http` (its webhook is an HTTP route: same body parsing, same error
answers) and everything below it; never `service.app` or `service.__main__`.
"""

from service.telegram.api import Update, command_of
from service.telegram.bot import TelegramBot
from service.telegram.client import BotApi, RetryPolicy, TelegramApiError

__all__ = ["BotApi", "RetryPolicy", "TelegramApiError", "TelegramBot", "Update", "command_of"]
