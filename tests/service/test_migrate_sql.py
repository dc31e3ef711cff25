"""`python -m service migrate --sql` prints SQL an operator can run as-is: on an empty PostgreSQL
(CLAIMFIRST_DB_SCHEMA or not) the printed script, run as psql would run it, leaves the database at head."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from tests.service.test_migrate_cli import run


@pytest.mark.postgres
@pytest.mark.parametrize("schema", ["public", "claimfirst"])
def test_the_printed_sql_runs_as_is_on_an_empty_database_and_leaves_it_at_head(pg_url: str, schema: str) -> None:
    printed = run("migrate", "--sql", url=pg_url, CLAIMFIRST_DB_SCHEMA=schema)
    assert printed.returncode == 0, printed.stderr
    # As psql would run it: a plain session, no search_path given, the script in one go.
    conninfo = sa.make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(printed.stdout.encode())
        where = conn.execute("SELECT tablename, schemaname FROM pg_tables"
                             " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").fetchall()
    assert {"videos", "video_claims", "alembic_version"} <= {table for table, _ in where}
    assert {in_schema for _, in_schema in where} == {schema}
    checked = run("migrate", "--check", url=pg_url, CLAIMFIRST_DB_SCHEMA=schema)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "up to date" in checked.stdout

