"""Storage: everything that speaks SQL. At run time one `Store` interface (`base`), one
implementation per backend; for schema changes SQLAlchemy and Alembic.

    base.py         the interface, the key digest, the stores' error wording
    postgres.py     psycopg 3 async pools, one statement per decision (production)
    sqlite.py       stdlib sqlite3 on dedicated threads (the embedded default)
    idempotency.py  the Idempotency-Key statements both stores run
    engine.py       SQLAlchemy engines and `migrate` (Alembic upgrade), for starts, tools, tests
    models.py       the schema as SQLAlchemy models; migrations/ the Alembic revisions

Schema changes are Alembic's (`service.stores.engine.migrate`, through SQLAlchemy); at run time
the stores speak SQL directly, because the claim is on every request's path and a driver
call is all it needs. May import the core (`service.claim`, `service.records`,
`service.errors`, `service.prompt_key`) and `service.settings`; nothing above.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.engine import make_url

from service.settings import Settings
from service.stores.base import Store, VideoRecord, key_digest

__all__ = ["Store", "VideoRecord", "key_digest", "open_store", "ReplayLatency"]


def open_store(settings: Settings) -> Store:
    """The store for `settings.database_url` (not yet opened: call `await store.open()`)."""
    url = make_url(settings.connect_url)
    timeout = settings.request_timeout_seconds
    if url.get_backend_name() == "sqlite":
        from service.stores.sqlite import SqliteStore

        store: Store = SqliteStore(url.database or ":memory:", timeout_seconds=timeout)
    else:
        from service.stores.postgres import PostgresStore

        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        store = PostgresStore(conninfo, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow,
                              timeout_seconds=timeout, prepare=settings.db_prepare)
    if settings.db_latency_ms:
        store = ReplayLatency(store, settings.db_latency_ms)  # type: ignore[assignment]
    return store


class ReplayLatency:
    """Incident replay only: each store call pays one round trip of extra latency, as each of
    the bot's Supabase calls was one HTTP request. The delay comes before the call, so it is
    never spent holding SQLite's write lock (which would queue every other request)."""

    _UNDELAYED = frozenset({"open", "close", "dialect"})

    def __init__(self, store: Store, latency_ms: float) -> None:
        self._store = store
        self._seconds = latency_ms / 1000

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if name in self._UNDELAYED or not callable(target):
            return target

        async def delayed(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(self._seconds)
            return await target(*args, **kwargs)

        return delayed
