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
        context.run_migrations()


def run_offline() -> None:
    """`migrate --sql`: print the statements instead of running them. Steps computed in Python
    from the rows (prompt keys, key digests) print as a comment saying so."""
    url = context.config.attributes.get("offline_url") or Settings().database_url
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True,
                      render_as_batch=str(url).startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if context.is_offline_mode():
    run_offline()
elif connection is not None:
    run_migrations(connection)
else:  # the alembic command line: use the service's own DATABASE_URL
    with create_engine(Settings().database_url).begin() as conn:
        run_migrations(conn)
