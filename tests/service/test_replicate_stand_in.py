"""The stand-in Replicate itself (tests/stand_ins/replicate.py), where the nemesis relies on it:
predictions that end by the clock, the list endpoint as Replicate pages it, the bill, and the
stand-in as a process of its own. Over real HTTP on loopback, as the service reaches it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import httpx
import pytest

from service.process import free_port
from tests.service.live import ROOT, wait_until
from tests.stand_ins.replicate import DEFAULT_PRICE_USD, Fate, StandInReplicate
from tests.stand_ins.replicate_pages import instant

LISTED_FIELDS = {"id", "model", "version", "input", "status", "created_at", "started_at", "completed_at", "urls",
                 "error", "metrics"}


class Clock:
    """A monotonic clock the test moves by hand, so time fates need no waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def client_for(replicate: StandInReplicate) -> httpx.Client:
    return httpx.Client(base_url=replicate.base_url, headers={"Authorization": f"Bearer {replicate.token}"}, timeout=5)


def create(client: httpx.Client, replicate: StandInReplicate, prompt: str) -> dict:
    response = client.post(f"/models/{replicate.model}/predictions", json={"input": {"prompt": prompt}})
    assert response.status_code == 201, response.text
    return response.json()


def listed(client: httpx.Client, url: str = "/predictions", **params: str) -> dict:
    response = client.get(url, params=params or None)  # httpx: any params, even {}, replace the URL's query
    assert response.status_code == 200, response.text
    return response.json()


# -- time fates ------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_a_time_fate_ends_when_its_seconds_have_passed_however_often_it_is_polled(outcome: str) -> None:
    clock = Clock()
    with StandInReplicate(clock=clock) as replicate, client_for(replicate) as client:
        replicate.script(Fate(seconds=10, status=outcome))  # type: ignore[arg-type]
        job_id = create(client, replicate, "a red fox")["id"]
        clock.now += 9.9
        statuses = {client.get(f"/predictions/{job_id}").json()["status"] for _ in range(5)}
        assert statuses == {"processing"}  # five polls: a poll-count fate would have ended
        clock.now += 0.1
        done = client.get(f"/predictions/{job_id}").json()
        assert done["status"] == outcome and done["completed_at"] and done["metrics"]["predict_time"] == 10.0
        assert (done["output"] is not None) == (outcome == "succeeded")


def test_a_time_fate_ends_unpolled_as_the_list_shows_it() -> None:
    clock = Clock()
    with StandInReplicate(clock=clock, default_fate=Fate(seconds=10)) as replicate, client_for(replicate) as client:
        job_id = create(client, replicate, "a red fox")["id"]
        assert [p["status"] for p in listed(client)["results"]] == ["processing"]
        clock.now += 10
        (shown,) = listed(client)["results"]
        assert (shown["id"], shown["status"]) == (job_id, "succeeded")


def test_poll_count_fates_are_unchanged_by_the_clock() -> None:
    clock = Clock()
    with StandInReplicate(clock=clock) as replicate, client_for(replicate) as client:
        replicate.script(Fate(polls=2))
        job_id = create(client, replicate, "a red fox")["id"]
        clock.now += 3600
        polls = [client.get(f"/predictions/{job_id}").json()["status"] for _ in range(3)]
        assert polls == ["processing", "processing", "succeeded"]


def test_every_nth_unscripted_prediction_fails_when_asked() -> None:
    clock = Clock()
    with StandInReplicate(clock=clock, default_fate=Fate(seconds=1), fail_every=3) as replicate, \
            client_for(replicate) as client:
        for n in range(6):
            create(client, replicate, f"prompt {n}")
        clock.now += 1
        assert [p["status"] for p in listed(client)["results"]][::-1] == ["succeeded", "succeeded", "failed"] * 2


# -- the list ---------------------------------------------------------------------------------


def test_the_list_pages_newest_first_with_next_and_previous_links() -> None:
    with StandInReplicate(page_size=2) as replicate, client_for(replicate) as client:
        ids = [create(client, replicate, f"prompt {n}")["id"] for n in range(5)]
        first = listed(client)
        assert [p["id"] for p in first["results"]] == [ids[4], ids[3]] and first["previous"] is None
        assert all(LISTED_FIELDS <= set(p) for p in first["results"])
        create(client, replicate, "created between two pages")  # must not shift the next page
        second = listed(client, first["next"])
        assert [p["id"] for p in second["results"]] == [ids[2], ids[1]]
        last = listed(client, second["next"])
        assert [p["id"] for p in last["results"]] == [ids[0]] and last["next"] is None
        back = listed(client, last["previous"])
        assert [p["id"] for p in back["results"]] == [ids[2], ids[1]]


def test_the_list_filters_on_created_at_after_inclusive_before_exclusive() -> None:
    with StandInReplicate() as replicate, client_for(replicate) as client:
        made = [create(client, replicate, f"prompt {n}") for n in range(4)]
        assert len({instant(p["created_at"]) for p in made}) == 4, "created_at must tell them apart"
        middle = made[2]["created_at"]
        after = listed(client, created_after=middle)["results"]
        before = listed(client, created_before=middle)["results"]
        assert [p["id"] for p in after] == [made[3]["id"], made[2]["id"]]
        assert [p["id"] for p in before] == [made[1]["id"], made[0]["id"]]
        window = listed(client, created_after=made[1]["created_at"], created_before=made[3]["created_at"])
        assert [p["id"] for p in window["results"]] == [made[2]["id"], made[1]["id"]]


def test_the_filters_are_kept_across_pages() -> None:
    with StandInReplicate(page_size=1) as replicate, client_for(replicate) as client:
        made = [create(client, replicate, f"prompt {n}") for n in range(3)]
        page = listed(client, created_after=made[1]["created_at"])
        assert [p["id"] for p in page["results"]] == [made[2]["id"]]
        following = listed(client, page["next"])
        assert [p["id"] for p in following["results"]] == [made[1]["id"]] and following["next"] is None


@pytest.mark.parametrize("params", [{"created_after": "yesterday"}, {"cursor": "not-a-cursor"}])
def test_a_bad_list_query_is_a_400(params: dict) -> None:
    with StandInReplicate() as replicate, client_for(replicate) as client:
        assert client.get("/predictions", params=params).status_code == 400


def test_the_list_needs_the_token() -> None:
    with StandInReplicate() as replicate:
        assert httpx.get(f"{replicate.base_url}/predictions", timeout=5).status_code == 401


# -- the bill ----------------------------------------------------------------------------------


def test_every_created_prediction_is_billed_once_whatever_became_of_it() -> None:
    clock = Clock()
    with StandInReplicate(clock=clock, price_usd=2.5) as replicate, client_for(replicate) as client:
        replicate.seed("processing")  # an earlier process's: not on this bill
        replicate.script(Fate(seconds=4), Fate(seconds=4, status="failed"), Fate(seconds=60))
        ids = [create(client, replicate, prompt)["id"] for prompt in ("one", "two", "three")]
        clock.now += 5
        client.post(f"/predictions/{ids[2]}/cancel")
        clock.now += 1
        bill = replicate.bill()
        assert [(c.id, c.prompt, c.status) for c in bill] == [
            (ids[0], "one", "succeeded"), (ids[1], "two", "failed"), (ids[2], "three", "canceled")]
        assert [c.seconds for c in bill] == [4.0, 4.0, 5.0]
        assert replicate.price_usd == 2.5 and StandInReplicate().price_usd == DEFAULT_PRICE_USD


def test_a_running_prediction_is_billed_for_the_time_so_far() -> None:
    clock = Clock()
    with StandInReplicate(clock=clock, default_fate=Fate(seconds=60)) as replicate, client_for(replicate) as client:
        create(client, replicate, "long")
        clock.now += 7
        (charge,) = replicate.bill()
        assert (charge.status, charge.seconds) == ("processing", 7.0)


# -- as a process ------------------------------------------------------------------------------


def test_the_stand_in_as_a_process_serves_its_bill_and_writes_it_on_sigterm(tmp_path) -> None:
    port, state = free_port(), tmp_path / "bill.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.stand_ins.replicate", "--port", str(port), "--seconds", "0.2",
         "--state", str(state)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        base_url = json.loads(process.stdout.readline())["base_url"]  # printed once it listens
        assert base_url == f"http://127.0.0.1:{port}/v1"
        replicate = StandInReplicate()  # only for its defaults: token, model
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {replicate.token}"},
                          timeout=5) as client:
            job_id = create(client, replicate, "over the wire")["id"]
            wait_until(lambda: client.get(f"/predictions/{job_id}").json()["status"] == "succeeded",
                       what="the 0.2 s prediction", every=0.05)
            served = httpx.get(f"http://127.0.0.1:{port}/_standin/bill", timeout=5).json()
        assert [c["id"] for c in served["bill"]] == [job_id] and served["price_usd"] == DEFAULT_PRICE_USD
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, process.stderr.read()
        saved = json.loads(state.read_text())
        assert saved["bill"] == served["bill"] and saved["creations"] == 1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
