"""A Python client of the HTTP API (httpx), sync and async: `create`, `get`, `wait`.

    with Client("https://videos.example.com", api_key=KEY) as client:
        try:
            accepted = client.create(42, "Fireworks over Sydney harbour")
            video = client.wait(accepted.video_id, timeout=600)
        except DuplicateRequest as exc:   # an equivalent video holds the claim
            video = client.wait(exc.video_id, timeout=600)

`AsyncClient` has the same methods, awaited. Answers are the service's own models
(`service.http.schemas`); errors are the service's own exceptions (`service.errors`), rebuilt
from the answer: a 409 duplicate is `DuplicateRequest` (its `video_id`, `status`, `video_url`,
`created_at`; `existing` is None), a 503 `StorageUnavailable`, a 429 `Throttled` (or, for a
limit, its subclass `LimitReached`, whose `limit` says which), each with the `Retry-After` it
was given, and so on.

Retries are safe because every `create` sends an `Idempotency-Key` (a fresh UUID per call,
or the caller's), the same on each retry: a retry of a request the service already admitted
gets that first answer back (`Idempotent-Replayed`), never a second generation, and never a
"duplicate" of its own request. Retried: a connection or timeout error, a 503 with
`Retry-After` (the database did not answer: nothing was started), and the 409 "key still
being admitted" that a retry can meet while its first attempt is still running. Not retried:
a 429 (the backlog is full: the caller decides), anything else. Bounded: `retries` more
attempts, each wait at most `max_retry_wait` seconds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from service.errors import (
    BadIdempotencyKey, ClaimContention, ClaimfirstError, DuplicateRequest, IdempotencyKeyInProgress,
    IdempotencyKeyReused, InvalidRequest, LimitReached, RequestTooLarge, StorageUnavailable, Throttled,
    Unauthenticated, VideoNotFound,
)
from service.http.schemas import CreateAccepted, VideoOut

__all__ = ["Client", "AsyncClient", "FINAL_STATUSES"]

FINAL_STATUSES = frozenset({"ready", "failed"})
# A 409 "in progress" has no Retry-After: the first attempt is being admitted within the
# service's request bound (seconds); a short pause, then ask again.
IN_PROGRESS_WAIT_SECONDS = 0.5
_BY_TYPE: dict[str, type[ClaimfirstError]] = {
    "/problems/claim-contention": ClaimContention,
    "/problems/idempotency-key-in-progress": IdempotencyKeyInProgress,
    "/problems/idempotency-key-reused": IdempotencyKeyReused,
    "/problems/idempotency-key-malformed": BadIdempotencyKey,
}
_BY_STATUS: dict[int, type[ClaimfirstError]] = {
    401: Unauthenticated, 404: VideoNotFound, 413: RequestTooLarge, 422: InvalidRequest, 409: ClaimContention,
}


def error_of(response: httpx.Response) -> ClaimfirstError:
    """The exception of `service.errors` that an error answer stands for."""
    try:
        body: Any = response.json()
    except ValueError:  # not the service's answer (a proxy's page, uvicorn's plain 503)
        body = {"detail": response.text[:200] or response.reason_phrase}
    if not isinstance(body, dict):
        body = {"detail": str(body)[:200]}
    detail = str(body.get("detail") or f"HTTP {response.status_code}")
    kind = body.get("type")
    retry_after = _retry_after(response)
    if kind == DuplicateRequest.problem:
        return DuplicateRequest.answered(
            detail, video_id=int(body["video_id"]), status=str(body["status"]),
            created_at=datetime.fromisoformat(body["created_at"]), video_url=body.get("video_url"))
    if kind in _BY_TYPE:
        return _BY_TYPE[kind](detail)
    if isinstance(kind, str) and (limit := LimitReached.of_type(kind)) is not None:
        return LimitReached(limit, detail, retry_after=retry_after or 1)
    if response.status_code == 429:
        return Throttled(detail, retry_after=retry_after or 1)
    if response.status_code == 503:
        return StorageUnavailable(detail, retry_after=retry_after or StorageUnavailable.RETRY_AFTER_SECONDS)
    if response.status_code in _BY_STATUS:
        return _BY_STATUS[response.status_code](detail)
    error = ClaimfirstError(detail)
    error.status_code = response.status_code  # an instance attribute: the class keeps its 500
    return error


def _retry_after(response: httpx.Response) -> int | None:
    value = response.headers.get("retry-after", "")
    return int(value) if value.isdigit() else None


class _Calls:
    """What the sync and async clients share: building requests, reading answers, retry waits."""

    def __init__(self, *, retries: int, max_retry_wait: float) -> None:
        if retries < 0 or max_retry_wait < 0:
            raise ValueError("retries and max_retry_wait must be >= 0")
        self.retries, self.max_retry_wait = retries, max_retry_wait

    @staticmethod
    def create_request(tg_user_id: int, prompt: str, category: str | None,
                       idempotency_key: str | None, params: Mapping[str, Any] | None = None,
                       callback_url: str | None = None,
                       ) -> tuple[dict[str, Any], dict[str, str]]:
        body: dict[str, Any] = {"tg_user_id": tg_user_id, "prompt": prompt}
        if category is not None:
            body["category"] = category
        if params is not None:
            body["params"] = dict(params)
        if callback_url is not None:
            body["callback_url"] = callback_url
        return body, {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}

    def retry_wait(self, attempt: int, outcome: httpx.Response | httpx.TransportError) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None when `outcome` is final."""
        if attempt > self.retries:
            return None
        if isinstance(outcome, httpx.TransportError):
            wait: float = min(2.0 ** (attempt - 1) * 0.25, 5.0)
        elif outcome.status_code == 503 and _retry_after(outcome) is not None:
            wait = float(_retry_after(outcome) or 0)
        elif outcome.status_code == 409 and outcome.headers.get("content-type") == "application/problem+json" \
                and _problem_type(outcome) == "/problems/idempotency-key-in-progress":
            wait = IN_PROGRESS_WAIT_SECONDS
        else:
            return None
        return min(wait, self.max_retry_wait)


def _problem_type(response: httpx.Response) -> object:
    try:
        return response.json().get("type")
    except (ValueError, AttributeError):
        return None


def _answer(response: httpx.Response, model: type[Any]) -> Any:
    if response.is_success:
        return model.model_validate_json(response.content)
    raise error_of(response)


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Client(_Calls):
    """The synchronous client. `http`: an `httpx.Client` of your own (then not closed here)."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 30.0, retries: int = 3,
                 max_retry_wait: float = 30.0, http: httpx.Client | None = None) -> None:
        super().__init__(retries=retries, max_retry_wait=max_retry_wait)
        self._own = http is None
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout, headers=_headers(api_key))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self.http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(1, self.retries + 2):
            try:
                outcome: httpx.Response | httpx.TransportError = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                outcome = exc
            wait = self.retry_wait(attempt, outcome)
            if wait is None:
                if isinstance(outcome, httpx.TransportError):
                    raise outcome
                return outcome
            time.sleep(wait)
        raise AssertionError("unreachable: the last attempt always returns or raises")

    def create(self, tg_user_id: int, prompt: str, *, category: str | None = None,
               idempotency_key: str | None = None, params: Mapping[str, Any] | None = None,
               callback_url: str | None = None) -> CreateAccepted:
        """Start a video (202), or raise: `DuplicateRequest` (409), `Throttled` (429), ...
        `params`: generation parameters for the provider (see the README's `params`);
        `callback_url`: where the service POSTs the outcome (see the README's callbacks)."""
        body, headers = self.create_request(tg_user_id, prompt, category, idempotency_key, params, callback_url)
        return _answer(self._send("POST", "/create", json=body, headers=headers), CreateAccepted)  # type: ignore[no-any-return]

    def get(self, video_id: int) -> VideoOut:
        return _answer(self._send("GET", f"/videos/{video_id}"), VideoOut)  # type: ignore[no-any-return]

    def wait(self, video_id: int, *, timeout: float, poll_seconds: float = 2.0) -> VideoOut:
        """The video once ready or failed; TimeoutError if it is neither after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            video = self.get(video_id)
            if video.status in FINAL_STATUSES:
                return video
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"video {video_id} is still {video.status} after {timeout} s")
            time.sleep(min(poll_seconds, left))


class AsyncClient(_Calls):
    """The asynchronous client: `Client`'s methods, awaited."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 30.0, retries: int = 3,
                 max_retry_wait: float = 30.0, http: httpx.AsyncClient | None = None) -> None:
        super().__init__(retries=retries, max_retry_wait=max_retry_wait)
        self._own = http is None
        self.http = http or httpx.AsyncClient(base_url=base_url, timeout=timeout, headers=_headers(api_key))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own:
            await self.http.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(1, self.retries + 2):
            try:
                outcome: httpx.Response | httpx.TransportError = await self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                outcome = exc
            wait = self.retry_wait(attempt, outcome)
            if wait is None:
                if isinstance(outcome, httpx.TransportError):
                    raise outcome
                return outcome
            await asyncio.sleep(wait)
        raise AssertionError("unreachable: the last attempt always returns or raises")

    async def create(self, tg_user_id: int, prompt: str, *, category: str | None = None,
                     idempotency_key: str | None = None, params: Mapping[str, Any] | None = None,
                     callback_url: str | None = None) -> CreateAccepted:
        body, headers = self.create_request(tg_user_id, prompt, category, idempotency_key, params, callback_url)
        return _answer(await self._send("POST", "/create", json=body, headers=headers), CreateAccepted)  # type: ignore[no-any-return]

    async def get(self, video_id: int) -> VideoOut:
        return _answer(await self._send("GET", f"/videos/{video_id}"), VideoOut)  # type: ignore[no-any-return]

    async def wait(self, video_id: int, *, timeout: float, poll_seconds: float = 2.0) -> VideoOut:
        deadline = time.monotonic() + timeout
        while True:
            video = await self.get(video_id)
            if video.status in FINAL_STATUSES:
                return video
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"video {video_id} is still {video.status} after {timeout} s")
            await asyncio.sleep(min(poll_seconds, left))
