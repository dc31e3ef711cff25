"""Many simultaneous identical `/create` against real uvicorn: exactly one wins.

Requests are fired together from an async client (up to 200 open connections), against one
service process and against two processes sharing one database.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from service.stores.models import Video
from tests.service.live import live_service

VARIANTS = ["Smart wallets as digital assistants...", "smart wallets as digital assistants",
            "SMART WALLETS  as digital assistants!", "Smart wallets as digital assistants…"]


async def _burst(urls: list[str], n: int, user: int = 777) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        targets = itertools.islice(itertools.cycle(urls), n)
        prompts = itertools.cycle(VARIANTS)
        return await asyncio.gather(*(
            client.post(f"{url}/create", json={"tg_user_id": user, "prompt": next(prompts)}) for url in targets
        ))


def burst(urls: list[str], n: int) -> list[httpx.Response]:
    return asyncio.run(_burst(urls, n))


def rows_for_user(database_url: str, user: int = 777) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(Video).where(Video.tg_user_id == user)).scalar_one()
    finally:
        engine.dispose()


def test_hundred_concurrent_identical_creates_one_process(db_url: str, tmp_path) -> None:
    with live_service(db_url, tmp_path, sim_seconds=30) as service:
        responses = burst([service.url], 120)
        codes = Counter(r.status_code for r in responses)
        assert codes == {202: 1, 409: 119}, codes
        winner = next(r.json() for r in responses if r.status_code == 202)
        assert {r.json()["video_id"] for r in responses if r.status_code == 409} == {winner["video_id"]}
        assert service.stats()["generations_started"] == 1
    assert rows_for_user(db_url) == 1


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_hundred_concurrent_identical_creates_two_processes(backend: str, request, tmp_path) -> None:
    database_url = request.getfixturevalue("pg_url" if backend == "postgres" else "sqlite_url")
    with (
        live_service(database_url, tmp_path, sim_seconds=30) as first,
        live_service(database_url, tmp_path, sim_seconds=30) as second,
    ):
        assert first.process.pid != second.process.pid
        responses = burst([first.url, second.url], 160)
        codes = Counter(r.status_code for r in responses)
        assert codes == {202: 1, 409: 159}, codes
        started = first.stats()["generations_started"] + second.stats()["generations_started"]
        assert started == 1
    assert rows_for_user(database_url) == 1


def test_the_same_burst_beats_the_write_ups_pending_row(sqlite_url: str, tmp_path) -> None:
    """The control: under the write-up's check-then-insert, one round trip of latency is
    enough for a burst to start several generations; the test above would catch that."""
    with live_service(sqlite_url, tmp_path, sim_seconds=30, policy="pending", db_latency_ms=20) as service:
        responses = burst([service.url], 40)
        accepted = sum(r.status_code == 202 for r in responses)
        assert accepted > 1
        assert service.stats()["submitted"] == accepted
