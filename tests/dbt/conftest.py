"""One ``dbt build`` per engine per session: the committed package on DuckDB (a file in tmp) and
on PostgreSQL (a database of its own on the session's pgserver), over the fixture's videos and
a small synthetic history in one table (their users and ids kept apart: the rule is per user,
so the duplicates of the union are the union of the duplicates)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from audit.frames import normalise_videos
from audit.pipeline import AuditResult, run_audit
from audit.synthetic import synthetic_videos

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dbt" / "claimfirst_rule"
AS_OF = datetime(2025, 11, 1, tzinfo=UTC)
# The synthetic history's users and ids, moved clear of the fixture's.
USER_OFFSET, ID_OFFSET = 100_000_000_000, 1_000_000
DBT_TIMEOUT_SECONDS = 600

_PROJECT = """\
name: claimfirst_check
version: "1.0.0"
config-version: 2
profile: claimfirst_check
model-paths: ["models"]
flags:
  send_anonymous_usage_stats: false
  use_colors: false
"""

_MODELS = {
    "videos_all.sql": "SELECT * FROM {{ source('claimfirst', 'videos') }}\n",
    "videos_clean.sql": (
        "SELECT * FROM {{ source('claimfirst', 'videos') }}\n"
        "WHERE id NOT IN (SELECT video_id FROM {{ ref('duplicates') }})\n"
    ),
    # The generic test on any videos model: a warning (not an error) where duplicates are
    # planted, so the build goes on and the count of failures can be read back.
    "schema.yml": """\
version: 2
models:
  - name: videos_all
    data_tests:
      - claimfirst_rule.no_duplicate_generation:
          window_hours: 24
          config: {severity: warn}
  - name: videos_clean
    data_tests:
      - claimfirst_rule.no_duplicate_generation
""",
}


@dataclass
class History:
    name: str
    raw: pd.DataFrame  # as the sweep reads it
    table: pd.DataFrame  # the warehouse's rows: id, tg_user_id, prompt_key, status, created_at
    audit: AuditResult  # the sweep's answer


@dataclass
class Build:
    engine: str
    results: dict[str, dict]  # run_results.json by unique_id prefix
    tables: dict[str, pd.DataFrame]  # duplicates, race_windows, waste as read back


def _history(name: str, raw: pd.DataFrame, *, shift: bool) -> History:
    audit = run_audit(raw, as_of=AS_OF)
    table = normalise_videos(raw)[["id", "tg_user_id", "prompt_key", "status", "created_at"]].copy()
    if shift:
        table["id"] += ID_OFFSET
        table["tg_user_id"] += USER_OFFSET
    return History(name, raw, table, audit)


@pytest.fixture(scope="session")
def histories() -> list[History]:
    fixture = pd.read_csv(ROOT / "data" / "fixtures" / "videos.csv", dtype=str)
    synthetic = synthetic_videos(3000, seed=11, users=40, days=12)
    return [_history("fixture", fixture, shift=False), _history("synthetic", synthetic, shift=True)]


def _project(tmp: Path, profile: str) -> Path:
    project = tmp / "project"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(_PROJECT)
    (project / "profiles.yml").write_text(profile)
    for name, text in _MODELS.items():
        (project / "models" / name).write_text(text)
    # dbt loads every package under dbt_packages/: the committed package, as a user gets it.
    shutil.copytree(PACKAGE, project / "dbt_packages" / "claimfirst_rule")
    return project


def _dbt_build(project: Path, target: str) -> dict[str, dict]:
    dbt = Path(sys.executable).with_name("dbt")
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
    done = subprocess.run(
        [str(dbt), "build", "--project-dir", str(project), "--profiles-dir", str(project), "--target", target],
        cwd=project, env=env, capture_output=True, text=True, timeout=DBT_TIMEOUT_SECONDS,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    results = json.loads((project / "target" / "run_results.json").read_text())["results"]
    return {r["unique_id"]: r for r in results}


def _combined(histories: list[History]) -> pd.DataFrame:
    return pd.concat([h.table for h in histories], ignore_index=True)


@pytest.fixture(scope="session")
def duckdb_build(histories, tmp_path_factory) -> Build:
    tmp = tmp_path_factory.mktemp("dbt_duckdb")
    path = tmp / "warehouse.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.register("frame", _combined(histories))
        conn.execute("CREATE TABLE videos AS SELECT id, tg_user_id, prompt_key, status, "
                     "CAST(created_at AS TIMESTAMPTZ) AS created_at FROM frame")
    profile = (f"claimfirst_check:\n  target: duckdb\n  outputs:\n    duckdb:\n      type: duckdb\n"
               f"      path: '{path}'\n      threads: 1\n")
    results = _dbt_build(_project(tmp, profile), "duckdb")
    with duckdb.connect(str(path), read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        tables = {name: conn.execute(f"SELECT * FROM {name}").df() for name in ("duplicates", "race_windows", "waste")}
    return Build("duckdb", results, tables)


@pytest.fixture(scope="session")
def postgres_build(histories, pg_server_url, tmp_path_factory) -> Iterator[Build]:
    url = make_url(pg_server_url)
    name = f"dbt_{uuid.uuid4().hex[:12]}"
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conninfo = url.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    try:
        with psycopg.connect(conninfo) as conn:
            conn.execute("CREATE TABLE videos (id bigint PRIMARY KEY, tg_user_id bigint, prompt_key text, "
                         "status text, created_at timestamptz)")
            with conn.cursor().copy("COPY videos FROM STDIN") as copy:
                for row in _combined(histories).itertuples(index=False):
                    copy.write_row((int(row.id), int(row.tg_user_id), row.prompt_key, row.status,
                                    row.created_at.to_pydatetime()))
        host = url.query.get("host") or url.host or "127.0.0.1"
        profile = (
            "claimfirst_check:\n  target: postgres\n  outputs:\n    postgres:\n      type: postgres\n"
            f"      host: '{host}'\n      port: {url.port or 5432}\n      user: '{url.username}'\n"
            f"      password: '{url.password or ''}'\n      dbname: '{name}'\n      schema: public\n      threads: 1\n"
        )
        tmp = tmp_path_factory.mktemp("dbt_postgres")
        results = _dbt_build(_project(tmp, profile), "postgres")
        with psycopg.connect(conninfo) as conn:
            conn.execute("SET TimeZone = 'UTC'")
            tables = {}
            for table in ("duplicates", "race_windows", "waste"):
                cursor = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
                tables[table] = pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description])
        yield Build("postgres", results, tables)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=["duckdb", "postgres"])
def build(request) -> Build:
    return request.getfixturevalue(f"{request.param}_build")
