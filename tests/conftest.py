"""Shared fixtures: real databases only.

`pg_server_url` starts one throwaway PostgreSQL for the session with the `pgserver` wheel, or
uses `TEST_DATABASE_URL`. It never skips: a PostgreSQL test without a server fails.
`pg_url` gives each test a database of its own on that server; `sqlite_url` a file of its
own; `db_url` runs a test on both.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from service.settings import normalize_database_url


def _admin_conninfo(url: str) -> str:
    """A libpq conninfo for the server's maintenance database, from a SQLAlchemy URL."""
    parsed = make_url(url).set(drivername="postgresql", database="postgres")
    return parsed.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield normalize_database_url(external)
        return
    import pgserver

    # Not under pytest's tmp_path: pytest prunes old numbered temp dirs when another session
    # starts, which would pull the data directory from under a server still in use.
    with tempfile.TemporaryDirectory(prefix="claimfirst-pg-") as pgdata:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        try:
            yield normalize_database_url(server.get_uri())
        finally:
            server.cleanup()


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_conninfo(pg_server_url), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_admin_conninfo(pg_server_url), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'claimfirst.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test on the embedded default and on a real PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
