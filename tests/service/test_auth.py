"""API keys: every endpoint but /healthz needs `Authorization: Bearer <key>`, through the real app."""

from __future__ import annotations

import logging

import pytest

from tests.service.app_client import running_app, video_count

KEYS = ("0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210")
BODY = {"tg_user_id": 1, "prompt": "a paid generation"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("0123456789abcdef0123456789abcdee"), bearer(KEYS[0][:-1]), bearer(KEYS[0] + "0"),
     {"Authorization": f"Basic {KEYS[0]}"}, {"Authorization": KEYS[0]}, {"X-Api-Key": KEYS[0]},
     {"Authorization": "Bearer \u00e9t\u00e9-0123456789abcdef".encode("latin-1")}],
    ids=["none", "one char off", "prefix", "longer", "basic scheme", "no scheme", "other header", "latin-1"],
)
def test_without_a_valid_key_every_endpoint_but_healthz_is_401(db_url: str, headers, caplog) -> None:
    with caplog.at_level(logging.DEBUG), running_app(db_url, api_keys=",".join(KEYS)) as client:
        answers = [client.post("/create", json=BODY, headers=headers), client.get("/videos/1", headers=headers),
                   client.get("/stats", headers=headers)]
        for response in answers:
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["detail"].startswith("Unauthorized")
            assert not any(key in response.text for key in KEYS)
        assert client.get("/healthz", headers=headers).status_code == 200
        assert video_count(client) == 0
    assert not any(key in caplog.text for key in KEYS)


def test_any_configured_key_is_accepted(sqlite_url: str, caplog) -> None:
    with caplog.at_level(logging.DEBUG), running_app(sqlite_url, api_keys=",".join(KEYS), sim_seconds="60") as client:
        created = client.post("/create", json=BODY, headers=bearer(KEYS[1]))
        assert created.status_code == 202, created.text
        video_id = created.json()["video_id"]
        assert client.get(f"/videos/{video_id}", headers=bearer(KEYS[0])).status_code == 200
        assert client.get("/stats", headers={"Authorization": f"bearer {KEYS[1]}"}).status_code == 200
    assert not any(key in caplog.text for key in KEYS)
    assert "anonymous" not in caplog.text


def test_without_a_key_only_size_is_checked_before_the_401(sqlite_url: str) -> None:
    # An oversized body is 413 for anyone (refused before it is read); any other body, even
    # one that is not JSON, is 401 before it is parsed.
    with running_app(sqlite_url, api_keys=KEYS[0]) as client:
        assert client.post("/create", json={"tg_user_id": 1, "prompt": "\x00"}).status_code == 401
        assert client.post("/create", json={"tg_user_id": 1, "prompt": "x" * 100_000}).status_code == 413
        assert client.post("/create", content="{broken", headers={"content-type": "application/json"}
                           ).status_code == 401
        assert client.post("/create", content="{broken", headers={**bearer(KEYS[0]), "content-type": "application/json"}
                           ).status_code == 422
        assert video_count(client) == 0


def test_without_keys_the_service_is_anonymous_and_says_so(sqlite_url: str, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="claimfirst"), running_app(sqlite_url, sim_seconds="60") as client:
        assert client.post("/create", json=BODY).status_code == 202
        assert client.get("/stats").status_code == 200
        schema = client.get("/openapi.json").json()
    assert "no CLAIMFIRST_API_KEYS: the API is anonymous" in caplog.text
    assert "securitySchemes" not in schema.get("components", {})
    assert "401" not in schema["paths"]["/create"]["post"]["responses"]


def test_the_schema_declares_the_bearer_scheme_on_guarded_routes_only(sqlite_url: str) -> None:
    with running_app(sqlite_url, api_keys=KEYS[0]) as client:
        schema = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200  # the documentation itself stays readable
    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer", "description": "one of CLAIMFIRST_API_KEYS"}
    for path, method in [("/create", "post"), ("/videos/{video_id}", "get"), ("/stats", "get")]:
        operation = schema["paths"][path][method]
        assert operation["security"] == [{"HTTPBearer": []}] and "401" in operation["responses"]
    assert "security" not in schema["paths"]["/healthz"]["get"]
