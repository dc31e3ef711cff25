"""Never pay twice, even across a crash: the provider job of a dead worker is adopted.

The service runs as a real process against the stand-in Replicate (a loopback HTTP server in
this test's process, so it outlives the service). The worker is killed with SIGKILL while its
prediction runs; a new process starts on the same database; once the dead worker's lease has
run out, the next /create of the prompt takes the claim over and adopts the recorded job
instead of creating another. The provider must have seen exactly one prediction created.

Whichever comes first after the restart, the sweep or the user's retry, the job is handed on:
both paths are run. The sweep does not wait for anybody to ask again (a crash during the
provider call used to throw the paid video away unless the user re-sent the prompt): it claims
the key on the user's behalf and adopts the job, never creating one.
"""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.service.live import live_service, wait_until
from tests.stand_ins.replicate import Fate, StandInReplicate

PROMPT = "Smart wallets as digital assistants..."
BODY = {"tg_user_id": 42, "prompt": PROMPT}


def provider_settings(replicate: StandInReplicate) -> dict[str, object]:
    return {"generator": "replicate", "replicate_model": replicate.model, "replicate_api_token": replicate.token,
            "replicate_base_url": replicate.base_url, "replicate_poll_seconds": 0.05, "lease_seconds": 1}


def video(url: str, video_id: int) -> dict:
    return httpx.get(f"{url}/videos/{video_id}", timeout=10).json()


@pytest.mark.parametrize("swept_first", [True, False], ids=["swept-then-taken-over", "taken-over-directly"])
def test_a_killed_workers_job_is_adopted_not_paid_again(db_url: str, tmp_path, swept_first: bool) -> None:
    with StandInReplicate() as replicate:
        replicate.script(Fate(polls=None))  # runs until released
        settings = provider_settings(replicate)
        with live_service(db_url, tmp_path, **settings) as doomed:
            first = httpx.post(f"{doomed.url}/create", json=BODY, timeout=10).json()
            job_id = wait_until(lambda: replicate.created_ids and replicate.created_ids[0], what="a prediction")
            # The job id is durable on the video before the worker waits on the job.
            wait_until(lambda: replicate.prediction(job_id)["status"] == "processing", what="the first poll")
            doomed.signal(signal.SIGKILL)
            doomed.process.wait(timeout=10)

        # A sweep every lease (1 s) finds the dead attempt before anyone asks again; a long lease
        # on the survivor (its first sweep is an hour away) leaves it to the user's retry.
        survivor_settings = {**settings, "lease_seconds": 1 if swept_first else 3600}
        with live_service(db_url, tmp_path, **survivor_settings) as survivor:
            if swept_first:
                # Nobody asks: the sweep supersedes the dead attempt and adopts its job as attempt 2.
                wait_until(lambda: video(survivor.url, first["video_id"])["status"] == "failed",
                           what="the sweep to take the dead attempt over")
                answer = httpx.post(f"{survivor.url}/create", json=BODY, timeout=10)
                assert answer.status_code == 409, answer.text  # the adopting attempt holds the key
                second = video(survivor.url, answer.json()["video_id"])
            else:
                def taken_over() -> dict | None:
                    response = httpx.post(f"{survivor.url}/create", json=BODY, timeout=10)
                    return response.json() if response.status_code == 202 else None

                # The dead worker's lease (1 s, on the database's clock) runs out, then the key is free.
                second = wait_until(taken_over, what="the dead worker's lease to run out")
            assert second["attempt"] == 2
            replicate.release(job_id)
            done = wait_until(lambda: (v := video(survivor.url, second["video_id"]))["status"] != "generating" and v,
                              what="the adopted job to finish")

        assert (done["status"], done["video_url"]) == ("ready", replicate.prediction(job_id)["output"])
        assert replicate.creations == 1, replicate.created_ids  # one prediction paid for, not two
        assert video_status_after(db_url, first["video_id"]) == "failed"


def video_status_after(database_url: str, video_id: int) -> str:
    from tests.stores import migrated_store

    with migrated_store(database_url) as store:
        return store.get(video_id).status
