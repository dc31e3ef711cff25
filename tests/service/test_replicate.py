"""ReplicateGenerator through real HTTP against the stand-in Replicate (tests/stand_ins/replicate.py):
results, provider failures, retries, and the job hooks that keep a crash from paying twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from service import GenerationError, GenerationJob, GenerationResult
from service.process import free_port
from service.generation.replicate import ReplicateGenerator, RetryPolicy

from tests.stand_ins.replicate import DEFAULT_MODEL, DEFAULT_TOKEN, Fate, StandInReplicate

# Retries as in production, with backoff in milliseconds so a test of four tries is quick.
FAST_RETRY = RetryPolicy(attempts=4, backoff_base_seconds=0.01, backoff_cap_seconds=0.02)
DEADLINE_SECONDS = 10.0
# A read timeout for the tests that hold an answer (for 5 s): long enough that a loaded CI
# runner answers every other loopback request within it.
SHORT_TIMEOUT = 1.0


@pytest.fixture
def replicate():
    with StandInReplicate() as stand_in:
        yield stand_in


def generator_for(replicate: StandInReplicate, **overrides: Any) -> ReplicateGenerator:
    options: dict[str, Any] = dict(
        model=replicate.model, api_token=replicate.token, base_url=replicate.base_url,
        poll_seconds=0.01, retry=FAST_RETRY, request_timeout_seconds=2.0,
    )
    return ReplicateGenerator(**{**options, **overrides})


def job(**fields: Any) -> GenerationJob:
    return GenerationJob(video_id=7, tg_user_id=42, prompt="smart wallets as digital assistants", **fields)


def generate(generator: ReplicateGenerator, the_job: GenerationJob) -> GenerationResult:
    return asyncio.run(asyncio.wait_for(generator.generate(the_job), DEADLINE_SECONDS))


def requests_to(replicate: StandInReplicate, method: str, fragment: str) -> list:
    return [seen for seen in replicate.seen if seen.method == method and fragment in seen.path]


# -- results -----------------------------------------------------------------------------


def test_a_succeeded_prediction_gives_its_url_and_the_configured_price(replicate) -> None:
    replicate.script(Fate(polls=2))
    result = generate(generator_for(replicate, cost_usd=3.5), job())
    (job_id,) = replicate.created_ids
    assert replicate.creations == 1
    assert result.video_url == replicate.prediction(job_id)["output"] == f"https://replicate.delivery/stand-in/{job_id}.mp4"
    assert result.cost_usd == Decimal("3.50")
    assert replicate.prediction(job_id)["input"] == {"prompt": "smart wallets as digital assistants"}
    assert len(requests_to(replicate, "GET", job_id)) == 3  # processing, processing, succeeded


def test_a_list_of_urls_gives_the_first(replicate) -> None:
    urls = ["https://replicate.delivery/x/video.mp4", "https://replicate.delivery/x/poster.jpg"]
    replicate.script(Fate(polls=0, output=urls))
    assert generate(generator_for(replicate), job()).video_url == urls[0]


def test_a_failed_prediction_fails_with_the_providers_message(replicate) -> None:
    replicate.script(Fate(polls=1, status="failed", error="NSFW content detected in the output"))
    with pytest.raises(GenerationError, match=r"Replicate prediction p0001standin failed: NSFW content detected"):
        generate(generator_for(replicate), job())
    assert replicate.cancels == []  # it ended on its own: nothing to cancel


def test_the_cost_is_on_the_generator_for_jobs_that_never_return(replicate) -> None:
    assert generator_for(replicate, cost_usd=4).cost_usd == Decimal("4.00")
    assert "r8_" not in repr(generator_for(replicate))


# -- retries -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "fault", "times"),
    [("get", {"status": 500}, 2),
     ("get", {"status": 502}, 3),
     ("get", {"status": 429, "retry_after": "0"}, 2),
     ("get", {"hang_seconds": 5.0}, 1),  # answered after the client's read timeout
     ("create", {"status": 503}, 2),
     ("create", {"status": 429, "retry_after": "0"}, 3)],
)
def test_transient_failures_are_retried_then_succeed(replicate, route, fault, times) -> None:
    replicate.fault(route, times=times, **fault)
    result = generate(generator_for(replicate, request_timeout_seconds=SHORT_TIMEOUT), job())
    assert result.video_url.startswith("https://replicate.delivery/stand-in/")
    assert replicate.creations == 1
    faulted = requests_to(replicate, "POST" if route == "create" else "GET", "/predictions")
    assert len(faulted) >= times + 1


def test_a_429_is_retried_after_its_retry_after(replicate) -> None:
    replicate.fault("create", status=429, retry_after="1")
    generate(generator_for(replicate), job())
    throttled, accepted = requests_to(replicate, "POST", "/models/")
    assert (throttled.status, accepted.status) == (429, 201)
    assert accepted.at - throttled.at >= 0.9  # not the 10 ms backoff: the provider's second


def test_transient_failures_that_last_fail_the_video_with_the_last_answer(replicate) -> None:
    replicate.fault("get", status=500, times=FAST_RETRY.attempts)
    with pytest.raises(GenerationError, match=r"Replicate 500 Internal error: .*gave up after 4 attempts"):
        generate(generator_for(replicate), job())
    assert replicate.cancels == replicate.created_ids  # given up on: stop paying for it


def test_connect_errors_are_retried_until_the_provider_answers(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="claimfirst.replicate")
    port = free_port()
    retry = RetryPolicy(attempts=400, backoff_base_seconds=0.02, backoff_cap_seconds=0.02)

    async def scenario() -> tuple[GenerationResult, int]:
        generation = asyncio.create_task(ReplicateGenerator(
            model=DEFAULT_MODEL, api_token=DEFAULT_TOKEN, base_url=f"http://127.0.0.1:{port}/v1",
            poll_seconds=0.01, retry=retry,
        ).generate(job()))
        await _until(lambda: any("ConnectError" in r.getMessage() for r in caplog.records), "a refused connection")
        with StandInReplicate(port=port) as replicate:
            return await asyncio.wait_for(generation, DEADLINE_SECONDS), replicate.creations

    result, creations = asyncio.run(scenario())
    assert creations == 1 and result.video_url.startswith("https://replicate.delivery/stand-in/")


def test_an_unreachable_provider_fails_the_video_after_the_retries() -> None:
    generator = ReplicateGenerator(model="a/b", api_token="t", base_url=f"http://127.0.0.1:{free_port()}/v1",
                                   retry=FAST_RETRY)
    with pytest.raises(GenerationError, match=r"Replicate unreachable while creating a prediction: ConnectError.*4 attempts"):
        generate(generator, job())


@pytest.mark.parametrize(
    ("setup", "message"),
    [(lambda r: None, "Replicate 401 Unauthenticated: You did not pass a valid authentication token"),
     (lambda r: r.fault("create", status=422), "Replicate 422 Input validation failed: - input: prompt is required")],
    ids=["401", "422"],
)
def test_permanent_refusals_fail_at_once_with_the_providers_message(replicate, setup, message) -> None:
    setup(replicate)
    token = "r8_revoked" if message.startswith("Replicate 401") else replicate.token
    with pytest.raises(GenerationError, match=message.replace("-", r"\-")):
        generate(generator_for(replicate, api_token=token), job())
    assert len(requests_to(replicate, "POST", "/models/")) == 1 and replicate.creations == 0


def test_an_unknown_model_fails_at_once(replicate) -> None:
    with pytest.raises(GenerationError, match="Replicate 404 Not found"):
        generate(generator_for(replicate, model="nobody/nothing"), job())
    assert len(replicate.seen) == 1


@pytest.mark.parametrize("fault", [{"status": 500}, {"status": 504}, {"hang_seconds": 5.0}], ids=["500", "504", "lost answer"])
def test_a_create_that_may_have_been_processed_is_never_sent_twice(replicate, fault) -> None:
    replicate.fault("create", **fault)
    with pytest.raises(GenerationError, match="not retried|Replicate 50"):
        generate(generator_for(replicate, request_timeout_seconds=SHORT_TIMEOUT), job())
    assert len(requests_to(replicate, "POST", "/models/")) == 1
    assert replicate.creations == (1 if "hang_seconds" in fault else 0)


# -- the job hooks: on_job_started, cancellation, adoption -------------------------------


def test_on_job_started_gets_the_id_before_any_poll(replicate) -> None:
    seen_at_start: list[tuple[str, int]] = []

    async def started(job_id: str) -> None:
        seen_at_start.append((job_id, len(requests_to(replicate, "GET", job_id))))

    generate(generator_for(replicate), job(on_job_started=started))
    assert seen_at_start == [(replicate.created_ids[0], 0)]


def test_a_failing_on_job_started_cancels_the_job_and_re_raises(replicate) -> None:
    async def started(job_id: str) -> None:
        raise ConnectionError("the claim could not be updated")

    with pytest.raises(ConnectionError, match="could not be updated"):
        generate(generator_for(replicate), job(on_job_started=started))
    (job_id,) = replicate.created_ids
    assert replicate.cancels == [job_id] and replicate.prediction(job_id)["status"] == "canceled"
    assert requests_to(replicate, "GET", job_id) == []


def test_cancelling_the_generation_cancels_the_prediction(replicate) -> None:
    replicate.script(Fate(polls=None))  # runs until cancelled

    async def scenario() -> None:
        started = asyncio.Event()

        async def on_started(job_id: str) -> None:
            started.set()

        generation = asyncio.create_task(generator_for(replicate).generate(job(on_job_started=on_started)))
        await asyncio.wait_for(started.wait(), DEADLINE_SECONDS)
        generation.cancel()
        with pytest.raises(asyncio.CancelledError):
            await generation

    asyncio.run(scenario())
    (job_id,) = replicate.created_ids
    assert replicate.cancels == [job_id] and replicate.prediction(job_id)["status"] == "canceled"


@pytest.mark.parametrize("status", ["starting", "processing", "succeeded"])
def test_a_live_or_succeeded_earlier_job_is_adopted_not_paid_again(replicate, status) -> None:
    job_id = replicate.seed(status, Fate(polls=2))
    started: list[str] = []

    async def on_started(started_id: str) -> None:
        started.append(started_id)

    result = generate(generator_for(replicate), job(adopt_job_id=job_id, on_job_started=on_started))
    assert replicate.creations == 0 and started == [job_id]
    assert result.video_url == replicate.prediction(job_id)["output"] == f"https://replicate.delivery/stand-in/{job_id}.mp4"


@pytest.mark.parametrize("status", ["failed", "canceled"])
def test_a_failed_or_canceled_earlier_job_is_replaced_by_a_new_one(replicate, status) -> None:
    old_id = replicate.seed(status)
    started: list[str] = []

    async def on_started(started_id: str) -> None:
        started.append(started_id)

    result = generate(generator_for(replicate), job(adopt_job_id=old_id, on_job_started=on_started))
    (new_id,) = replicate.created_ids
    assert replicate.creations == 1 and started == [new_id] and new_id in result.video_url


def test_an_earlier_job_the_provider_does_not_know_is_replaced(replicate) -> None:
    result = generate(generator_for(replicate), job(adopt_job_id="gone-or-never-existed"))
    assert replicate.creations == 1 and replicate.created_ids[0] in result.video_url


async def _until(condition: Callable[[], object], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_SECONDS
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)

