"""`python -m service migrate --sql` prints SQL an operator can run as-is, and changes nothing
to print it: on an empty PostgreSQL (CLAIMFIRST_DB_SCHEMA or not) the printed script, run as psql
would run it, leaves the database at head; on a SQLite file that does not exist, no file appears."""

from __future__ import annotations

from pathlib import Path

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


def test_sql_on_a_sqlite_file_that_does_not_exist_creates_no_file(tmp_path: Path) -> None:
    database = tmp_path / "not-yet" / "claimfirst.db"
    printed = run("migrate", "--sql", url=f"sqlite:///{database}")
    assert printed.returncode == 0, printed.stderr
    assert "CREATE TABLE videos" in printed.stdout and "CREATE TABLE alembic_version" in printed.stdout
    assert list(tmp_path.iterdir()) == []  # neither the file nor its folder


def test_check_on_a_sqlite_file_that_does_not_exist_is_behind_and_creates_no_file(tmp_path: Path) -> None:
    checked = run("migrate", "--check", url=f"sqlite:///{tmp_path / 'claimfirst.db'}")
    assert checked.returncode == 1 and "revision none" in checked.stdout and str(tmp_path) in checked.stdout
    assert list(tmp_path.iterdir()) == []
