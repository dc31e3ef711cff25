"""Run the real ASGI app (lifespan, migrations, background runner) in-process for a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service import Generator, Runtime, Settings, create_app
from service.stores.models import Video
from service.stores.engine import make_engine


@contextmanager
def running_app(database_url: str, *, generator: Generator | None = None, **settings) -> Iterator[TestClient]:
    settings.setdefault("sim_seconds", "0")
    app = create_app(Settings(database_url=database_url, **settings), generator=generator)
    with TestClient(app) as client:
        yield client


def runtime(client: TestClient) -> Runtime:
    return client.app.state.runtime


def call(client: TestClient, method: str, *args: Any) -> Any:
    """Call one of the running app's store methods on the app's own event loop."""
    store = runtime(client).store

    async def run() -> Any:
        return await getattr(store, method)(*args)

    return client.portal.call(run)


def drain(client: TestClient) -> None:
    """Wait until every generation this app started has finished."""
    client.portal.call(runtime(client).runner.drain)


def video_count(client: TestClient, model: type = Video) -> int:
    """Rows in the app's `videos` table (or another model's)."""
    engine = make_engine(runtime(client).settings.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(model)).scalar_one()
    finally:
        engine.dispose()
