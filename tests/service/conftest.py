"""Fixtures for the service tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stores import SyncStore, migrated_store


@pytest.fixture
def store(db_url: str) -> Iterator[SyncStore]:
    """A migrated store on SQLite and on PostgreSQL (its URL is `store.url`)."""
    with migrated_store(db_url) as opened:
        opened.url = db_url
        yield opened
