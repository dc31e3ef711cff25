"""`python -m service telegram set-webhook --url https://HOST/telegram/webhook`: register the webhook;
`python -m service telegram poll`: run the bot with long polling instead (`service.telegram.poll`).

Calls setWebhook with the URL, TELEGRAM_WEBHOOK_SECRET as `secret_token` (Telegram then sends it
in X-Telegram-Bot-Api-Secret-Token on every delivery) and `allowed_updates=["message"]` (the
only kind the bot acts on, so Telegram does not deliver the rest). Prints one line; any error
is one line `service: error: …` and exit 2. Neither the token nor the secret is ever printed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import signal
import sys
from typing import NoReturn

from pydantic import ValidationError

from service.http.auth import webhook_refusal
from service.redact import redact_text
from service.settings import Settings, describe_settings_error  # the one place settings errors are worded
from service.settings import DEFAULT_TELEGRAM_API_BASE
from service.errors import StorageUnavailable
from service.logs import log_config
from service.stores.engine import make_engine, migrate
from service.stores.poll_offsets import PollOffsets
from service.telegram.bot import TelegramBot
from service.telegram.client import BotApi, TelegramApiError
from service.telegram.poll import Poller, bot_id_of
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
    poll = actions.add_parser("poll", help="run the bot with long polling (getUpdates): no public address needed")
    poll.add_argument("--poll-seconds", type=int, default=25, choices=range(0, 26), metavar="0..25",
                      help="how long one getUpdates waits for updates (below the Bot API client's 30 s timeout)")
    return parser


async def _poll(settings: Settings, poll_seconds: int) -> None:
    # Imported here: the runtime (generator, runner, pools) is only needed by this command.
    from service.runtime import Runtime

    assert settings.telegram_bot_token is not None
    runtime = Runtime.build(settings)
    bot = TelegramBot.from_settings(runtime)
    offsets = PollOffsets(settings.connect_url, bot_id_of(settings.telegram_bot_token.get_secret_value()),
                          prepare=settings.db_prepare)
    poller = Poller(bot, offsets, poll_seconds=poll_seconds)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, poller.stop)
    await runtime.store.open()
    runtime.start()
    try:
        # getUpdates answers 409 Conflict while a webhook is set: polling replaces it.
        await bot.api.call("deleteWebhook", {"drop_pending_updates": False})
        print("polling: Telegram updates are taken with getUpdates (SIGTERM stops)", flush=True)
        await poller.run()
    finally:
        await runtime.stop()
        await bot.close()
        await runtime.store.close()
        offsets.close()


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
    if args.action == "set-webhook" and not args.url.startswith("https://"):
        parser.error(f"--url must be an https:// URL (Telegram delivers only over HTTPS), got {args.url[:100]!r}")
    try:
        settings = Settings()
    except ValidationError as exc:
        parser.error(f"bad setting: {describe_settings_error(exc)}")
    if settings.telegram_bot_token is None:
        parser.error("TELEGRAM_BOT_TOKEN is not set (BotFather gives it: /newbot)")
    if args.action == "poll":
        return _run_poll(parser, settings, args.poll_seconds)
    if refusal := webhook_refusal(settings):
        parser.error(refusal)
    try:
        asyncio.run(_set_webhook(settings, args.url, args.drop_pending_updates))
    except TelegramApiError as exc:
        parser.error(str(exc))
    print(f"webhook set: Telegram delivers message updates to {args.url}")
    return 0


def _run_poll(parser: argparse.ArgumentParser, settings: Settings, poll_seconds: int) -> int:
    try:
        bot_id_of(settings.telegram_bot_token.get_secret_value())  # type: ignore[union-attr]
    except ValueError as exc:
        parser.error(str(exc))
    if (settings.telegram_api_base == DEFAULT_TELEGRAM_API_BASE and settings.generator == "sim"
            and "generator" not in settings.model_fields_set):
        parser.error("refusing to answer Telegram users with the simulated generator (fake videos) by default: set"
                     " CLAIMFIRST_GENERATOR=replicate, or CLAIMFIRST_GENERATOR=sim to send fake ones on purpose")
    logging.config.dictConfig(log_config(settings, "info"))
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
    except (StorageUnavailable, RuntimeError) as exc:
        print(f"service: error: cannot prepare the database: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    try:
        asyncio.run(_poll(settings, poll_seconds))
    except TelegramApiError as exc:  # deleteWebhook refused: a wrong token, most often
        parser.error(str(exc))
    print("polling stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
