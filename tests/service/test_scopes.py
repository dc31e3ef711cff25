"""Scoped keys: every endpoint against a key of every scope, through the real app (issue 18)."""

from __future__ import annotations

import json

import pytest

from tests.service.app_client import running_app

FULL = "0123456789abcdef-full"  # a bare key: every scope, every user
SCOPED = {scope: f"0123456789abcdef-{scope}" for scope in ("create", "read", "metrics", "admin")}
USER_42 = "0123456789abcdef-user42"  # create + read, for tg_user_id 42 only
KEYS = json.dumps([
    {"name": "full", "key": FULL},
    *({"name": scope, "key": key, "scopes": [scope]} for scope, key in SCOPED.items()),
    {"name": "user42", "key": USER_42, "scopes": ["create", "read"], "tg_user_ids": [42]},
])
# endpoint -> the scope it needs
ENDPOINTS = {("POST", "/create"): "create", ("GET", "/videos/1"): "read", ("GET", "/metrics"): "metrics",
             ("GET", "/stats"): "admin", ("GET", "/healthz"): None}
ALLOWED = {"POST": 202, "GET": 200}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _call(client, method: str, path: str, key: str | None, user: int = 7):
    headers = bearer(key) if key else {}
    if method == "POST":
        return client.post(path, json={"tg_user_id": user, "prompt": f"prompt from {key}"}, headers=headers)
    return client.get(path, headers=headers)


@pytest.mark.parametrize("scope", [*SCOPED, "full"])
def test_every_endpoint_answers_every_scope_as_documented(sqlite_url: str, scope: str) -> None:
    key = FULL if scope == "full" else SCOPED[scope]
    with running_app(sqlite_url, api_keys=KEYS, sim_seconds="60") as client:
        assert client.post("/create", json={"tg_user_id": 7, "prompt": "video one"}, headers=bearer(FULL)
                           ).status_code == 202
        for (method, path), needs in ENDPOINTS.items():
            answer = _call(client, method, path, key)
            if needs is None or scope in ("full", needs):
                assert answer.status_code == ALLOWED[method], (method, path, scope, answer.text)
            else:
                assert answer.status_code == 403, (method, path, scope, answer.text)
                assert answer.headers["content-type"] == "application/problem+json"
                problem = answer.json()
                assert (problem["type"], problem["status"]) == ("/problems/scope-missing", 403)
                assert repr(needs) in problem["detail"] and key not in answer.text
            if needs is not None:  # and without a key, or with an unknown one, 401 first
                assert _call(client, method, path, None).status_code == 401
                assert _call(client, method, path, key + "x").status_code == 401


def test_a_key_held_to_some_users_creates_and_reads_only_theirs(sqlite_url: str) -> None:
    with running_app(sqlite_url, api_keys=KEYS, sim_seconds="60") as client:
        other = client.post("/create", json={"tg_user_id": 7, "prompt": "someone else's"}, headers=bearer(FULL))
        mine = _call(client, "POST", "/create", USER_42, user=42)
        assert (other.status_code, mine.status_code) == (202, 202)
        theirs = other.json()["video_id"]
        assert client.get(f"/videos/{mine.json()['video_id']}", headers=bearer(USER_42)).status_code == 200
        # Another user's video looks like no video at all: ids are sequential, so a 403 would confirm it.
        hidden = client.get(f"/videos/{theirs}", headers=bearer(USER_42))
        unknown = client.get("/videos/999", headers=bearer(USER_42))
        assert (hidden.status_code, hidden.json()["detail"]) == (404, f"no video with id {theirs}")
        assert unknown.status_code == 404
        # It cannot claim for another user either (which would block that user's own /create).
        refused = _call(client, "POST", "/create", USER_42, user=7)
        assert refused.status_code == 403 and refused.json()["type"] == "/problems/user-not-allowed"
        assert client.get(f"/videos/{theirs}", headers=bearer(FULL)).status_code == 200


def test_the_schema_documents_403_where_a_configured_key_can_get_it(sqlite_url: str) -> None:
    with running_app(sqlite_url, api_keys=KEYS) as client:
        scoped = client.get("/openapi.json").json()["paths"]
    with running_app(sqlite_url, api_keys=FULL) as client:  # bare keys: never a 403
        bare = client.get("/openapi.json").json()["paths"]
    for path, method in [("/create", "post"), ("/videos/{video_id}", "get"), ("/metrics", "get"), ("/stats", "get")]:
        responses = scoped[path][method]["responses"]
        assert "application/problem+json" in responses["403"]["content"], path
        assert {"401", "403"} <= set(responses) and "403" not in bare[path][method]["responses"], path
    assert not {"401", "403"} & set(scoped["/healthz"]["get"]["responses"])
