"""Test access to the run-time stores: a blocking facade, and time moved by ageing the rows.

The stores are async and read every time from the database's clock. Tests drive them through
`SyncStore` (one event loop per store, kept for its life, since a psycopg pool belongs to the
loop that opened it) and make time pass with `age`, which moves every stored time back: the
same as the clock moving forward, without sleeping and without a clock of the tests' own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from service import Settings
from service.stores.models import IdempotencyKey, TelegramUpdate, Video, VideoCallback, VideoClaim
from service.stores.engine import make_engine, migrate
from service.stores import open_store


class SyncStore:
    def __init__(self, store: Any) -> None:
        self._store = store
        self._runner = asyncio.Runner()
        self._runner.run(store.open())

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if not callable(target):
            return target
        return lambda *args, **kwargs: self._runner.run(target(*args, **kwargs))

    def close(self) -> None:
        self._runner.run(self._store.close())
        self._runner.close()


@contextmanager
def migrated_store(database_url: str, **settings: Any) -> Iterator[SyncStore]:
    engine = make_engine(database_url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    store = SyncStore(open_store(Settings(database_url=database_url, **settings)))
    try:
        yield store
    finally:
        store.close()


_TIMES = {Video: ("created_at", "updated_at"), VideoClaim: ("claimed_at", "lease_expires_at"),
          IdempotencyKey: ("created_at",), TelegramUpdate: ("received_at",),
          VideoCallback: ("occurred_at", "next_attempt_at", "lease_expires_at", "delivered_at")}


def age(database_url: str, **delta: float) -> None:
    """Move every stored time back by `delta`: for the store, that much time has passed."""
    shift = timedelta(**delta)
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            for model, columns in _TIMES.items():
                table = model.__table__
                keys = [c for c in table.primary_key.columns]
                for row in conn.execute(sa.select(*keys, *(table.c[name] for name in columns))).mappings():
                    values = {name: row[name] - shift for name in columns if row[name] is not None}
                    if values:
                        conn.execute(sa.update(table).where(*(k == row[k.name] for k in keys)).values(**values))
    finally:
        engine.dispose()
