"""`ReplicateGenerator`: videos from Replicate's predictions API, over httpx.

    create   POST {base}/models/{owner}/{name}/predictions  {"input": {"prompt": …, **params}}  → 201
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
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from service.errors import GenerationError
from service.generation.generators import GenerationJob, GenerationResult, usd

__all__ = ["ReplicateGenerator", "RetryPolicy", "DEFAULT_BASE_URL"]

log = logging.getLogger("claimfirst.replicate")

DEFAULT_BASE_URL = "https://api.replicate.com/v1"
RUNNING = frozenset({"starting", "processing"})
# One HTTP exchange, not the generation: Replicate answers a create or a poll in well under
# a second; 30 s rides out a slow edge without leaving a poll hanging for minutes.
REQUEST_TIMEOUT_SECONDS = 30.0
# A cancel happens while the service stops or a generation is abandoned: it must not hold
# up the shutdown that is waiting for it.
CANCEL_TIMEOUT_SECONDS = 5.0
# How far before an unrecorded request's moment (the database's clock) a prediction may be
# stamped by the provider's clock and still be that request's.
SEARCH_SKEW_SECONDS = 60.0
# At most this many pages of the predictions list are read looking for one prediction.
SEARCH_MAX_PAGES = 20
# A create that has not landed this long past its own exchange's timeout never will: a search
# after that sees it if it exists (the exchange timeout is the generator's request timeout).
SEARCH_SETTLE_MARGIN_SECONDS = 5.0
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
    model: str | None = None
    input: dict[str, Any] | None = None
    created_at: str | None = None


class PredictionPage(BaseModel):
    """One page of `GET /predictions`: newest first, `next` the following page's URL."""

    model_config = ConfigDict(extra="ignore")

    results: list[Prediction]
    next: str | None = None


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
        # Each generation is a paid job at the provider, with an id the runner records.
        self.provider_jobs = True
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
            earlier: Prediction | None = None
            if job.adopt_job_id:
                earlier = await self._look(client, job.adopt_job_id, job)
            elif job.search_since is not None:
                earlier = await self._find(client, job)
            prediction = earlier if earlier is not None and _adoptable(earlier) else None
            # An earlier job that ran and ended (failed, canceled) billed, and was handed on here.
            handed_cost = self.cost_usd if earlier is not None and prediction is None else Decimal(0)
            if prediction is not None:
                log.info("video %s: adopted prediction %s (%s)", job.video_id, prediction.id, prediction.status)
            else:
                if job.adopt_only:
                    raise GenerationError(
                        f"the earlier prediction {earlier.id if earlier else '(not found)'} cannot be adopted;"
                        " nothing new is created without a request", cost_usd=handed_cost or None)
                if job.on_job_requested is not None:
                    await job.on_job_requested()  # the recovery point; raises when the lease is gone
                prediction = await self._create(client, job)
            try:
                if job.on_job_started is not None:
                    await job.on_job_started(prediction.id)
                prediction = await self._wait(client, prediction)
            except BaseException:
                # Stop paying for a job nobody will use, but only when this attempt holds the
                # claim and chose to stop (a timeout, polling that gave up): a lost lease means
                # a successor may have adopted the job, and a stopping service hands it over.
                if job.may_cancel is None or job.may_cancel():
                    await self._cancel(client, prediction.id)
                raise
        return self._result(prediction, handed_cost)

    # -- the three calls ---------------------------------------------------------------

    async def _look(self, client: httpx.AsyncClient, job_id: str, job: GenerationJob) -> Prediction | None:
        """The earlier attempt's prediction as it is now, or None if Replicate does not know it."""
        try:
            prediction = await self._request(
                client, "GET", _prediction_path(job_id), what=f"adopting {job_id}", missing_ok=True
            )
        except _NotFound:
            log.warning("video %s: earlier prediction %s is unknown to Replicate", job.video_id, job_id)
            return None
        if not _adoptable(prediction):
            log.info("video %s: earlier prediction %s is %s", job.video_id, job_id, prediction.status)
        return prediction

    async def _find(self, client: httpx.AsyncClient, job: GenerationJob) -> Prediction | None:
        """The prediction an earlier attempt asked for at `job.search_since` and never recorded.

        Replicate takes no idempotency key, so the job is found by what it was asked: this
        model, this exact prompt and params, created at or after the request (less `SEARCH_SKEW_SECONDS`
        for the provider's clock against the database's). The earliest match is taken; the
        search waits first until the earlier request has surely landed or timed out."""
        assert job.search_since is not None
        settle = self._timeout + SEARCH_SETTLE_MARGIN_SECONDS - job.search_age_seconds
        if settle > 0:
            await asyncio.sleep(settle)  # until the earlier create has surely landed or timed out
        since = job.search_since - timedelta(seconds=SEARCH_SKEW_SECONDS)
        found: Prediction | None = None
        url: str | None = "/predictions?" + urlencode({"created_after": since.isoformat()})
        for _ in range(SEARCH_MAX_PAGES):
            page = await self._list(client, url)
            for item in page.results:
                created = _parse_time(item.created_at)
                if created is not None and created < since:
                    url = None
                    break
                if item.model in (None, self.model) and _asked_with(item.input or {}, job.provider_input):
                    found = item  # newest first: the last match is the earliest
            else:
                # Only the cursor is taken from `next`: the token goes to the configured base URL,
                # never to a host an answer names.
                url = None if page.next is None else "/predictions?" + httpx.URL(page.next).query.decode()
            if url is None:
                break
        if found is None:
            log.info("video %s: no prediction found for the earlier attempt's request; creating one", job.video_id)
            return None
        log.info("video %s: found the earlier attempt's prediction %s (%s)", job.video_id, found.id, found.status)
        return await self._look(client, found.id, job)

    async def _list(self, client: httpx.AsyncClient, url: str) -> PredictionPage:
        for attempt in range(1, self.retry.attempts + 1):
            try:
                response = await client.get(url)
            except httpx.TransportError as exc:
                failure = f"Replicate unreachable while listing predictions: {_describe(exc)}"
            else:
                if response.is_success:
                    try:
                        return PredictionPage.model_validate_json(response.content)
                    except ValidationError as exc:
                        raise GenerationError("Replicate listed predictions in an unknown shape") from exc
                failure = f"{_problem(response)} (while listing predictions)"
                if not _transient(response.status_code, True):
                    raise GenerationError(failure)
            if attempt == self.retry.attempts:
                raise GenerationError(f"{failure}; gave up after {attempt} attempts")
            await asyncio.sleep(self.retry.delay(attempt, None))
        raise AssertionError("unreachable: the loop returns or raises")

    async def _create(self, client: httpx.AsyncClient, job: GenerationJob) -> Prediction:
        prediction = await self._request(
            client, "POST", self._create_path, json={"input": job.provider_input},
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

    def _result(self, prediction: Prediction, handed_cost: Decimal = Decimal(0)) -> GenerationResult:
        # The prediction ran: whatever its end, it billed.
        if prediction.status != "succeeded":
            why = f": {prediction.error}" if prediction.error else ""
            raise GenerationError(f"Replicate prediction {prediction.id} {prediction.status}{why}",
                                  cost_usd=self.cost_usd + handed_cost)
        url = _video_url(prediction)
        if url is None:
            raise GenerationError(f"Replicate prediction {prediction.id} succeeded without a video URL",
                                  cost_usd=self.cost_usd + handed_cost)
        predict_time = (prediction.metrics or {}).get("predict_time")
        log.info("prediction %s succeeded (predict_time %s s)", prediction.id, predict_time)
        return GenerationResult(video_url=url, thumbnail_url=None, cost_usd=self.cost_usd + handed_cost)

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


def _asked_with(found: dict[str, Any], asked: dict[str, Any]) -> bool:
    """Whether a listed prediction's input holds everything this job asks (a model may echo
    defaults for inputs it was not sent)."""
    return all(name in found and found[name] == value for name, value in asked.items())


def _adoptable(prediction: Prediction) -> bool:
    """Worth waiting for: still running, or succeeded with a video."""
    return prediction.status in RUNNING or (prediction.status == "succeeded" and _video_url(prediction) is not None)


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


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _describe(exc: httpx.TransportError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
