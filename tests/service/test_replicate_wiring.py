"""CLAIMFIRST_GENERATOR=replicate end to end (the real app, real databases, the stand-in provider),
its settings, and the client against the very bodies recorded from api.replicate.com."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service import GenerationError, GenerationJob, Settings, SimulatedGenerator, create_app, make_generator
from service.generation.replicate import ReplicateGenerator, RetryPolicy

from tests.service.app_client import drain
from tests.service.live import ROOT, live_service, wait_until
from tests.stand_ins.replicate import DEFAULT_MODEL, DEFAULT_TOKEN, RECORDINGS, Fate, StandInReplicate

PROMPT = "Smart wallets as digital assistants..."


@contextmanager
def app_on_replicate(database_url: str, replicate: StandInReplicate) -> Iterator[TestClient]:
    """The real app, its generator chosen by the settings (as `python -m service` does)."""
    settings = Settings(database_url=database_url, generator="replicate", replicate_model=replicate.model,
                        replicate_api_token=replicate.token, replicate_base_url=replicate.base_url,
                        replicate_poll_seconds=0.01)
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_app_with_the_replicate_generator_makes_a_ready_video_with_the_providers_url(db_url: str) -> None:
    with StandInReplicate() as replicate, app_on_replicate(db_url, replicate) as client:
        replicate.script(Fate(polls=2))
        created = client.post("/create", json={"tg_user_id": 42, "prompt": PROMPT})
        assert created.status_code == 202, created.text
        drain(client)
        video = client.get(f"/videos/{created.json()['video_id']}").json()
        (job_id,) = replicate.created_ids
        assert video["status"] == "ready" and video["video_url"] == replicate.prediction(job_id)["output"]
        assert replicate.creations == 1 and replicate.prediction(job_id)["input"] == {"prompt": PROMPT}
        assert client.post("/create", json={"tg_user_id": 42, "prompt": PROMPT}).status_code == 409
        assert replicate.creations == 1


def test_a_provider_failure_is_the_videos_error(sqlite_url: str) -> None:
    with StandInReplicate() as replicate, app_on_replicate(sqlite_url, replicate) as client:
        replicate.script(Fate(polls=0, status="failed", error="The model timed out"))
        video_id = client.post("/create", json={"tg_user_id": 42, "prompt": PROMPT}).json()["video_id"]
        drain(client)
        video = client.get(f"/videos/{video_id}").json()
        assert video["status"] == "failed" and "The model timed out" in video["error"]


def test_the_service_as_a_process_generates_through_the_stand_in(sqlite_url: str, tmp_path) -> None:
    # What the crash test builds on: the stand-in lives in the test, the service in a child.
    with StandInReplicate() as replicate, live_service(
        sqlite_url, tmp_path, generator="replicate", replicate_model=replicate.model,
        replicate_api_token=replicate.token, replicate_base_url=replicate.base_url, replicate_poll_seconds=0.05,
    ) as service:
        replicate.script(Fate(polls=None))
        video_id = httpx.post(f"{service.url}/create", json={"tg_user_id": 42, "prompt": PROMPT}).json()["video_id"]
        job_id = wait_until(lambda: replicate.created_ids and replicate.created_ids[0], what="a prediction")
        wait_until(lambda: replicate.prediction(job_id)["status"] == "processing", what="a poll")
        replicate.release(job_id)

        def ready() -> dict | None:
            video = httpx.get(f"{service.url}/videos/{video_id}").json()
            return video if video["status"] == "ready" else None

        video = wait_until(ready, what="the video ready")
        assert video["video_url"] == replicate.prediction(job_id)["output"] and replicate.creations == 1


# -- settings ----------------------------------------------------------------------------


def test_make_generator_follows_the_setting() -> None:
    assert isinstance(make_generator(Settings(database_url="sqlite://")), SimulatedGenerator)
    chosen = make_generator(Settings(database_url="sqlite://", generator="replicate", replicate_model="minimax/video-01",
                                     replicate_api_token="r8_x", cost_per_video_usd=2.5))
    assert isinstance(chosen, ReplicateGenerator) and chosen.model == "minimax/video-01" and str(chosen.cost_usd) == "2.50"


def test_replicate_settings_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("CLAIMFIRST_GENERATOR", "replicate")
    monkeypatch.setenv("CLAIMFIRST_REPLICATE_MODEL", "minimax/video-01")
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_from_env")
    monkeypatch.setenv("CLAIMFIRST_REPLICATE_BASE_URL", "http://127.0.0.1:9/v1/")
    monkeypatch.setenv("CLAIMFIRST_REPLICATE_POLL_SECONDS", "0.5")
    s = Settings()
    assert (s.generator, s.replicate_model, s.replicate_base_url, s.replicate_poll_seconds) == (
        "replicate", "minimax/video-01", "http://127.0.0.1:9/v1", 0.5)
    assert s.replicate_api_token.get_secret_value() == "r8_from_env" and "r8_from_env" not in repr(s)


@pytest.mark.parametrize(
    ("env", "named"),
    [({"REPLICATE_API_TOKEN": "r8_secret"}, "CLAIMFIRST_REPLICATE_MODEL"),
     ({"CLAIMFIRST_REPLICATE_MODEL": "minimax/video-01"}, "REPLICATE_API_TOKEN"),
     ({"CLAIMFIRST_REPLICATE_MODEL": "minimax/video-01", "REPLICATE_API_TOKEN": ""}, "REPLICATE_API_TOKEN"),
     ({"CLAIMFIRST_REPLICATE_MODEL": "video-01", "REPLICATE_API_TOKEN": "r8_secret"}, "replicate_model"),
     ({"CLAIMFIRST_REPLICATE_MODEL": "a/b", "REPLICATE_API_TOKEN": "r8_secret",
       "CLAIMFIRST_REPLICATE_BASE_URL": "api.replicate.com"}, "replicate_base_url"),
     ({"CLAIMFIRST_REPLICATE_MODEL": "a/b", "REPLICATE_API_TOKEN": "r8_secret",
       "CLAIMFIRST_REPLICATE_POLL_SECONDS": "0"}, "replicate_poll_seconds")],
)
def test_bad_replicate_settings_are_refused_by_name_without_the_token(monkeypatch, env, named) -> None:
    for name in ("CLAIMFIRST_REPLICATE_MODEL", "REPLICATE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLAIMFIRST_GENERATOR", "replicate")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert named in str(refused.value) and "r8_secret" not in str(refused.value)


def test_an_unknown_generator_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("CLAIMFIRST_GENERATOR", "sora")
    with pytest.raises(ValidationError, match="generator"):
        Settings()


def test_the_service_refuses_to_start_without_the_model_and_never_prints_the_token(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "--port", "1"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "CLAIMFIRST_GENERATOR": "replicate", "REPLICATE_API_TOKEN": "r8_secret",
             "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"},
    )
    assert result.returncode == 2
    assert "bad setting" in result.stderr and "CLAIMFIRST_REPLICATE_MODEL is required" in result.stderr
    assert "r8_secret" not in result.stderr + result.stdout and not (tmp_path / "x.db").exists()


# -- the recorded bodies, verbatim -------------------------------------------------------


def recorded(name: str) -> httpx.Response:
    response = json.loads((RECORDINGS / f"{name}.json").read_text())["response"]
    return httpx.Response(response["status"], headers=response["headers"], json=response["body"])


def generate_against(*answers: str) -> object:
    """Generate with each request answered by the next recording (at the HTTP boundary)."""
    queue = [recorded(name) for name in answers]
    transport = httpx.MockTransport(lambda request: queue.pop(0))
    generator = ReplicateGenerator(model=DEFAULT_MODEL, api_token=DEFAULT_TOKEN, poll_seconds=0, transport=transport,
                                   retry=RetryPolicy(attempts=2, backoff_base_seconds=0, backoff_cap_seconds=0, retry_after_cap_seconds=0))
    job = GenerationJob(video_id=1, tg_user_id=42, prompt=PROMPT)
    try:
        return asyncio.run(generator.generate(job))
    except GenerationError as exc:
        return str(exc)


def test_recorded_success_gives_the_first_output_url() -> None:
    result = generate_against("create_starting", "get_succeeded")
    assert result.video_url == "https://replicate.delivery/pbxt/9inf36wjsEWuQ6XTf84iezPftv9QZdePfGySnU5tUai3BOrWE/out-0.png"


@pytest.mark.parametrize(
    ("answers", "message"),
    [(["create_starting", "get_failed"], "Replicate prediction vgcm4plb7tgzlyznry5d5jkgvu failed: CUDA out of memory"),
     (["create_starting", "cancel_canceled"], "Replicate prediction hdwst0bb05rgp0cf0p29mzk2am canceled"),
     (["error_401_unauthenticated"], "Replicate 401 Unauthenticated: You did not pass a valid authentication token"),
     (["error_422_input_validation"], "Replicate 422 Input validation failed: - input: prompt is required (while"),
     (["error_429_throttled", "error_429_throttled"],
      "Replicate 429 Request was throttled. Expected available in 1 second. (while creating a prediction); gave up")],
)
def test_recorded_failures_give_the_providers_words(answers, message) -> None:
    assert generate_against(*answers).startswith(message)
