"""`ReplicateGenerator`: videos from Replicate's predictions API, over httpx.

    create   POST {base}/models/{owner}/{name}/predictions  {"input": {"prompt": …}}  → 201 prediction
    poll     GET  {base}/predictions/{id}                                             → 200 prediction
    cancel   POST {base}/predictions/{id}/cancel                                      → 200 prediction

A prediction is `{"id", "status", "output", "error", "logs", "metrics", "urls", …}` with
`status` one of starting, processing (running) or succeeded, failed, canceled (done). Errors
come as problem details (`{"title", "detail", "status"}`); their text is what a failed video
records.

Creation is asynchronous on purpose (no `Prefer: wait`): the id comes back at once and goes to
`job.on_job_started`, which makes it durable on the claim before any waiting, so an attempt
that takes over after a crash adopts the job instead of paying for a second one.

Retries. Reading (poll) is safe to repeat: connect errors, timeouts, 429 and any 5xx are
retried with capped exponential backoff (429 after its Retry-After). Creating is not: a
request the provider may have processed is never sent again, because a lost answer to a
create means a prediction that runs and bills with nobody watching it, and a second create
would bill twice. So creation retries only what certainly created nothing: the connection
never opened (connect error/timeout, no free pooled connection), 429 (throttled) and 503
(unavailable). A read timeout, a dropped connection or another 5xx on create fails the video
at once, saying the prediction may exist. Cancelling is best effort: one try, short timeout.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from service.errors import GenerationError
from service.generation.generators import GenerationJob, GenerationResult, usd

__all__ = ["ReplicateGenerator", "RetryPolicy", "DEFAULT_BASE_URL"]

log = logging.getLogger("claimfirst.replicate")

DEFAULT_BASE_URL = "https://api.replicate.com/v1"
RUNNING = frozenset({"starting", "processing"})
ADOPTABLE = RUNNING | {"succeeded"}
# One HTTP exchange, not the generation: Replicate answers a create or a poll in well under
# a second; 30 s rides out a slow edge without leaving a poll hanging for minutes.
REQUEST_TIMEOUT_SECONDS = 30.0
# A cancel happens while the service stops or a generation is abandoned: it must not hold
# up the shutdown that is waiting for it.
CANCEL_TIMEOUT_SECONDS = 5.0
# Transport failures after which the request certainly never reached the provider.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_CREATE_RETRYABLE_STATUS = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """How transient provider failures are retried before the video is marked failed."""

    # Six tries with backoff 0.5, 1, 2, 4, 8 s: a provider blip of about 15 s is ridden
    # out; a longer outage fails the video (the user may retry) rather than hold its slot.
    attempts: int = 6
    backoff_base_seconds: float = 0.5
    backoff_cap_seconds: float = 8.0
    # Replicate asks for about a second when it throttles; a Retry-After beyond a minute is
    # treated as a minute so a generation never sleeps past its timeout on one answer.
    retry_after_cap_seconds: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap_seconds)
        backoff = min(self.backoff_cap_seconds, self.backoff_base_seconds * 2 ** (attempt - 1))
        # Jitter, so workers throttled together do not come back together.
        return backoff * random.uniform(0.5, 1.0)


class Prediction(BaseModel):
    """The fields of Replicate's prediction object this generator uses."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: str
    output: Any = None
    error: str | None = None
    metrics: dict[str, Any] | None = None


class ReplicateGenerator:
    def __init__(
        self,
        *,
        model: str,
        api_token: str,
        base_url: str = DEFAULT_BASE_URL,
        poll_seconds: float = 2.0,
        cost_usd: float = 4.0,
        retry: RetryPolicy = RetryPolicy(),
        request_timeout_seconds: float = REQUEST_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        owner, _, name = model.partition("/")
        self.model = model
        self.poll_seconds = poll_seconds
        self.cost_usd = usd(cost_usd)
        self.retry = retry
        self._create_path = f"/models/{quote(owner, safe='')}/{quote(name, safe='')}/predictions"
        self._base_url = base_url.rstrip("/")
        self._token = api_token
        self._timeout = request_timeout_seconds
        self._transport = transport  # None: the network; tests may pass httpx.MockTransport

    def __repr__(self) -> str:  # the token stays out of every repr and log line
        return f"ReplicateGenerator(model={self.model!r}, base_url={self._base_url!r})"

    async def generate(self, job: GenerationJob) -> GenerationResult:
        headers = {"Authorization": f"Bearer {self._token}", "User-Agent": "claimfirst"}
        async with httpx.AsyncClient(
            base_url=self._base_url, headers=headers, timeout=self._timeout, transport=self._transport
        ) as client:
            prediction = await self._adopt(client, job) if job.adopt_job_id else None
            if prediction is None:
                prediction = await self._create(client, job)
            try:
                if job.on_job_started is not None:
                    await job.on_job_started(prediction.id)
                prediction = await self._wait(client, prediction)
            except BaseException:
                # Cancelled (service stopping, lease lost, timeout), the runner could not
                # record the id, or polling gave up: nobody will use this job's result, so
                # stop paying for it, then let the reason propagate.
                await self._cancel(client, prediction.id)
                raise
        return self._result(prediction)

    # -- the three calls ---------------------------------------------------------------

    async def _adopt(self, client: httpx.AsyncClient, job: GenerationJob) -> Prediction | None:
        """The earlier attempt's prediction if it is worth waiting for, else None."""
        job_id = job.adopt_job_id or ""
        try:
            prediction = await self._request(
                client, "GET", _prediction_path(job_id), what=f"adopting {job_id}", missing_ok=True
            )
        except _NotFound:
            log.warning("video %s: earlier prediction %s is unknown to Replicate; creating one", job.video_id, job_id)
            return None
        if prediction.status in ADOPTABLE and (prediction.status != "succeeded" or _video_url(prediction)):
            log.info("video %s: adopted prediction %s (%s)", job.video_id, prediction.id, prediction.status)
            return prediction
        log.info("video %s: earlier prediction %s is %s; creating one", job.video_id, job_id, prediction.status)
        return None

    async def _create(self, client: httpx.AsyncClient, job: GenerationJob) -> Prediction:
        prediction = await self._request(
            client, "POST", self._create_path, json={"input": {"prompt": job.prompt}},
            what="creating a prediction", repeatable=False,
        )
        log.info("video %s: Replicate prediction %s created (%s)", job.video_id, prediction.id, self.model)
        return prediction

    async def _wait(self, client: httpx.AsyncClient, prediction: Prediction) -> Prediction:
        while prediction.status in RUNNING:
            await asyncio.sleep(self.poll_seconds)
            prediction = await self._request(client, "GET", _prediction_path(prediction.id), what="polling")
        return prediction

    async def _cancel(self, client: httpx.AsyncClient, job_id: str) -> None:
        try:
            response = await client.post(f"{_prediction_path(job_id)}/cancel", timeout=CANCEL_TIMEOUT_SECONDS)
        except httpx.TransportError as exc:
            log.warning("prediction %s: cancel not delivered (%s); it may run to the end", job_id, _describe(exc))
            return
        if response.is_success:
            log.info("prediction %s: cancelled at Replicate", job_id)
        else:
            log.warning("prediction %s: cancel refused: %s", job_id, _problem(response))

    def _result(self, prediction: Prediction) -> GenerationResult:
        if prediction.status != "succeeded":
            why = f": {prediction.error}" if prediction.error else ""
            raise GenerationError(f"Replicate prediction {prediction.id} {prediction.status}{why}")
        url = _video_url(prediction)
        if url is None:
            raise GenerationError(f"Replicate prediction {prediction.id} succeeded without a video URL")
        predict_time = (prediction.metrics or {}).get("predict_time")
        log.info("prediction %s succeeded (predict_time %s s)", prediction.id, predict_time)
        return GenerationResult(video_url=url, thumbnail_url=None, cost_usd=self.cost_usd)

    # -- one request, retried ----------------------------------------------------------

    async def _request(
        self, client: httpx.AsyncClient, method: str, path: str, *, what: str,
        json: dict[str, Any] | None = None, repeatable: bool = True, missing_ok: bool = False,
    ) -> Prediction:
        """Send until answered 2xx (→ the prediction) or a failure that retrying cannot fix.

        A 404 raises `_NotFound` when `missing_ok` (the caller has a plan for it), else fails.
        """
        for attempt in range(1, self.retry.attempts + 1):
            retry_after = None
            try:
                response = await client.request(method, path, json=json)
            except httpx.TransportError as exc:
                failure = f"Replicate unreachable while {what}: {_describe(exc)}"
                if not repeatable and not isinstance(exc, _NOT_SENT):
                    raise GenerationError(f"{failure}; not retried, the prediction may exist") from exc
            else:
                if response.is_success:
                    return _prediction(response, what)
                failure = f"{_problem(response)} (while {what})"
                if response.status_code == 404 and missing_ok:
                    raise _NotFound(failure)
                if not _transient(response.status_code, repeatable):
                    raise GenerationError(failure)
                retry_after = _retry_after(response)
            if attempt == self.retry.attempts:
                raise GenerationError(f"{failure}; gave up after {attempt} attempts")
            delay = self.retry.delay(attempt, retry_after)
            log.warning("%s; retrying in %.2f s", failure, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")


class _NotFound(Exception):
    """404 for a prediction the caller expected might be gone; never leaves this module."""


def _prediction_path(job_id: str) -> str:
    return f"/predictions/{quote(job_id, safe='')}"


def _transient(status: int, repeatable: bool) -> bool:
    if repeatable:
        return status == 429 or status >= 500
    return status in _CREATE_RETRYABLE_STATUS


def _prediction(response: httpx.Response, what: str) -> Prediction:
    try:
        return Prediction.model_validate_json(response.content)
    except ValidationError as exc:
        raise GenerationError(f"Replicate answered {response.status_code} while {what} without a prediction") from exc


def _video_url(prediction: Prediction) -> str | None:
    """The video's URL: models return one URL, or a list of them (the video first)."""
    output = prediction.output
    if isinstance(output, list) and output:
        output = output[0]
    return output if isinstance(output, str) and output else None


def _problem(response: httpx.Response) -> str:
    """The provider's own words for an error answer: its problem details, else its text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and (body.get("detail") or body.get("title")):
        parts = [str(body[key]) for key in ("title", "detail") if body.get(key)]
        text = ": ".join(parts)
    else:
        text = response.text[:200] or response.reason_phrase
    return f"Replicate {response.status_code} {_one_line(text)}"


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date (RFC 9110)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": a UTC time with no stated zone
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _describe(exc: httpx.TransportError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
