"""The database goes away: `/create` answers 503 and starts nothing.

This test owns its PostgreSQL server (started with pgserver whatever TEST_DATABASE_URL says),
because it has to stop it.
"""

from __future__ import annotations

import tempfile

import pgserver

from service.settings import normalize_database_url
from tests.service.app_client import running_app, runtime


def test_database_stopped_gives_503_and_no_generation() -> None:
    with tempfile.TemporaryDirectory(prefix="claimfirst-pg-") as pgdata:
        stop_database_under_running_service(pgserver.get_server(pgdata, cleanup_mode="stop"))


def stop_database_under_running_service(server) -> None:  # type: ignore[no-untyped-def]
    url = normalize_database_url(server.get_uri())
    with running_app(url, sim_seconds="600") as client:
        assert client.post("/create", json={"tg_user_id": 1, "prompt": "before"}).status_code == 202
        server.cleanup()  # stop PostgreSQL under the running service

        response = client.post("/create", json={"tg_user_id": 1, "prompt": "after"})
        assert response.status_code == 503
        assert response.json()["detail"].startswith("database unavailable")
        assert runtime(client).runner.stats.submitted == 1  # only the request from before
        assert client.get("/healthz").status_code == 503
