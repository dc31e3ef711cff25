"""`POST /telegram/webhook`: where Telegram delivers the bot's updates (only with TELEGRAM_BOT_TOKEN).

The route proves the caller first: `X-Telegram-Bot-Api-Secret-Token` must equal
TELEGRAM_WEBHOOK_SECRET (compared in constant time), or the answer is 401 before the body is
even read, and nothing is written. It is not behind the API keys: Telegram cannot send one.

Answers: 200 `{"ok": true}` for every delivery taken, including the ones deliberately ignored
(any other status makes Telegram deliver the update again, and again); 422 for a body that is
not an Update; 503 (with Retry-After) when the delivery cannot be recorded, so Telegram
redelivers it once the database is back.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import FastAPI, Header, Request
from pydantic import BaseModel

from service.errors import Unauthenticated
from service.http.errors import parsed_body
from service.http.schemas import error_responses
from service.telegram.api import Update
from service.telegram.bot import TelegramBot

__all__ = ["install_webhook", "WEBHOOK_PATH", "SECRET_HEADER"]

WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class WebhookOut(BaseModel):
    ok: bool


def install_webhook(app: FastAPI, bot: TelegramBot) -> None:
    settings = bot.runtime.settings
    assert settings.telegram_webhook_secret is not None  # the settings require it with a token
    secret = settings.telegram_webhook_secret.get_secret_value().encode()
    responses = error_responses(401, 413, 422, 503)
    responses[401] = {**responses[401], "description": f"{SECRET_HEADER} missing or wrong; nothing was read or written"}

    @app.post(WEBHOOK_PATH, response_model=WebhookOut,
              summary="Telegram Bot API webhook (body: an Update, core.telegram.org/bots/api#update)",
              responses=responses)
    async def telegram_webhook(
        request: Request,
        x_telegram_bot_api_secret_token: Annotated[str | None, Header(description="TELEGRAM_WEBHOOK_SECRET")] = None,
    ) -> WebhookOut:
        presented = (x_telegram_bot_api_secret_token or "").encode("latin-1")  # headers arrive as latin-1
        if not hmac.compare_digest(presented, secret):
            raise Unauthenticated(f"Unauthorized: {SECRET_HEADER} does not match TELEGRAM_WEBHOOK_SECRET.")
        update = parsed_body(Update, await request.body())
        await bot.take(update)
        return WebhookOut(ok=True)
