"""`python -m service telegram set-webhook --url https://HOST/telegram/webhook`: register the webhook.

Calls setWebhook with the URL, TELEGRAM_WEBHOOK_SECRET as `secret_token` (Telegram then sends it
in X-Telegram-Bot-Api-Secret-Token on every delivery) and `allowed_updates=["message"]` (the
only kind the bot acts on, so Telegram does not deliver the rest). Prints one line; any error
is one line `service: error: …` and exit 2. Neither the token nor the secret is ever printed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import NoReturn

from pydantic import ValidationError

from service.redact import redact_text
from service.settings import Settings, describe_settings_error  # the one place settings errors are worded
from service.telegram.client import BotApi, TelegramApiError
from service.telegram.webhook import WEBHOOK_PATH

__all__ = ["main"]


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, redact_text(f"service: error: {message}") + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m service telegram", description="Manage the Telegram bot's webhook.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    hook = actions.add_parser("set-webhook", help="register this service's webhook with Telegram")
    hook.add_argument("--url", required=True, help=f"the public HTTPS URL of {WEBHOOK_PATH}")
    hook.add_argument("--drop-pending-updates", action="store_true",
                      help="discard updates Telegram queued while no webhook answered")
    return parser


async def _set_webhook(settings: Settings, url: str, drop_pending: bool) -> None:
    assert settings.telegram_bot_token is not None and settings.telegram_webhook_secret is not None
    api = BotApi(settings.telegram_bot_token.get_secret_value(), settings.telegram_api_base)
    try:
        await api.call("setWebhook", {
            "url": url, "secret_token": settings.telegram_webhook_secret.get_secret_value(),
            "allowed_updates": ["message"], "drop_pending_updates": drop_pending,
        })
    finally:
        await api.aclose()


def main(argv: list[str]) -> int:
    # The client logs each retry; this command's output is its one line.
    logging.getLogger("claimfirst").addHandler(logging.NullHandler())
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.url.startswith("https://"):
        parser.error(f"--url must be an https:// URL (Telegram delivers only over HTTPS), got {args.url[:100]!r}")
    try:
        settings = Settings()
    except ValidationError as exc:
        parser.error(f"bad setting: {describe_settings_error(exc)}")
    if settings.telegram_bot_token is None:
        parser.error("TELEGRAM_BOT_TOKEN is not set (BotFather gives it: /newbot)")
    try:
        asyncio.run(_set_webhook(settings, args.url, args.drop_pending_updates))
    except TelegramApiError as exc:
        parser.error(str(exc))
    print(f"webhook set: Telegram delivers message updates to {args.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
