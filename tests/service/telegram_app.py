"""The real app with the Telegram bot enabled, against the stand-in Bot API, for the bot's tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.stores.models import TelegramUpdate, Video
from service.stores.engine import make_engine
from service.telegram.webhook import SECRET_HEADER, WEBHOOK_PATH
from tests.service.app_client import drain, running_app, runtime
from tests.stand_ins.telegram import DEFAULT_SECRET, StandInTelegram


@contextmanager
def bot_app(database_url: str, telegram: StandInTelegram, **settings: Any) -> Iterator[TestClient]:
    with running_app(database_url, telegram_bot_token=telegram.token, telegram_webhook_secret=DEFAULT_SECRET,
                     telegram_api_base=telegram.base_url, **settings) as client:
        yield client


def deliver(client: TestClient, update: dict[str, Any], *, secret: str | None = DEFAULT_SECRET) -> Any:
    headers = {} if secret is None else {SECRET_HEADER: secret}
    return client.post(WEBHOOK_PATH, json=update, headers=headers)


def settle(client: TestClient) -> None:
    """Wait until every generation has finished and every reply it caused has been sent."""
    drain(client)
    client.portal.call(client.app.state.telegram.drain)


def rows(client: TestClient) -> tuple[list[dict[str, Any]], int]:
    """The videos (as mappings) and the number of Telegram deliveries recorded."""
    engine = make_engine(runtime(client).settings.database_url)
    try:
        with engine.connect() as conn:
            videos = [dict(r) for r in conn.execute(select(Video.__table__).order_by(Video.id)).mappings()]
            updates = conn.execute(select(func.count()).select_from(TelegramUpdate)).scalar_one()
            return videos, updates
    finally:
        engine.dispose()
