"""Fixtures for the service tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.storage import SqlStore, make_engine, migrate


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    """A migrated store on SQLite and on PostgreSQL."""
    engine = make_engine(db_url)
    migrate(engine)
    yield SqlStore(engine)
    engine.dispose()
