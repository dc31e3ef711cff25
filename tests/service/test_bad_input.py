"""Every kind of bad `/create` gets 422 with a readable message and writes nothing."""

from __future__ import annotations

import pytest

from tests.service.app_client import running_app, runtime, video_count

BAD_BODIES = {
    "empty prompt": ({"tg_user_id": 1, "prompt": ""}, "prompt is empty"),
    "whitespace prompt": ({"tg_user_id": 1, "prompt": " \t\n "}, "prompt is empty"),
    "punctuation-only prompt": ({"tg_user_id": 1, "prompt": " ...!? "}, "prompt is empty"),
    "prompt over 2000 chars": ({"tg_user_id": 1, "prompt": "x" * 2001}, "at most 2000 characters"),
    "missing prompt": ({"tg_user_id": 1}, "prompt: Field required"),
    "missing user": ({"prompt": "hi"}, "tg_user_id: Field required"),
    "user as string": ({"tg_user_id": "1", "prompt": "hi"}, "tg_user_id: Input should be a valid integer"),
    "user as float": ({"tg_user_id": 1.5, "prompt": "hi"}, "tg_user_id: Input should be a valid integer"),
    "user zero": ({"tg_user_id": 0, "prompt": "hi"}, "greater than 0"),
    "user negative": ({"tg_user_id": -5, "prompt": "hi"}, "greater than 0"),
    "user as bool": ({"tg_user_id": True, "prompt": "hi"}, "tg_user_id: Input should be a valid integer"),
    "prompt as number": ({"tg_user_id": 1, "prompt": 5}, "prompt: Input should be a valid string"),
    "category as list": ({"tg_user_id": 1, "prompt": "hi", "category": ["a"]}, "category: Input should be a valid string"),
    "unknown field": ({"tg_user_id": 1, "prompt": "hi", "promt": "typo"}, "promt: Extra inputs are not permitted"),
    "body is a list": ([{"tg_user_id": 1, "prompt": "hi"}], "valid dictionary"),
}


@pytest.mark.parametrize(("body", "message"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_json_body_is_422_and_writes_nothing(db_url: str, body, message: str) -> None:
    with running_app(db_url) as client:
        response = client.post("/create", json=body)
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert detail.startswith("Invalid request: ") and message in detail, detail
        assert video_count(client) == 0 and runtime(client).runner.stats.submitted == 0


@pytest.mark.parametrize(
    ("content", "headers"),
    [("{not json", {"content-type": "application/json"}), ("", {"content-type": "application/json"}),
     ("tg_user_id=1&prompt=hi", {"content-type": "application/x-www-form-urlencoded"})],
    ids=["broken json", "empty body", "form encoded"],
)
def test_non_json_is_422_and_writes_nothing(sqlite_url: str, content: str, headers) -> None:
    with running_app(sqlite_url) as client:
        response = client.post("/create", content=content, headers=headers)
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith("Invalid request: ")
        assert video_count(client) == 0


def test_prompt_of_exactly_2000_chars_is_accepted(sqlite_url: str) -> None:
    with running_app(sqlite_url, sim_seconds="60") as client:
        assert client.post("/create", json={"tg_user_id": 1, "prompt": "y" * 2000}).status_code == 202
