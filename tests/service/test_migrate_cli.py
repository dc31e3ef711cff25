"""`python -m service migrate` as a deploy step (issue 19, part 3), on both backends.

`--sql` prints what the upgrade would run and changes nothing; `--check` answers 0 at head and 1
behind; `--downgrade base` is the switch-back; with `CLAIMFIRST_MIGRATE_ON_START=false` a database
not at head stops `python -m service` with exit 2 and one line, and one at head is served.
"""

from __future__ import annotations

import subprocess
import sys

import httpx
import sqlalchemy as sa

from service.stores.engine import head_revision, make_engine
from tests.service.live import ROOT, live_service
from tests.service.test_switch_over import bot_history, checksum, rows_of, table_schema


def run(*args: str, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "DATABASE_URL": url, **env})


def everything(engine: sa.Engine) -> tuple:
    """Every table's name, the bot table's catalog entry and its rows' checksum."""
    inspector = sa.inspect(engine)
    return sorted(inspector.get_table_names()), table_schema(engine), checksum(rows_of(engine))


def test_sql_prints_the_adoption_and_changes_nothing_then_check_and_migrate(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        bot_history(engine)
        before = everything(engine)

        printed = run("migrate", "--sql", url=db_url)
        assert printed.returncode == 0, printed.stderr
        assert "ALTER TABLE" not in printed.stdout.split("adopting the existing table videos")[0]
        assert "CREATE TABLE video_claims" in printed.stdout
        assert "CREATE TABLE idempotency_keys" in printed.stdout
        assert "CREATE TABLE videos" not in printed.stdout  # it is adopted, not created
        assert everything(engine) == before  # nothing written: no alembic_version, no column

        behind = run("migrate", "--check", url=db_url)
        assert behind.returncode == 1 and "behind" in behind.stdout

        applied = run("migrate", url=db_url)
        assert applied.returncode == 0 and f"to {head_revision()}" in applied.stdout, applied.stderr
        assert run("migrate", "--check", url=db_url).returncode == 0
        at_head = run("migrate", "--sql", url=db_url)
        assert at_head.returncode == 0 and "nothing to run" in at_head.stdout

        back = run("migrate", "--downgrade", "base", url=db_url)
        assert back.returncode == 0, back.stderr
        assert everything(engine) == before
    finally:
        engine.dispose()


def test_sql_on_an_empty_database_creates_nothing(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        printed = run("migrate", "--sql", url=sqlite_url)
        assert printed.returncode == 0 and "CREATE TABLE videos" in printed.stdout
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_bad_migrate_flags_are_one_line(sqlite_url: str) -> None:
    unknown = run("migrate", "--downgrade", "nope", url=sqlite_url)
    assert unknown.returncode == 2 and unknown.stderr.startswith("service: error: --downgrade: ")
    both = run("migrate", "--sql", "--check", url=sqlite_url)
    assert both.returncode == 2 and both.stderr.count("\n") == 1 and "not allowed with" in both.stderr


def test_without_migrate_on_start_a_database_behind_head_stops_the_service(sqlite_url: str, tmp_path) -> None:
    refused = run("--port", "1", url=sqlite_url, CLAIMFIRST_MIGRATE_ON_START="false")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "is at revision none, not" in refused.stderr and "python -m service migrate" in refused.stderr
    engine = make_engine(sqlite_url)
    try:
        assert sa.inspect(engine).get_table_names() == []  # it did not migrate either
    finally:
        engine.dispose()

    assert run("migrate", url=sqlite_url).returncode == 0
    with live_service(sqlite_url, tmp_path, migrate_on_start="false") as service:
        created = httpx.post(f"{service.url}/create", json={"tg_user_id": 42, "prompt": "A cat surfing"}, timeout=10)
        assert created.status_code == 202, created.text


def test_alembic_itself_runs_from_the_checkout(sqlite_url: str) -> None:
    """pyproject.toml's [tool.alembic] points the `alembic` command at the service's migrations."""
    result = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "DATABASE_URL": sqlite_url})
    assert result.returncode == 0, result.stderr
    assert run("migrate", "--check", url=sqlite_url).returncode == 0
