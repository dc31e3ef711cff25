"""/metrics and JSON logs of real `python -m service` processes (uvicorn on loopback)."""

from __future__ import annotations

import json

import httpx

from tests.service.live import live_service, wait_until
from tests.service.metrics_text import creates, value

KEY = "0123456789abcdef0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROMPT = "A secret garden at dawn, prompt text that must never reach an INFO line"


def test_two_workers_metrics_sum_both_processes(pg_url: str, tmp_path) -> None:
    with live_service(pg_url, tmp_path, workers=2, sim_seconds=30) as service:
        pids: set[int] = set()
        sent = 0

        def both_workers_answered_a_create() -> bool:
            # A new connection each time: the kernel hands connections to either worker.
            nonlocal sent
            for prompt in ("first", "first", "second"):
                answer = httpx.post(f"{service.url}/create", json={"tg_user_id": 9, "prompt": prompt}, timeout=10)
                assert answer.status_code in (202, 409)
                sent += 1
            pids.add(httpx.get(f"{service.url}/stats", timeout=5).json()["pid"])
            return len(pids) == 2

        wait_until(both_workers_answered_a_create, timeout=30, what="two distinct worker pids")
        for _ in range(4):  # whichever worker answers the scrape, it sums both
            text = httpx.get(f"{service.url}/metrics", timeout=5).text
            assert sum(creates(text).values()) == sent
            assert creates(text)["accepted"] == 2 and creates(text)["duplicate"] == sent - 2
            assert value(text, "claimfirst_create_seconds_count") == sent
            assert value(text, "claimfirst_in_flight") == 2  # both generations run for 30 s


def test_json_logs_carry_the_ids_and_no_prompt_or_secret(pg_url: str, tmp_path) -> None:
    with live_service(pg_url, tmp_path, log_level="info", log_format="json", api_keys=KEY, sim_seconds=0) as service:
        body = {"tg_user_id": 5, "prompt": PROMPT}
        first = httpx.post(f"{service.url}/create", json=body, headers={**AUTH, "X-Request-ID": "req-first"}, timeout=10)
        assert first.status_code == 202 and first.headers["x-request-id"] == "req-first"
        video_id = first.json()["video_id"]
        second = httpx.post(f"{service.url}/create", json=body, headers=AUTH, timeout=10)
        assert second.status_code == 409 and len(second.headers["x-request-id"]) == 32  # made up
        assert httpx.post(f"{service.url}/create", json=body, timeout=10).status_code == 401

        def lines() -> list[dict]:
            return [json.loads(line) for line in service.log_path.read_text().splitlines() if line.strip()]

        def generation_logged() -> list[dict]:
            return [line for line in lines() if line.get("outcome") == "ready"]

        def answers_logged() -> list[dict]:
            # Each line is written just after its answer is sent: the client may be first.
            answered = [line for line in lines() if line["logger"] == "claimfirst.http"]
            return answered if len(answered) == 3 else []

        ready = wait_until(generation_logged, timeout=20, what="the generation's outcome line")
        assert ready[0]["request_id"] == "req-first" and ready[0]["video_id"] == video_id
        assert ready[0]["attempt"] == 1 and ready[0]["logger"] == "claimfirst.runner"
        answered = wait_until(answers_logged, timeout=10, what="a line per /create")
        assert [(line["outcome"], line.get("video_id")) for line in answered] == [
            ("accepted", video_id), ("duplicate", None), ("rejected", None)]
        assert answered[0]["request_id"] == "req-first" and answered[1]["request_id"] == second.headers["x-request-id"]
        for line in lines():
            assert {"time", "level", "logger", "message"} <= line.keys()
            assert line["time"].endswith("+00:00")
        log_text = service.log_path.read_text()
        assert PROMPT not in log_text and "secret garden" not in log_text and KEY not in log_text
