"""The limits under real concurrency: bursts of distinct prompts against two uvicorn workers on
one database (SQLite and a real PostgreSQL), where only the claim can keep the count.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal

import httpx
from sqlalchemy import create_engine, func, select

from service.stores.models import Video
from tests.service.live import live_service, wait_until
from tests.service.metrics_text import value
from tests.service.test_concurrency import rows_for_user

DAY = 24 * 3600


async def _burst(url: str, bodies: list[dict]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        return await asyncio.gather(*(client.post(f"{url}/create", json=body) for body in bodies))


def burst(url: str, bodies: list[dict]) -> list[httpx.Response]:
    return asyncio.run(_burst(url, bodies))


def both_workers_answer(url: str) -> None:
    pids: set[int] = set()

    def answered() -> bool:
        # A new connection each time: the kernel hands connections to either worker.
        pids.add(httpx.get(f"{url}/stats", timeout=5).json()["pid"])
        return len(pids) == 2

    wait_until(answered, timeout=30, what="two distinct worker pids")


def refusals(responses: list[httpx.Response], problem: str) -> list[int]:
    """The Retry-After of each 429, checking each is the limit's problem."""
    seconds = []
    for response in responses:
        if response.status_code == 429:
            assert response.headers["content-type"] == "application/problem+json", response.text
            body = response.json()
            assert body["type"] == problem and body["status"] == 429, body
            assert response.headers["retry-after"] == str(body["retry_after"])
            seconds.append(int(response.headers["retry-after"]))
    return seconds


def test_twenty_prompts_from_one_user_across_two_workers_start_exactly_the_daily_limit(db_url: str, tmp_path) -> None:
    with live_service(db_url, tmp_path, workers=2, sim_seconds=30, user_daily_limit=3) as service:
        both_workers_answer(service.url)
        responses = burst(service.url, [{"tg_user_id": 777, "prompt": f"a lighthouse, take {n}"} for n in range(20)])
        codes = Counter(r.status_code for r in responses)
        assert codes == {202: 3, 429: 17}, codes
        waits = refusals(responses, "/problems/user-daily-limit")
        # The oldest of the three leaves the 24 h window a day after it was claimed, seconds ago.
        assert all(DAY - 60 <= wait <= DAY for wait in waits), waits
        # Over the limit, a duplicate is still a duplicate: 409 with its video, nothing counted.
        accepted = next(r for r in responses if r.status_code == 202)
        prompt = next(body["prompt"] for body, r in zip(
            [{"prompt": f"a lighthouse, take {n}"} for n in range(20)], responses) if r is accepted)
        again = httpx.post(f"{service.url}/create", json={"tg_user_id": 777, "prompt": prompt.upper()}, timeout=10)
        assert again.status_code == 409 and again.json()["type"] == "/problems/duplicate-video", again.text
        assert again.json()["video_id"] == accepted.json()["video_id"]
        # Another user is not held by this one's limit.
        assert httpx.post(f"{service.url}/create", json={"tg_user_id": 778, "prompt": prompt},
                          timeout=10).status_code == 202
        metrics = httpx.get(f"{service.url}/metrics", timeout=10).text  # summed over both workers
        assert value(metrics, "claimfirst_limit_reached_total", limit="user_daily") == 17
        assert value(metrics, "claimfirst_limit_reached_total", limit="daily_budget") == 0
    assert rows_for_user(db_url) == 3


def test_the_concurrent_limit_holds_across_two_workers(db_url: str, tmp_path) -> None:
    with live_service(db_url, tmp_path, workers=2, sim_seconds=30, user_concurrent_limit=2) as service:
        both_workers_answer(service.url)
        responses = burst(service.url, [{"tg_user_id": 5, "prompt": f"a river at night {n}"} for n in range(20)])
        assert Counter(r.status_code for r in responses) == {202: 2, 429: 18}
        waits = refusals(responses, "/problems/user-concurrent-limit")
        # Estimated from the data: a typical (simulated: 30 s) generation minus the oldest's age.
        assert all(25 <= wait <= 30 for wait in waits), waits
    assert rows_for_user(db_url, 5) == 2


def spent(database_url: str) -> Decimal:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return Decimal(conn.execute(select(func.coalesce(func.sum(Video.cost_usd), 0))).scalar_one())
    finally:
        engine.dispose()


def test_the_budget_is_never_overspent_by_concurrent_users(db_url: str, tmp_path) -> None:
    # $10 a day at $4 a video: two videos fit, a third never does, whoever asks and however fast.
    with live_service(db_url, tmp_path, workers=2, sim_seconds=1, cost_per_video_usd=4,
                      daily_budget_usd=10) as service:
        both_workers_answer(service.url)
        responses = burst(service.url, [{"tg_user_id": 100 + n, "prompt": "fireworks"} for n in range(20)])
        assert Counter(r.status_code for r in responses) == {202: 2, 429: 18}
        refusals(responses, "/problems/daily-budget")
        ids = [r.json()["video_id"] for r in responses if r.status_code == 202]

        def ended() -> bool:
            return all(httpx.get(f"{service.url}/videos/{i}", timeout=5).json()["status"] == "ready" for i in ids)

        wait_until(ended, timeout=30, what="both videos ready")
        # Their costs recorded ($8): still no room for a third.
        more = burst(service.url, [{"tg_user_id": 200 + n, "prompt": "fireworks"} for n in range(10)])
        assert Counter(r.status_code for r in more) == {429: 10}
        waits = refusals(more, "/problems/daily-budget")
        assert all(DAY - 60 <= wait <= DAY for wait in waits), waits
    assert spent(db_url) == Decimal(8)
