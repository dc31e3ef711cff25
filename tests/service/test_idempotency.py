"""Idempotency-Key on POST /create through the real ASGI app, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from service import GenerationJob, GenerationResult
from service.http.idempotency import caller_scope, fingerprint, in_progress_timeout
from service.stores.models import IdempotencyKey
from service.stores.engine import make_engine
from tests.service.app_client import call, drain, running_app, runtime, video_count
from tests.stores import age

BODY = {"tg_user_id": 42, "prompt": "Fireworks over Sydney harbour"}
KEYS = ("0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210")


def create(client, key: str | bytes | None, body: dict = BODY, **headers: str):
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/create", json=body, headers=headers)


def key_rows(client) -> int:
    return video_count(client, IdempotencyKey)


def assert_problem(response, status: int, name: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == f"/problems/idempotency-key-{name}" and problem["status"] == status
    assert problem["title"] and problem["detail"]


def test_a_retry_gets_the_original_202_and_starts_nothing(db_url: str) -> None:
    with running_app(db_url, sim_seconds="60") as client:
        first = create(client, "retry-1")
        assert first.status_code == 202 and "idempotent-replayed" not in first.headers
        again = create(client, "retry-1", {"prompt": BODY["prompt"], "tg_user_id": 42})  # key order is no matter
        assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
        assert again.content == first.content
        assert create(client, '"retry-1"').content == first.content  # the draft's sf-string form
        assert runtime(client).runner.stats.submitted == 1 and video_count(client) == 1


def test_the_same_key_with_another_body_is_422_and_writes_nothing(db_url: str) -> None:
    with running_app(db_url, sim_seconds="60") as client:
        assert create(client, "k").status_code == 202
        assert_problem(create(client, "k", {**BODY, "prompt": "Fireworks over Sydney harbour!"}), 422, "reused")
        assert_problem(create(client, "k", {**BODY, "category": "travel"}), 422, "reused")
        assert video_count(client) == 1 and key_rows(client) == 1


@pytest.mark.parametrize("key", ["", '""', "x" * 256, "tab\there", "caf\u00e9".encode("latin-1")],
                         ids=["empty", "empty string item", "256 chars", "control", "non-ascii"])
def test_a_malformed_key_is_400_and_writes_nothing(sqlite_url: str, key) -> None:
    with running_app(sqlite_url, sim_seconds="60") as client:
        assert_problem(create(client, key), 400, "malformed")
        assert video_count(client) == 0 and key_rows(client) == 0


def test_a_key_of_255_characters_is_accepted(sqlite_url: str) -> None:
    with running_app(sqlite_url, sim_seconds="60") as client:
        assert create(client, "k" * 255).status_code == 202


def test_while_the_first_is_being_admitted_409_then_an_abandoned_one_is_taken_over(db_url: str) -> None:
    with running_app(db_url, sim_seconds="60") as client:
        settings = runtime(client).settings
        # A request with this key began and its process died before it answered.
        call(client, "begin_key", caller_scope(None, 42), "k", fingerprint({**BODY, "category": None}),
             timedelta(hours=settings.duplicate_window_hours), in_progress_timeout(settings.request_timeout_seconds))
        assert_problem(create(client, "k"), 409, "in-progress")
        assert video_count(client) == 0
        age(db_url, seconds=in_progress_timeout(settings.request_timeout_seconds).total_seconds() + 1)
        taken = create(client, "k")
        assert taken.status_code == 202 and "idempotent-replayed" not in taken.headers
        assert create(client, "k").content == taken.content


class GatedGenerator:
    """Generates once `release` is called (on the app's loop), so a test decides when."""

    cost_usd = Decimal("4.00")

    def __init__(self) -> None:
        self._gate: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        self._gate = self._gate or asyncio.Event()
        return self._gate

    async def generate(self, job: GenerationJob) -> GenerationResult:
        await self._event().wait()
        return GenerationResult(f"https://videos.example.invalid/{job.video_id}.mp4", None, self.cost_usd)

    async def release(self) -> None:
        self._event().set()


def test_a_409_duplicate_is_replayed_as_first_answered(db_url: str) -> None:
    generator = GatedGenerator()
    with running_app(db_url, generator=generator) as client:
        original = create(client, None)
        duplicate = create(client, "second-tap")
        assert duplicate.status_code == 409 and duplicate.json()["status"] == "generating"
        client.portal.call(generator.release)
        drain(client)  # the original is ready now; a fresh request would be told so
        assert create(client, None).json()["status"] == "ready"
        replayed = create(client, "second-tap")
        assert replayed.status_code == 409 and replayed.headers["idempotent-replayed"] == "true"
        assert replayed.content == duplicate.content and replayed.json()["type"] == "/problems/duplicate-video"
        # A replayed problem is still a problem: the media type is kept with the body.
        assert duplicate.headers["content-type"] == replayed.headers["content-type"] == "application/problem+json"
        assert replayed.json()["video_id"] == original.json()["video_id"]


def test_a_429_is_not_kept_so_the_retry_runs_again(sqlite_url: str) -> None:
    with running_app(sqlite_url, sim_seconds="60", max_concurrent_generations=1, max_queued_generations=0) as client:
        assert create(client, None).status_code == 202
        other = {**BODY, "prompt": "another video"}
        for _ in range(2):
            throttled = create(client, "busy", other)
            assert throttled.status_code == 429 and "idempotent-replayed" not in throttled.headers
            assert key_rows(client) == 0


def test_after_the_window_a_key_is_new_again(sqlite_url: str) -> None:
    with running_app(sqlite_url, sim_seconds="0") as client:
        assert create(client, "k").status_code == 202
        drain(client)
        age(sqlite_url, hours=24, seconds=1)
        fresh = create(client, "k", {**BODY, "prompt": "next day, another video"})
        assert fresh.status_code == 202 and "idempotent-replayed" not in fresh.headers


def test_a_key_is_the_callers_own(sqlite_url: str) -> None:
    with running_app(sqlite_url, sim_seconds="60", api_keys=",".join(KEYS)) as client:
        first = create(client, "shared", Authorization=f"Bearer {KEYS[0]}")
        assert first.status_code == 202
        # The other API key's "shared" is another key: the claim answers it (409), no replay.
        other = create(client, "shared", Authorization=f"Bearer {KEYS[1]}")
        assert other.status_code == 409 and "idempotent-replayed" not in other.headers
        assert create(client, "shared", Authorization=f"Bearer {KEYS[0]}").headers["idempotent-replayed"] == "true"
        engine = make_engine(runtime(client).settings.database_url)
        with engine.connect() as conn:
            scopes = conn.execute(select(IdempotencyKey.scope)).scalars().all()
        engine.dispose()
        assert len(set(scopes)) == 2 and not any(key[:8] in scope for scope in scopes for key in KEYS)


def test_anonymous_keys_are_per_telegram_user(sqlite_url: str) -> None:
    with running_app(sqlite_url, sim_seconds="60") as client:
        assert create(client, "same").status_code == 202
        other_user = create(client, "same", {**BODY, "tg_user_id": 43})
        assert other_user.status_code == 202 and "idempotent-replayed" not in other_user.headers
