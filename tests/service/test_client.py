"""`service.client` against a real `python -m service` (uvicorn on loopback), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from service.client import AsyncClient, Client
from service.errors import (
    DuplicateRequest, InvalidRequest, StorageUnavailable, Unauthenticated, VideoNotFound,
)
from tests.service.live import live_service
from tests.service.test_concurrency import rows_for_user

KEY = "client-0123456789abcdef0123456789"
USER = 777


def test_create_duplicate_wait_and_errors_as_the_service_s_exceptions(db_url: str, tmp_path) -> None:
    with live_service(db_url, tmp_path, sim_seconds="0.2", sim_hints="true") as service, \
            Client(service.url) as client:
        accepted = client.create(USER, "Fireworks over Sydney harbour", category="travel")
        assert accepted.status == "generating" and accepted.video_id is not None
        with pytest.raises(DuplicateRequest) as raised:
            client.create(USER, "fireworks over  SYDNEY harbour!")
        duplicate = raised.value
        assert (duplicate.video_id, duplicate.created_at, duplicate.existing) == (
            accepted.video_id, accepted.created_at, None)
        assert duplicate.status in ("generating", "ready") and "Duplicate video" in duplicate.detail
        video = client.wait(accepted.video_id, timeout=30, poll_seconds=0.05)
        assert (video.status, video.category) == ("ready", "travel") and video.video_url
        with pytest.raises(DuplicateRequest) as raised:
            client.create(USER, "Fireworks over Sydney harbour")
        assert (raised.value.status, raised.value.video_url) == ("ready", video.video_url)

        with pytest.raises(VideoNotFound):
            client.get(10**9)
        with pytest.raises(InvalidRequest) as invalid:
            client.create(USER, " ...")  # no text once punctuation goes
        assert invalid.value.status_code == 422 and "prompt is empty" in invalid.value.detail

        # A generation of 60 s: `wait` gives up at its timeout, not before, not long after.
        with Client(service.url, http=httpx.Client(base_url=service.url, headers={"X-Sim-Seconds": "60"})) as slow:
            started = slow.create(USER, "a slow one")
            with pytest.raises(TimeoutError, match="still generating"):
                slow.wait(started.video_id, timeout=0.3, poll_seconds=0.1)
            slow.http.close()
    assert rows_for_user(db_url, USER) == 2


def test_the_async_client_and_an_api_key(db_url: str, tmp_path) -> None:
    async def scenario(url: str) -> None:
        async with AsyncClient(url, api_key="wrong-0123456789abcdef0123") as stranger:
            with pytest.raises(Unauthenticated):
                await stranger.create(USER, "not mine")
        async with AsyncClient(url, api_key=KEY) as client:
            # Ten distinct users at once, then each again: ten videos, ten duplicates.
            prompts = [(user, f"video for user {user}") for user in range(1, 11)]
            accepted = await asyncio.gather(*(client.create(user, prompt) for user, prompt in prompts))
            again = await asyncio.gather(*(client.create(user, prompt) for user, prompt in prompts),
                                         return_exceptions=True)
            assert [error.video_id for error in again] == [a.video_id for a in accepted]  # type: ignore[union-attr]
            assert all(isinstance(error, DuplicateRequest) for error in again)
            done = await asyncio.gather(*(client.wait(a.video_id, timeout=30, poll_seconds=0.05) for a in accepted))
            assert {video.status for video in done} == {"ready"}

    with live_service(db_url, tmp_path, sim_seconds="0.1", api_keys=KEY) as service:
        asyncio.run(scenario(service.url))


class LoseFirstAnswers(httpx.BaseTransport):
    """Sends each request to the real service, but for the first `lose` POSTs drops the answer
    and raises a read error, as a connection cut after the service acted would."""

    def __init__(self, lose: int) -> None:
        self.inner, self.lose, self.sent_keys = httpx.HTTPTransport(), lose, []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST":
            self.sent_keys.append(request.headers["idempotency-key"])
            if self.lose:
                self.lose -= 1
                response.read()
                response.close()
                raise httpx.ReadError("connection lost after the request was sent", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_retry_after_a_lost_answer_gets_the_first_answer_not_a_duplicate(db_url: str, tmp_path) -> None:
    transport = LoseFirstAnswers(lose=2)
    with live_service(db_url, tmp_path, sim_seconds="30") as service, \
            Client(service.url, max_retry_wait=0.05,
                   http=httpx.Client(base_url=service.url, transport=transport)) as client:
        accepted = client.create(USER, "one logical request")  # admitted on the first try, answered on the third
        assert len(transport.sent_keys) == 3 and len(set(transport.sent_keys)) == 1
        assert client.get(accepted.video_id).status == "generating"
        assert service.stats()["generations_started"] == 1
        # A new logical request is a new key: this one is the service's duplicate.
        with pytest.raises(DuplicateRequest):
            client.create(USER, "one logical request")
        assert len(set(transport.sent_keys)) == 2
        client.http.close()
    assert rows_for_user(db_url, USER) == 1


class UnavailableFirst(httpx.BaseTransport):
    """The first `times` requests answered as the service answers when its database is down."""

    def __init__(self, times: int) -> None:
        self.inner, self.times, self.calls = httpx.HTTPTransport(), times, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls <= self.times:
            return httpx.Response(503, headers={"Retry-After": "5"}, json={"detail": "database did not answer"})
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_a_503_is_retried_after_its_retry_after_then_given_up(sqlite_url: str, tmp_path) -> None:
    with live_service(sqlite_url, tmp_path, sim_seconds="30") as service:
        transport = UnavailableFirst(times=2)
        with Client(service.url, max_retry_wait=0.01, http=httpx.Client(base_url=service.url,
                                                                         transport=transport)) as client:
            assert client.create(USER, "after an outage").video_id is not None and transport.calls == 3
            client.http.close()
        transport = UnavailableFirst(times=10)
        with Client(service.url, retries=2, max_retry_wait=0.01,
                    http=httpx.Client(base_url=service.url, transport=transport)) as client:
            with pytest.raises(StorageUnavailable) as raised:
                client.create(USER, "still out")
            assert (raised.value.retry_after, transport.calls) == (5, 3)
            client.http.close()
