"""Completion callbacks between real processes: `python -m service` on SQLite and PostgreSQL, and
a receiver on loopback that verifies every signature with the Standard Webhooks package.

- the receiver down (connection refused), then failing (503), then up: delivered once, with
  one `webhook-id` across every attempt;
- the service killed (SIGKILL) after the outcome and before the delivery: a new process on the
  same database delivers it;
- killed mid-delivery (the receiver holds the request): sent again after the lease, same id
  (at least once);
- two service processes on one database: each outcome delivered exactly once;
- a killed worker's provider job adopted by the sweep: one delivery, for the adopting attempt.

No sleeping: every wait is bounded polling of a condition (`wait_until`).
"""

from __future__ import annotations

import signal
import threading
from collections import Counter

import asyncio

import httpx
import pytest

from service import ClaimFirst, InvalidRequest, Settings
from service.client import Client

from tests.service.live import live_service, wait_until
from tests.service.test_adoption_after_crash import provider_settings
from tests.stand_ins.replicate import Fate, StandInReplicate
from tests.service.receiver import Receiver, new_secret

SECRET = new_secret()
# Quick retries, so "down for a while" is a few attempts in seconds.
CALLBACKS = dict(callback_hosts="127.0.0.1", callback_secret=SECRET, callback_allow_loopback="true",
                 callback_retry_first_seconds=0.2, callback_retry_max_seconds=1, callback_poll_seconds=0.2,
                 callback_timeout_seconds=3, sim_seconds=0.2, request_timeout_seconds=2, sim_hints="true")


def create(url: str, prompt: str, callback_url: str, user: int = 1, fail: bool = False) -> int:
    answer = httpx.post(f"{url}/create", json={"tg_user_id": user, "prompt": prompt, "callback_url": callback_url},
                        headers={"X-Sim-Fail": "1"} if fail else {}, timeout=10)
    assert answer.status_code == 202, answer.text
    return int(answer.json()["video_id"])


def callback(url: str, video_id: int) -> dict:
    return httpx.get(f"{url}/videos/{video_id}", timeout=10).raise_for_status().json()["callback"]


def test_receiver_down_then_failing_then_up_gets_it_once_with_one_id(db_url: str, tmp_path) -> None:
    receiver = Receiver(SECRET, fail_next=2)  # not started: down
    with live_service(db_url, tmp_path, **CALLBACKS) as service:
        with Client(service.url) as client:  # the Python client names the callback too
            video_id = client.create(1, "a lighthouse in a storm", callback_url=receiver.url).video_id
        wait_until(lambda: callback(service.url, video_id)["attempts"] >= 3, timeout=30,
                   what=lambda: f"attempts against a receiver that is down: {callback(service.url, video_id)}")
        down = callback(service.url, video_id)
        assert down["state"] == "pending" and down["event"] == "video.ready" and down["last_error"]
        with receiver:
            wait_until(lambda: callback(service.url, video_id)["state"] == "delivered", timeout=30,
                       what=lambda: f"the delivery: {callback(service.url, video_id)}")
            video = httpx.get(f"{service.url}/videos/{video_id}", timeout=10).json()
        metrics = httpx.get(f"{service.url}/metrics", timeout=10).text
    statuses = [d.status for d in receiver.deliveries]
    assert statuses == [503, 503, 204], statuses  # every one verified (a bad signature is 401)
    assert len(set(receiver.ids())) == 1  # one webhook-id across the retries
    [accepted] = receiver.accepted()
    assert accepted.body == {"type": "video.ready", "timestamp": accepted.body["timestamp"], "data": {
        "video_id": video_id, "status": "ready", "video_url": video["video_url"], "error": None, "tg_user_id": 1}}
    assert 'claimfirst_callback_deliveries_total{result="delivered"} 1.0' in metrics
    assert 'claimfirst_callback_deliveries_total{result="retrying"}' in metrics


def test_killed_after_the_outcome_a_restarted_service_delivers(db_url: str, tmp_path) -> None:
    receiver = Receiver(SECRET)  # down while the first process lives
    with live_service(db_url, tmp_path, **CALLBACKS) as doomed:
        ready = create(doomed.url, "ends ready", receiver.url)
        failed = create(doomed.url, "ends failed", receiver.url, user=2, fail=True)
        httpx.post(f"{doomed.url}/create", json={"tg_user_id": 3, "prompt": "no callback"}, timeout=10)
        # Both outcomes are recorded with their events; nothing could be delivered yet.
        wait_until(lambda: callback(doomed.url, ready)["attempts"] >= 1 and callback(doomed.url, failed)["event"],
                   timeout=30, what="both outcomes recorded")
        doomed.signal(signal.SIGKILL)
        doomed.process.wait(10)
    with receiver, live_service(db_url, tmp_path, **CALLBACKS) as restarted:
        wait_until(lambda: len(receiver.accepted()) == 2, timeout=30,
                   what=lambda: f"deliveries after the restart: {receiver.deliveries}")
        assert callback(restarted.url, ready)["state"] == callback(restarted.url, failed)["state"] == "delivered"
    events = {d.body["data"]["video_id"]: d.body["type"] for d in receiver.accepted()}
    assert events == {ready: "video.ready", failed: "video.failed"}


def test_killed_mid_delivery_it_is_sent_again_with_the_same_id(db_url: str, tmp_path) -> None:
    hold = threading.Event()
    hold.set()
    receiver = Receiver(SECRET, hold=hold)
    with receiver:
        with live_service(db_url, tmp_path, **CALLBACKS) as doomed:
            video_id = create(doomed.url, "held delivery", receiver.url)
            wait_until(lambda: receiver.in_flight > 0, timeout=30,
                       what="the first delivery to arrive")
            doomed.signal(signal.SIGKILL)
            doomed.process.wait(10)
        hold.clear()
        # The lease (timeout 3 s + 2 x 2 s + 5 s) runs out; the next process sends it again.
        with live_service(db_url, tmp_path, **CALLBACKS) as restarted:
            wait_until(lambda: callback(restarted.url, video_id)["state"] == "delivered", timeout=40,
                       what=lambda: f"the redelivery: {callback(restarted.url, video_id)}")
    ids = receiver.ids()
    assert len(ids) == 2 and len(set(ids)) == 1, ids  # at least once, deduplicable


def test_two_service_processes_deliver_each_outcome_exactly_once(db_url: str, tmp_path) -> None:
    receiver = Receiver(SECRET)  # down at first: every event piles up, due in both processes at once
    with live_service(db_url, tmp_path, **CALLBACKS) as one, live_service(db_url, tmp_path, **CALLBACKS) as two:
        ids = [create((one, two)[n % 2].url, f"prompt {n}", receiver.url, user=n + 1) for n in range(20)]
        wait_until(lambda: all(callback(one.url, i)["event"] for i in ids), timeout=60, what="every outcome")
        with receiver:
            wait_until(lambda: all(callback(two.url, i)["state"] == "delivered" for i in ids), timeout=60,
                       what=lambda: f"deliveries: {len(receiver.accepted())} of {len(ids)}")
    counts = Counter(d.body["data"]["video_id"] for d in receiver.accepted())
    assert counts == Counter(ids), counts
    assert len(receiver.deliveries) == len(ids)  # nothing sent twice, nothing refused


def test_the_embedded_claim_takes_a_callback_url_too(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, **CALLBACKS)

    async def scenario(receiver: Receiver) -> int:
        async with ClaimFirst(settings) as cf:
            with pytest.raises(InvalidRequest, match="not in CLAIMFIRST_CALLBACK_HOSTS"):
                await cf.create(1, "elsewhere", callback_url="http://10.0.0.1/x")
            admission = await cf.create(1, "from a bot's own process", callback_url=receiver.url)
            for _ in range(400):  # bounded polling of the store, 20 s at most
                state = await cf.runtime.store.callback_state(admission.video_id)
                if state is not None and state.state == "delivered":
                    return int(admission.video_id)
                await asyncio.sleep(0.05)
            raise AssertionError(f"not delivered: {state}")

    with Receiver(SECRET) as receiver:
        video_id = asyncio.run(scenario(receiver))
    [delivery] = receiver.accepted()
    assert delivery.body["data"]["video_id"] == video_id and delivery.body["type"] == "video.ready"


def test_a_killed_workers_job_adopted_by_the_sweep_reports_once_for_the_adopter(db_url: str, tmp_path) -> None:
    """The outcome of a handed-over job: the dead attempt (superseded) reports nothing; the
    sweep's adopting attempt carries its callback on and reports the result, once."""
    with StandInReplicate() as replicate, Receiver(SECRET) as receiver:
        replicate.script(Fate(polls=None))  # runs until released
        settings = {**CALLBACKS, **provider_settings(replicate)}
        with live_service(db_url, tmp_path, **settings) as doomed:
            first = create(doomed.url, "adopted later", receiver.url, user=42)
            job_id = wait_until(lambda: replicate.created_ids and replicate.created_ids[0], what="a prediction")
            wait_until(lambda: replicate.prediction(job_id)["status"] == "processing", what="the first poll")
            doomed.signal(signal.SIGKILL)
            doomed.process.wait(timeout=10)
        with live_service(db_url, tmp_path, **settings) as survivor:
            # Nobody asks again: the sweep supersedes the dead attempt and adopts its job.
            wait_until(lambda: video(survivor.url, first)["status"] == "failed", what="the sweep's takeover")
            assert video(survivor.url, first)["callback"] is None  # moved to the adopter
            replicate.release(job_id)
            wait_until(lambda: len(receiver.accepted()) == 1, timeout=30, what="the adopter's callback")
            [delivery] = receiver.accepted()
            adopter = delivery.body["data"]["video_id"]
            assert video(survivor.url, adopter)["callback"]["state"] == "delivered"
    assert adopter != first and delivery.body["type"] == "video.ready"
    assert delivery.body["data"]["video_url"] == replicate.prediction(job_id)["output"]
    assert replicate.creations == 1 and len(receiver.deliveries) == 1


def video(url: str, video_id: int) -> dict:
    return httpx.get(f"{url}/videos/{video_id}", timeout=10).raise_for_status().json()
