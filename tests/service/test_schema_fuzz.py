"""schemathesis against a real `python -m service` on each backend: the OpenAPI schema is what
the service answers. Bounded: a few dozen generated cases per operation, every built-in check
(no 5xx, no undocumented status, bodies and headers as documented, invalid input refused),
but one: see `excluded_checks`.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from psycopg import sql
from sqlalchemy.engine import make_url

from service import Settings, create_app
from tests.conftest import _admin_conninfo
from tests.service.live import live_service

KEY = "fuzz-0123456789abcdef0123456789"
# Enough to hit each operation's edge cases (schemathesis also sends its own boundary and
# negative examples); small enough that both backends take seconds, not minutes.
MAX_EXAMPLES = 20


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzzed_service(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[str]:
    """One live service per backend for the whole module (a start costs seconds)."""
    log_dir = tmp_path_factory.mktemp("fuzz")
    if request.param == "sqlite":
        url = f"sqlite:///{log_dir / 'fuzz.db'}"
        with live_service(url, log_dir, api_keys=KEY, sim_seconds="0.05") as service:
            yield _serving_this_schema(service.url)
        return
    server = request.getfixturevalue("pg_server_url")
    name = f"fuzz_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_conninfo(server), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        with live_service(url, log_dir, api_keys=KEY, sim_seconds="0.05") as service:
            yield _serving_this_schema(service.url)
    finally:
        with psycopg.connect(_admin_conninfo(server), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _schema_of_the_app() -> dict:
    # Built in-process at collection (schemathesis.pytest.from_fixture does not work under
    # pytest 9); the engine is never connected. The test checks the live service serves it.
    url = f"sqlite:///{tempfile.gettempdir()}/claimfirst-schema-only.db"
    return create_app(Settings(database_url=url, api_keys=KEY)).openapi()


OPENAPI = _schema_of_the_app()
schema = schemathesis.openapi.from_dict(OPENAPI)


def _serving_this_schema(url: str) -> str:
    assert httpx.get(f"{url}/openapi.json", timeout=5).json() == OPENAPI
    return url


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_the_service_answers_what_its_schema_says(case, fuzzed_service: str) -> None:
    case.call_and_validate(
        base_url=fuzzed_service, headers={"Authorization": f"Bearer {KEY}"},
        # Asks every schema-valid body to be accepted; but "the prompt has text once
        # invisible characters and trailing punctuation are removed" and "no NUL" are rules
        # JSON Schema cannot state (the field descriptions do), and their 422 is documented.
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )
