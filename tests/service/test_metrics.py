"""GET /metrics through the real ASGI app: the values move as requests and generations end."""

from __future__ import annotations

import sqlite3

from sqlalchemy.engine import make_url

from tests.service.app_client import drain, running_app, runtime
from tests.service.metrics_text import creates, value
from tests.service.test_idempotency import GatedGenerator
from tests.stores import age

BODY = {"tg_user_id": 7, "prompt": "A lighthouse in a storm"}
KEY = "0123456789abcdef0123456789abcdef"


def scrape(client, **headers: str) -> str:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return response.text


def test_create_outcomes_are_counted_and_timed(db_url: str) -> None:
    with running_app(db_url, sim_seconds="60", max_concurrent_generations=1, max_queued_generations=0) as client:
        assert set(creates(scrape(client)).values()) == {0.0}
        assert client.post("/create", json=BODY).status_code == 202
        assert client.post("/create", json=BODY).status_code == 409
        assert client.post("/create", json={**BODY, "tg_user_id": 0}).status_code == 422
        assert client.post("/create", json=BODY, headers={"Idempotency-Key": ""}).status_code == 400
        assert client.post("/create", json={**BODY, "prompt": "another"}).status_code == 429
        text = scrape(client)
        assert creates(text) == {"accepted": 1, "duplicate": 1, "rejected": 2, "unavailable": 0, "throttled": 1,
                                 "client_gone": 0}
        assert value(text, "claimfirst_create_seconds_count") == 5
        assert value(text, "claimfirst_create_seconds_bucket", le="+Inf") == 5
        assert value(text, "claimfirst_in_flight") == 1


def test_a_replayed_answer_counts_as_a_duplicate(sqlite_url: str) -> None:
    with running_app(sqlite_url, sim_seconds="60") as client:
        for _ in range(3):
            assert client.post("/create", json=BODY, headers={"Idempotency-Key": "k"}).status_code == 202
        assert creates(scrape(client))["accepted"] == 1 and creates(scrape(client))["duplicate"] == 2


def test_a_database_that_does_not_answer_counts_as_unavailable(sqlite_url: str) -> None:
    with running_app(sqlite_url, request_timeout_seconds=0.2) as client:
        blocker = sqlite3.connect(make_url(sqlite_url).database, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds SQLite's write lock
        try:
            assert client.post("/create", json=BODY).status_code == 503
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert creates(scrape(client))["unavailable"] == 1


def test_ended_generations_are_counted_with_their_cost(db_url: str) -> None:
    with running_app(db_url, sim_seconds="0", cost_per_video_usd=0.5) as client:
        for user in (1, 2):
            assert client.post("/create", json={**BODY, "tg_user_id": user}).status_code == 202
        drain(client)
        text = scrape(client)
        assert value(text, "claimfirst_generations_total", outcome="ready") == 2
        assert value(text, "claimfirst_generation_cost_usd_total") == 1.0
        assert value(text, "claimfirst_in_flight") == 0
        assert value(text, "claimfirst_lease_takeovers_total") == 0


def test_failed_then_taken_over_counts_a_failure_and_a_takeover(sqlite_url: str) -> None:
    with running_app(sqlite_url, sim_seconds="0", sim_failure_rate=1) as client:
        assert client.post("/create", json=BODY).status_code == 202
        drain(client)
        again = client.post("/create", json=BODY)
        assert again.status_code == 202 and again.json()["attempt"] == 2
        drain(client)
        text = scrape(client)
        assert value(text, "claimfirst_generations_total", outcome="failed") == 2
        assert value(text, "claimfirst_lease_takeovers_total") == 1
        assert value(text, "claimfirst_generation_cost_usd_total") == 0  # a failed simulation charges nothing


def test_a_generation_whose_lease_is_taken_over_is_superseded(db_url: str) -> None:
    generator = GatedGenerator()
    with running_app(db_url, generator=generator) as client:
        assert client.post("/create", json=BODY).status_code == 202
        age(db_url, seconds=31)  # the lease ran out: its worker looks dead
        assert client.post("/create", json=BODY).json()["attempt"] == 2
        client.portal.call(runtime(client).runner.renew_once)  # the first learns it lost the claim
        client.portal.call(generator.release)
        drain(client)
        text = scrape(client)
        assert value(text, "claimfirst_generations_total", outcome="superseded") == 1
        assert value(text, "claimfirst_generations_total", outcome="ready") == 1
        assert value(text, "claimfirst_lease_takeovers_total") == 1
        assert value(text, "claimfirst_generation_cost_usd_total") == 8  # both were paid for


def test_metrics_need_a_key_when_keys_are_set(sqlite_url: str) -> None:
    with running_app(sqlite_url, api_keys=KEY) as client:
        assert client.get("/metrics").status_code == 401
        assert client.post("/create", json=BODY).status_code == 401
        assert creates(scrape(client, Authorization=f"Bearer {KEY}"))["rejected"] == 1
