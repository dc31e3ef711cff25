"""Schema management through SQLAlchemy: the engine and the Alembic upgrade.

The service speaks SQL at run time through `service.stores` (one store per backend); this
module is for what runs once per start (migrations), and for tools and tests that read the
tables through SQLAlchemy (the audit, the test suite).

SQLite engines get WAL and BEGIN IMMEDIATE: every transaction takes the write lock up front.
Deferred transactions would deadlock (SQLITE_BUSY) when two readers both try to upgrade.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from service.errors import StorageUnavailable

__all__ = ["make_engine", "migrate", "downgrade", "current_revision", "head_revision", "upgrade_sql",
           "alembic_config", "translate_db_errors"]

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"

# SQLite: how long a writer waits for the lock before giving up. Generous, because under a
# burst of identical requests every one queues for the same lock and each holds it for one
# short transaction; 30 s of queueing means the machine is in trouble anyway.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str, *, pool_size: int = 10, prepare: bool = True) -> Engine:
    """An engine for `url`; SQLite files get their folder, WAL and BEGIN IMMEDIATE.
    `prepare=False`: no server-side prepared statements (Supabase's transaction pooler)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_size=pool_size, max_overflow=20)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    else:
        # pool_pre_ping: a connection the server dropped (restart, failover) is replaced
        # instead of failing the next request; a server that is really down still fails
        # fast and maps to 503. pool_timeout bounds how long a request queues for a connection.
        engine = create_engine(
            url, pool_size=pool_size, max_overflow=20, pool_pre_ping=True, pool_timeout=10,
            connect_args={"connect_timeout": 5, **({} if prepare else {"prepare_threshold": None})},
        )
    return engine


def _sqlite_on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # Hand transaction control to SQLAlchemy's "begin" event below (pysqlite's own implicit
    # BEGIN is deferred, which is what deadlocks).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config():  # type: ignore[no-untyped-def]
    """Alembic's config for the service's migrations (what `alembic.ini` at the root names too)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (safe to call from many processes)."""
    from alembic import command

    config = alembic_config()
    with translate_db_errors(), engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to `revision`. `base` is the switch-back: what the service created
    goes, Alembic's own version table too, and an adopted table is as it was before."""
    from alembic import command

    config = alembic_config()
    with translate_db_errors(), engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
        if revision == "base":
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {VERSION_TABLE}")


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's revision; None for a database the service never migrated (or took back
    to base). Read directly: Alembic's MigrationContext would log as it looks."""
    with translate_db_errors(), engine.connect() as conn:
        if not sa_inspect(conn).has_table(VERSION_TABLE):
            return None
        return conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()


def upgrade_sql(engine: Engine, *, schema: str = "public") -> str:
    """The SQL `migrate` would run from the database's current revision, for review (Alembic's
    offline mode). Reads the database (its revision, whether the bot's `videos` exists), writes
    nothing. Rows the adoption computes in Python (prompt keys) appear as a comment. `schema`
    (CLAIMFIRST_DB_SCHEMA) is created and put first on the search_path at the top, as `migrate`
    does through the connection, so the script runs as-is."""
    import io

    from alembic import command

    current = current_revision(engine)
    with translate_db_errors(), engine.connect() as conn:
        tables = set(sa_inspect(conn).get_table_names())
    videos_exist = current is None and "videos" in tables
    buffer = io.StringIO()
    config = alembic_config()
    config.output_buffer = buffer
    config.attributes["offline_url"] = engine.url
    config.attributes["schema"] = schema
    config.attributes["videos_exist"] = videos_exist
    config.attributes["adopted"] = videos_exist or "claimfirst_adoption" in tables
    start = f"{current}:" if current else ""
    command.upgrade(config, f"{start}head", sql=True)
    return buffer.getvalue()


@contextlib.contextmanager
def translate_db_errors() -> Iterator[None]:
    """Map "the database did not answer" to StorageUnavailable (HTTP 503)."""
    try:
        yield
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as exc:
        raise StorageUnavailable(f"database unavailable: {_first_line(exc)}") from exc
    except sa_exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise StorageUnavailable(f"database connection lost: {_first_line(exc)}") from exc
        raise


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]
