"""Generation parameters through the real app and stores, on SQLite and PostgreSQL: stored and
returned, sent to the provider, in the key only as `CLAIMFIRST_KEY_PARAMS` says, covered by the
Idempotency-Key, kept by a handed-over job, and one generation under concurrency."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from service import ClaimFirst, ClaimRule, DuplicateRequest, InvalidRequest, NewVideo, Settings
from service.http.idempotency import fingerprint
from service.http.schemas import CreateRequest
from service.prompt_key import key_with_params, prompt_key
from tests.service.app_client import drain, running_app, runtime, video_count
from tests.service.live import live_service
from tests.service.test_concurrency import rows_for_user
from tests.service.test_replicate_wiring import app_on_replicate
from tests.stand_ins.replicate import Fate, StandInReplicate
from tests.stores import SyncStore, age

PROMPT = "A lighthouse in a storm at night"
RULE = ClaimRule(window=timedelta(hours=24), lease=timedelta(seconds=30))


def create(client, params: dict | None = None, prompt: str = PROMPT, **headers: str) -> httpx.Response:
    body = {"tg_user_id": 42, "prompt": prompt, **({} if params is None else {"params": params})}
    return client.post("/create", json=body, headers=headers)


def test_params_are_stored_returned_and_not_part_of_the_key_by_default(db_url: str) -> None:
    params = {"duration_seconds": 5, "aspect_ratio": "16:9", "camera": {"moves": ["pan", "zoom"], "speed": 0.5}}
    with running_app(db_url) as client:
        accepted = create(client, params)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["prompt_key"] == prompt_key(PROMPT)
        video = client.get(f"/videos/{accepted.json()['video_id']}").json()
        assert video["params"] == params
        # Another duration of the same prompt is the same request: the setting names no param.
        duplicate = create(client, {"duration_seconds": 10})
        assert duplicate.status_code == 409 and duplicate.json()["video_id"] == video["video_id"]
        plain = create(client, prompt="A quiet harbour at dawn")
        assert client.get(f"/videos/{plain.json()['video_id']}").json()["params"] is None
        assert video_count(client) == 2


def test_key_params_make_another_duration_another_video(db_url: str) -> None:
    with running_app(db_url, key_params="duration_seconds") as client:
        five = create(client, {"duration_seconds": 5, "seed": 1})
        ten = create(client, {"duration_seconds": 10})
        assert (five.status_code, ten.status_code) == (202, 202), (five.text, ten.text)
        assert five.json()["prompt_key"] == prompt_key(PROMPT) + '\x1f{"duration_seconds":5}'
        # The same value, written otherwise and beside other params in another order: the same key.
        again = create(client, {"seed": 2, "duration_seconds": 5.0}, prompt=PROMPT.upper() + "!")
        assert again.status_code == 409 and again.json()["video_id"] == five.json()["video_id"]
        # No duration at all: exactly the plain prompt key, as before the setting.
        bare = create(client)
        assert bare.status_code == 202 and bare.json()["prompt_key"] == prompt_key(PROMPT)
        assert create(client, {"seed": 3}).status_code == 409
        assert video_count(client) == 3


def test_the_provider_gets_the_prompt_and_the_params(db_url: str) -> None:
    params = {"duration_seconds": 6, "prompt_optimizer": False, "first_frame": None}
    with StandInReplicate() as replicate, app_on_replicate(db_url, replicate) as client:
        replicate.script(Fate(polls=1))
        accepted = create(client, params)
        assert accepted.status_code == 202, accepted.text
        drain(client)
        (job_id,) = replicate.created_ids
        assert replicate.prediction(job_id)["input"] == {"prompt": PROMPT, **params}
        assert client.get(f"/videos/{accepted.json()['video_id']}").json()["status"] == "ready"


def test_the_simulated_generator_records_what_it_would_have_sent(sqlite_url: str) -> None:
    with running_app(sqlite_url) as client:
        video_id = create(client, {"duration_seconds": 5}).json()["video_id"]
        drain(client)
        assert list(runtime(client).runner.generator.inputs) == [
            (video_id, {"prompt": PROMPT, "duration_seconds": 5})]


def test_the_idempotency_key_covers_the_params(db_url: str) -> None:
    with running_app(db_url) as client:
        first = create(client, {"duration_seconds": 5, "seed": 1}, **{"Idempotency-Key": "k-1"})
        replayed = create(client, {"seed": 1, "duration_seconds": 5}, **{"Idempotency-Key": "k-1"})
        assert first.status_code == replayed.status_code == 202
        assert replayed.headers["Idempotent-Replayed"] == "true" and replayed.json() == first.json()
        reused = create(client, {"duration_seconds": 10, "seed": 1}, **{"Idempotency-Key": "k-1"})
        assert reused.status_code == 422 and reused.json()["type"] == "/problems/idempotency-key-reused"
        # Only params differ, and params are not in the key: still another body for the Idempotency-Key.
        assert create(client, **{"Idempotency-Key": "k-1"}).status_code == 422
        assert video_count(client) == 1


def test_a_body_without_params_keeps_the_fingerprint_it_had_before_params() -> None:
    body = CreateRequest(tg_user_id=42, prompt=PROMPT)
    before_params = {"tg_user_id": 42, "prompt": PROMPT, "category": None}
    assert fingerprint(body.fingerprinted()) == fingerprint(before_params)
    assert fingerprint(CreateRequest(tg_user_id=42, prompt=PROMPT, params={"n": 1}).fingerprinted()) != fingerprint(
        before_params)


def test_a_handed_over_job_keeps_the_params_it_was_asked_with(store: SyncStore) -> None:
    key = prompt_key(PROMPT)
    dead = store.claim(NewVideo(42, PROMPT, key, None, {"duration_seconds": 5}), RULE)
    assert dead.params == {"duration_seconds": 5}
    assert store.record_job(dead, "job-5s")
    age(store.url, seconds=31)
    assert [r.params for r in store.adoptable(10)] == [{"duration_seconds": 5}]
    # The user's retry asks 10 s (not in the key): it takes over the claim and the running job,
    # which was asked for 5 s; the new attempt's row says so, and so does what it generates with.
    newer = store.claim(NewVideo(42, PROMPT, key, None, {"duration_seconds": 10}), RULE)
    assert newer.attempt == 2 and newer.adopt_job_id == "job-5s" and newer.params == {"duration_seconds": 5}
    assert store.get(newer.video_id).params == {"duration_seconds": 5}
    # Nothing handed on (the attempt failed with its cost recorded): the request's own params.
    store.fail(newer, "provider said no", Decimal("4.00"))
    third = store.claim(NewVideo(42, PROMPT, key, None, {"duration_seconds": 10}), RULE)
    assert third.adopt_job_id is None and third.params == {"duration_seconds": 10}
    assert store.get(third.video_id).params == {"duration_seconds": 10}


def test_an_attempt_that_never_recorded_its_job_hands_its_params_on_too(store: SyncStore) -> None:
    key = prompt_key(PROMPT)
    dead = store.claim(NewVideo(42, PROMPT, key, None, {"seed": 7}), RULE)
    assert store.request_job(dead)  # asked the provider, then died before the id came back
    age(store.url, seconds=31)
    newer = store.claim(NewVideo(42, PROMPT, key, None, {"seed": 8}), RULE)
    assert newer.adopt_requested_at is not None and newer.params == {"seed": 7}


def test_embedded_create_takes_params(sqlite_url: str) -> None:
    asyncio.run(_embedded(sqlite_url))


async def _embedded(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, sim_seconds="0", key_params="duration_seconds")
    async with ClaimFirst(settings) as cf:
        with pytest.raises(InvalidRequest, match="'prompt' is the request's own field"):
            await cf.create(42, PROMPT, params={"prompt": "x"})
        with pytest.raises(InvalidRequest, match="not a JSON number"):
            await cf.create(42, PROMPT, params={"duration_seconds": float("nan")})
        five = await cf.create(42, PROMPT, params={"duration_seconds": 5})
        ten = await cf.create(42, PROMPT, params={"duration_seconds": 10})
        with pytest.raises(DuplicateRequest) as dup:
            await cf.create(42, PROMPT, params={"duration_seconds": 5.0})
        assert dup.value.existing.id == five.video_id != ten.video_id
        record = await cf.get(ten.video_id)
        assert record.params == {"duration_seconds": 10}
        assert record.prompt_key == key_with_params(prompt_key(PROMPT), {"duration_seconds": 10}, ("duration_seconds",))


async def _burst(urls: list[str], n: int) -> list[httpx.Response]:
    # Two durations, each written several ways and beside an unkeyed param in varying order.
    variants = itertools.cycle([{"duration_seconds": 5}, {"seed": 1, "duration_seconds": 5.0},
                                {"duration_seconds": 10}, {"duration_seconds": 1e1, "seed": 2}])
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        targets = itertools.islice(itertools.cycle(urls), n)
        return await asyncio.gather(*(
            client.post(f"{url}/create", json={"tg_user_id": 777, "prompt": PROMPT, "params": next(variants)})
            for url in targets))


def test_concurrent_creates_with_the_same_key_params_make_one_generation_each(db_url: str, tmp_path) -> None:
    with (
        live_service(db_url, tmp_path, sim_seconds=30, key_params="duration_seconds") as first,
        live_service(db_url, tmp_path, sim_seconds=30, key_params="duration_seconds") as second,
    ):
        responses = asyncio.run(_burst([first.url, second.url], 80))
        codes = Counter(r.status_code for r in responses)
        assert codes == {202: 2, 409: 78}, codes
        winners = {r.json()["prompt_key"]: r.json()["video_id"] for r in responses if r.status_code == 202}
        assert sorted(winners) == [prompt_key(PROMPT) + '\x1f{"duration_seconds":10}',
                                   prompt_key(PROMPT) + '\x1f{"duration_seconds":5}']
        assert {r.json()["video_id"] for r in responses if r.status_code == 409} == set(winners.values())
        assert first.stats()["generations_started"] + second.stats()["generations_started"] == 2
    assert rows_for_user(db_url) == 2


def test_the_python_client_sends_params(sqlite_url: str) -> None:
    from service.client import Client

    with running_app(sqlite_url) as app, Client("http://testserver", http=app) as client:
        accepted = client.create(42, PROMPT, params={"duration_seconds": 5})
        assert client.get(accepted.video_id).params == {"duration_seconds": 5}
        with pytest.raises(InvalidRequest, match="'prompt' is the request's own field"):
            client.create(42, "Another prompt", params={"prompt": "x"})
