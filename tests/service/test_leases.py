"""Leases across real processes: a killed worker frees the key; a frozen one is fenced off.

Both run on PostgreSQL, the production backend, with a one-second lease so the test waits
for real expiry (polling for the observable outcome, never sleeping a guessed amount).
"""

from __future__ import annotations

import signal

from datetime import timedelta

import httpx

from service import ClaimRule, NewVideo
from tests.service.live import live_service, wait_until
from tests.stores import migrated_store

RULE = ClaimRule(window=timedelta(hours=24), lease=timedelta(seconds=1))

BODY = {"tg_user_id": 5, "prompt": "Smart wallets as digital assistants..."}


def post(url: str) -> httpx.Response:
    return httpx.post(f"{url}/create", json=BODY, timeout=10)


def accepted(url: str) -> dict | None:
    response = post(url)
    return response.json() if response.status_code == 202 else None


def test_killed_worker_frees_the_key_after_the_lease(pg_url: str, tmp_path) -> None:
    with live_service(pg_url, tmp_path, lease_seconds=1, sim_seconds=600) as doomed:
        first = post(doomed.url).json()
        doomed.signal(signal.SIGKILL)
        doomed.process.wait(timeout=10)

    with live_service(pg_url, tmp_path, lease_seconds=1, sim_seconds=0.2) as survivor:
        # Once the dead worker's lease runs out, the next request takes the key over
        # (that it blocks until then is test_storage's job, on aged rows).
        second = wait_until(lambda: accepted(survivor.url), what="the dead worker's lease to expire")
        assert second["attempt"] == 2
        wait_until(lambda: httpx.get(f"{survivor.url}/videos/{second['video_id']}").json()["status"] == "ready",
                   what="the new attempt to finish")
        old = httpx.get(f"{survivor.url}/videos/{first['video_id']}").json()
        # Swept at the survivor's start or fenced off by the takeover, whichever came first.
        assert old["status"] == "failed" and "lease expired" in old["error"]


def test_frozen_worker_is_taken_over_and_its_late_result_rejected(pg_url: str, tmp_path) -> None:
    with (
        live_service(pg_url, tmp_path, lease_seconds=1, sim_seconds=1.5) as zombie,
        live_service(pg_url, tmp_path, lease_seconds=1, sim_seconds=0.2) as rescuer,
    ):
        first = post(zombie.url).json()
        zombie.signal(signal.SIGSTOP)  # a long GC pause, a stalled VM: no heartbeats
        second = wait_until(lambda: accepted(rescuer.url), what="the frozen worker's lease to expire")
        wait_until(lambda: rescuer.stats()["ready"] == 1, what="the rescuer's generation")

        zombie.signal(signal.SIGCONT)
        # Its generation finishes (or its heartbeat notices first); either way it is refused.
        stats = wait_until(lambda: (s := zombie.stats())["in_flight"] == 0 and s, what="the zombie to wake")
        assert (stats["ready"], stats["lost"]) == (0, 1)

    with migrated_store(pg_url) as store:
        late, newer = store.get(first["video_id"]), store.get(second["video_id"])
        assert (late.status, late.video_url) == ("failed", None)
        assert (newer.status, newer.attempt) == ("ready", 2) and newer.video_url.endswith(f"/{newer.id}.mp4")
        holder = store.holder(NewVideo(5, BODY["prompt"], newer.prompt_key), RULE)
        assert (holder.claim.status, holder.claim.attempt, holder.video.id) == ("ready", 2, newer.id)
