"""Many simultaneous retries with one Idempotency-Key against real uvicorn: one admission."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from tests.service.live import live_service
from tests.service.test_concurrency import rows_for_user

BODY = {"tg_user_id": 777, "prompt": "One key, many retries"}


async def _same_key_burst(url: str, n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        return await asyncio.gather(*(
            client.post(f"{url}/create", json=BODY, headers={"Idempotency-Key": "burst-1"}) for _ in range(n)))


def test_a_burst_with_one_key_admits_once_and_the_rest_wait_or_replay(db_url: str, tmp_path) -> None:
    with live_service(db_url, tmp_path, sim_seconds=30) as service:
        responses = asyncio.run(_same_key_burst(service.url, 80))
        first = [r for r in responses if r.status_code == 202 and "idempotent-replayed" not in r.headers]
        assert len(first) == 1, Counter(r.status_code for r in responses)
        for response in responses:
            if response.status_code == 202 and response is not first[0]:
                assert response.headers["idempotent-replayed"] == "true" and response.content == first[0].content
            elif response.status_code == 409:
                assert response.json()["type"] == "/problems/idempotency-key-in-progress"
            else:
                assert response is first[0], (response.status_code, response.text)
        assert service.stats()["generations_started"] == 1
        late = httpx.post(f"{service.url}/create", json=BODY, headers={"Idempotency-Key": "burst-1"}, timeout=10)
        assert late.headers["idempotent-replayed"] == "true" and late.content == first[0].content
    assert rows_for_user(db_url) == 1
