"""The HTTP API through the real ASGI app, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from datetime import timedelta

from service import ClaimRule, GenerationJob, GenerationResult, NewVideo
from tests.service.app_client import drain, running_app, runtime, video_count
from tests.stores import migrated_store

RULE = ClaimRule(window=timedelta(hours=24), lease=timedelta(seconds=30))

PROMPT = "Smart wallets as digital assistants..."


def create(client, prompt: str = PROMPT, user: int = 42, **extra):
    return client.post("/create", json={"tg_user_id": user, "prompt": prompt, **extra})


def test_create_then_duplicate_then_ready(db_url: str) -> None:
    with running_app(db_url, sim_seconds="60") as client:
        first = create(client, category="tech")
        assert first.status_code == 202, first.text
        body = first.json()
        assert body["status"] == "generating" and body["prompt_key"] == "smart wallets as digital assistants"

        again = create(client, "smart wallets as  DIGITAL assistants!")
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"
        dup = again.json()
        assert (dup["type"], dup["title"]) == ("/problems/duplicate-video", "Duplicate video")
        assert (dup["video_id"], dup["status"], dup["created_at"]) == (body["video_id"], "generating", body["created_at"])
        assert "Duplicate video" in dup["detail"] and "video_url" not in dup

        video = client.get(f"/videos/{body['video_id']}").json()
        assert (video["status"], video["category"], video["prompt"]) == ("generating", "tech", PROMPT)
        assert runtime(client).runner.stats.started == 1
        assert video_count(client) == 1


def test_ready_duplicate_answers_with_the_url(sqlite_url: str) -> None:
    with running_app(sqlite_url) as client:
        video_id = create(client).json()["video_id"]
        drain(client)
        assert client.get(f"/videos/{video_id}").json()["status"] == "ready"
        again = create(client)
        assert again.headers["content-type"] == "application/problem+json"
        dup = again.json()
        assert dup["type"] == "/problems/duplicate-video"
        assert dup["status"] == "ready" and dup["video_url"].endswith(f"/{video_id}.mp4")


def test_another_user_and_another_prompt_get_their_own_video(sqlite_url: str) -> None:
    with running_app(sqlite_url, sim_seconds="60") as client:
        assert create(client, user=1).status_code == 202
        assert create(client, user=2).status_code == 202
        assert create(client, PROMPT.replace("assistants", "accountants"), user=1).status_code == 202
        assert video_count(client) == 3


def test_simulated_failure_marks_failed_and_a_retry_is_accepted(db_url: str) -> None:
    with running_app(db_url, sim_failure_rate=1.0) as client:
        video_id = create(client).json()["video_id"]
        drain(client)
        failed = client.get(f"/videos/{video_id}").json()
        assert failed["status"] == "failed" and "simulated generation failure" in failed["error"]
        retry = create(client)
        assert retry.status_code == 202 and retry.json()["attempt"] == 2


class RaisingGenerator:
    """A provider client that blows up instead of returning `success: False`."""

    async def generate(self, job: GenerationJob) -> GenerationResult:
        raise ConnectionResetError("provider hung up")


class HangingGenerator:
    async def generate(self, job: GenerationJob) -> GenerationResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("generator", "settings", "error_part"),
    [
        (RaisingGenerator(), {}, "ConnectionResetError: provider hung up"),
        (HangingGenerator(), {"generation_timeout_seconds": 0.05}, "timed out after 0.05 s"),
    ],
    ids=["exception", "timeout"],
)
def test_generator_exception_or_timeout_marks_failed(sqlite_url, generator, settings, error_part) -> None:
    with running_app(sqlite_url, generator=generator, **settings) as client:
        video_id = create(client).json()["video_id"]
        drain(client)
        video = client.get(f"/videos/{video_id}").json()
        assert video["status"] == "failed" and error_part in video["error"]
        assert create(client).status_code == 202


def test_stopping_the_service_fails_running_and_queued_generations(sqlite_url: str) -> None:
    with running_app(sqlite_url, sim_seconds="600", max_concurrent_generations=1) as client:
        running = create(client, "first").json()["video_id"]
        queued = create(client, "second").json()["video_id"]
    with migrated_store(sqlite_url) as store:
        for video_id in (running, queued):
            video = store.get(video_id)
            assert video.status == "failed" and "service stopped" in video.error
        holder = store.holder(NewVideo(42, "first", "first"), RULE)
        assert holder.claim.status == "failed" and not holder.blocks  # the key is free for a retry


def test_get_unknown_video_is_404(sqlite_url: str) -> None:
    with running_app(sqlite_url) as client:
        response = client.get("/videos/999")
        assert response.status_code == 404 and "no video with id 999" in response.json()["detail"]
        assert client.get("/videos/abc").status_code == 422


def test_healthz_and_openapi(sqlite_url: str) -> None:
    with running_app(sqlite_url) as client:
        assert client.get("/healthz").json() == {"status": "ok", "database": "sqlite", "generator": "sim"}
        assert "/create" in client.get("/openapi.json").json()["paths"]
        assert client.get("/docs").status_code == 200


def test_sim_hints_are_ignored_unless_enabled(sqlite_url: str) -> None:
    with running_app(sqlite_url, sim_seconds="600") as client:
        video_id = client.post("/create", json={"tg_user_id": 1, "prompt": "p"},
                               headers={"X-Sim-Seconds": "0", "X-Sim-Fail": "1"}).json()["video_id"]
        assert client.get(f"/videos/{video_id}").json()["status"] == "generating"
    with running_app(sqlite_url, sim_seconds="600", sim_hints=True) as client:
        video_id = client.post("/create", json={"tg_user_id": 1, "prompt": "q"},
                               headers={"X-Sim-Seconds": "0", "X-Sim-Fail": "1"}).json()["video_id"]
        drain(client)
        assert client.get(f"/videos/{video_id}").json()["status"] == "failed"
        bad = client.post("/create", json={"tg_user_id": 1, "prompt": "r"}, headers={"X-Sim-Seconds": "soon"})
        assert bad.status_code == 422 and "X-Sim-Seconds" in bad.json()["detail"]


def test_a_direct_route_refuses_dependencies_it_would_not_run() -> None:
    """/create is a DirectRoute: FastAPI solves none of its dependencies. Listing one (say, the
    API-key guard) must fail at start-up, not leave the route silently unguarded."""
    from fastapi import Depends, Request
    from fastapi.responses import Response

    from service.http.routes import DirectRoute

    async def guard() -> None:
        raise AssertionError("never called")

    async def endpoint(http: Request) -> Response:
        return Response()

    with pytest.raises(TypeError, match="runs no dependencies"):
        DirectRoute("/create", endpoint, methods=["POST"], dependencies=[Depends(guard)])
    assert DirectRoute("/create", endpoint, methods=["POST"]).get_route_handler() is endpoint


def test_queued_generations_start_in_order_as_slots_free_and_never_exceed_the_limit(sqlite_url: str) -> None:
    """The backlog is a queue of entries behind `max_concurrent` slots: with two slots and
    seven admitted prompts, two generate while five wait; once the gate opens, each ends and
    hands its slot to the next in order, and all seven are recorded ready."""
    from decimal import Decimal

    class Gated:
        cost_usd = Decimal("4.00")

        def __init__(self) -> None:
            self.gate = asyncio.Event()
            self.started: list[int | None] = []
            self.running = self.most = 0

        async def generate(self, job: GenerationJob) -> GenerationResult:
            self.started.append(job.video_id)
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                await self.gate.wait()
            finally:
                self.running -= 1
            return GenerationResult(f"https://videos.example/{job.video_id}.mp4", None, self.cost_usd)

    generator = Gated()
    with running_app(sqlite_url, generator=generator, max_concurrent_generations=2,
                     max_queued_generations=5) as client:
        ids = [create(client, f"prompt {i}").json()["video_id"] for i in range(7)]
        assert create(client, "one too many").status_code == 429  # 2 running + 5 queued
        assert generator.started == ids[:2]
        assert client.get("/stats").json()["backlog"] == 7
        client.portal.call(generator.gate.set)
        drain(client)
        assert generator.started == ids and generator.most == 2
        assert [client.get(f"/videos/{i}").json()["status"] for i in ids] == ["ready"] * 7
        assert client.get("/stats").json()["backlog"] == 0
