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
    "body is a list": ([{"tg_user_id": 1, "prompt": "hi"}], "body: Input should be an object"),
    "params as list": ({"tg_user_id": 1, "prompt": "hi", "params": [5]}, "params: Input should be an object"),
    "params as text": ({"tg_user_id": 1, "prompt": "hi", "params": "{}"}, "params: Input should be an object"),
    "params naming prompt": ({"tg_user_id": 1, "prompt": "hi", "params": {"prompt": "other"}},
                             "'prompt' is the request's own field"),
    "params name not an identifier": ({"tg_user_id": 1, "prompt": "hi", "params": {"a-b": 1}}, "is not 1-64 of"),
    "params too deep": ({"tg_user_id": 1, "prompt": "hi", "params": {"a": [[[[1]]]]}}, "nested deeper than 4"),
    "params over 4 KiB": ({"tg_user_id": 1, "prompt": "hi", "params": {"a": "x" * 4096}}, "over the limit of 4096"),
    "NUL in params": ({"tg_user_id": 1, "prompt": "hi", "params": {"a": ["\x00"]}}, "params.a[0]: contains a NUL"),
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


UNSTORABLE = {
    "NUL in prompt": ({"tg_user_id": 1, "prompt": "a\x00b"}, "prompt: contains a NUL character"),
    "NUL in category": ({"tg_user_id": 1, "prompt": "ab", "category": "x\x00"}, "category: contains a NUL character"),
    "zero-width spaces only": ({"tg_user_id": 1, "prompt": "\u200b\u200b"}, "prompt is empty"),
    "BOM only": ({"tg_user_id": 1, "prompt": "\ufeff"}, "prompt is empty"),
    "joiner and spaces only": ({"tg_user_id": 1, "prompt": " \u200d \u2060 "}, "prompt is empty"),
}


@pytest.mark.parametrize(("body", "message"), UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_text_no_database_stores_faithfully_is_422(db_url: str, body, message: str) -> None:
    with running_app(db_url) as client:
        response = client.post("/create", json=body)
        assert response.status_code == 422 and message in response.json()["detail"], response.text
        assert video_count(client) == 0


SURROGATES = {
    "in prompt": '{"tg_user_id": 1, "prompt": "\\ud800"}',
    "in category": '{"tg_user_id": 1, "prompt": "ok", "category": "\\udfff x"}',
    "as a field name": '{"tg_user_id": 1, "prompt": "ok", "\\ud800": 1}',
    "in a wrongly typed field": '{"tg_user_id": "\\ud800", "prompt": "ok"}',
    "in params": '{"tg_user_id": 1, "prompt": "ok", "params": {"a": {"\\udfff": 1}}}',
}


@pytest.mark.parametrize("content", SURROGATES.values(), ids=SURROGATES.keys())
def test_a_lone_surrogate_is_422_and_the_answer_still_encodes(db_url: str, content: str) -> None:
    with running_app(db_url) as client:
        response = client.post("/create", content=content, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith("Invalid request: ")
        assert video_count(client) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [(b'{"tg_user_id": 1, "prompt": "\xff\xfe"}', "not valid JSON"),
     (b'{"tg_user_id": ' + b"9" * 5000 + b', "prompt": "x"}', "not valid JSON"),
     (b'{"tg_user_id": NaN, "prompt": "x"}', "tg_user_id: Input should be a valid integer"),
     (b'{"tg_user_id": 1, "prompt": Infinity}', "prompt: Input should be a valid string"),
     (b'{"tg_user_id": 1, "prompt": "x", "params": {"a": NaN}}', "params.a: nan is not a JSON number"),
     (b'{"tg_user_id": 1, "prompt": "x", "params": {"a": [-Infinity]}}', "params.a[0]: -inf is not a JSON number"),
     (b'{"tg_user_id": 1, "prompt": "x", "params": {"a": 1e400}}', "params.a: inf is not a JSON number")],
    ids=["not UTF-8", "5000-digit number", "NaN", "Infinity", "NaN in params", "-Infinity in params",
         "a number past float in params"],
)
def test_json_python_cannot_read_or_json_cannot_write_back_is_422(sqlite_url: str, content: bytes, message: str) -> None:
    with running_app(sqlite_url) as client:
        response = client.post("/create", content=content, headers={"content-type": "application/json"})
        assert response.status_code == 422 and message in response.json()["detail"], response.text
        assert video_count(client) == 0


def test_a_422_echoes_only_the_start_of_a_long_input(sqlite_url: str) -> None:
    prompt = "x" * 60_000
    fields = {f"extra_{i}": "y" * 1000 for i in range(40)}
    with running_app(sqlite_url, max_body_bytes=200_000) as client:
        too_long = client.post("/create", json={"tg_user_id": 1, "prompt": prompt})
        extra = client.post("/create", json={"tg_user_id": 1, "prompt": "ok", **fields})
    assert too_long.status_code == 422 and len(too_long.content) < 1_000, len(too_long.content)
    (error,) = too_long.json()["errors"]
    assert error["input"].startswith("x" * 100) and error["input"].endswith("(60000 characters)")
    assert extra.status_code == 422 and len(extra.content) < 5_000, len(extra.content)
    assert extra.json()["detail"].endswith("and 30 more errors")


@pytest.mark.parametrize(("video_id", "status"), [(2**63, 422), (2**63 - 1, 404), (0, 422), (-1, 422), (10**30, 422)])
def test_video_ids_outside_the_column_range_are_4xx(db_url: str, video_id: int, status: int) -> None:
    with running_app(db_url) as client:
        response = client.get(f"/videos/{video_id}")
        assert response.status_code == status, response.text
        assert "detail" in response.json()


def _chunks(total: int):
    yield b'{"tg_user_id": 1, "prompt": "'
    for _ in range(total // 10_000):
        yield b"x" * 10_000
    yield b'"}'


def test_a_body_over_the_limit_is_413_and_writes_nothing(db_url: str) -> None:
    with running_app(db_url) as client:
        announced = client.post("/create", json={"tg_user_id": 1, "prompt": "x" * 10_000_000})
        chunked = client.post("/create", content=_chunks(200_000), headers={"content-type": "application/json"})
        for response in (announced, chunked):
            assert response.status_code == 413, response.text
            assert response.json() == {"detail": "Request body too large: at most 65536 bytes are accepted."}
        assert video_count(client) == 0
        assert client.post("/create", content=_chunks(30_000), headers={"content-type": "application/json"}
                           ).status_code == 422  # under the limit it is read, and 2000 chars is the next rule


def test_the_body_limit_is_a_setting(sqlite_url: str) -> None:
    with running_app(sqlite_url, max_body_bytes=2048, sim_seconds="60") as client:
        assert client.post("/create", json={"tg_user_id": 1, "prompt": "y" * 2000}).status_code == 202
        response = client.post("/create", json={"tg_user_id": 1, "prompt": "é" * 2000})  # over 4 KB however it is encoded
        assert response.status_code == 413 and "at most 2048 bytes" in response.json()["detail"]


def test_invisible_characters_do_not_dodge_the_duplicate_check(db_url: str) -> None:
    with running_app(db_url, sim_seconds="60") as client:
        first = client.post("/create", json={"tg_user_id": 1, "prompt": "hello world"})
        again = client.post("/create", json={"tg_user_id": 1, "prompt": "hello\u200bworld"})
        assert (first.status_code, again.status_code) == (202, 409)
        assert again.json()["video_id"] == first.json()["video_id"]
