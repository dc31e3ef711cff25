"""Alembic environment: runs on the connection `service.stores.engine.migrate` hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from service.stores.models import Base
from service.settings import Settings

# Any fixed number: the advisory lock key that makes concurrent service starts on one
# PostgreSQL run migrations one after the other instead of racing to create the tables.
MIGRATION_LOCK_KEY = 727_274_001


def run_migrations(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"))
            # CLAIMFIRST_DB_SCHEMA: the connection's search_path names it first; until it
            # exists, PostgreSQL skips it and the tables would land in public.
            schema = _own_schema(connection)
            if schema != "public":
                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.run_migrations()


def _own_schema(connection) -> str:  # type: ignore[no-untyped-def]
    path = connection.execute(text("SHOW search_path")).scalar_one()
    first = path.split(",")[0].strip().strip('"')
    return "public" if first in ("", "$user", "public") else first


def run_offline() -> None:
    """`migrate --sql`: print the statements instead of running them. Steps computed in Python
    from the rows (prompt keys, key digests) print as a comment saying so."""
    url = context.config.attributes.get("offline_url") or Settings().database_url
    schema = context.config.attributes.get("schema") or Settings().db_schema
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True,
                      render_as_batch=str(url).startswith("sqlite"))
    with context.begin_transaction():
        if schema != "public" and not str(url).startswith("sqlite"):
            # What `run_migrations` gets from the connection's search_path, written out: the
            # script is run as-is (psql, Supabase's SQL editor), in a session that names no schema.
            context.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            context.execute(f'SET search_path TO "{schema}", public')
        context.run_migrations()


connection = context.config.attributes.get("connection")
if context.is_offline_mode():
    run_offline()
elif connection is not None:
    run_migrations(connection)
else:  # the alembic command line: use the service's own DATABASE_URL
    with create_engine(Settings().connect_url).begin() as conn:
        run_migrations(conn)
