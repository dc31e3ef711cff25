"""`from service import ClaimFirst` in a bot's own process (issue 19, part 4)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
import sqlalchemy as sa

from service import ClaimFirst, DuplicateRequest, InvalidRequest, Settings
from service.stores.engine import make_engine
from tests.service.live import ROOT


@pytest.mark.postgres
def test_two_processes_100_identical_creates_make_one_generation(pg_url: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": pg_url, "CLAIMFIRST_SIM_SECONDS": "0.5",
           "CLAIMFIRST_MAX_QUEUED_GENERATIONS": "200"}
    # Migrated once first, as a deploy would: the two processes then race on the claim only.
    subprocess.run([sys.executable, "-m", "service", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True,
                   timeout=120)
    workers = [subprocess.Popen([sys.executable, "-m", "tests.service.embed_worker", "50"], cwd=ROOT,
                                env={**env, "CLAIMFIRST_MIGRATE_ON_START": "false"}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    admitted = [video for result in results for video in result["admitted"]]
    duplicates = [video for result in results for video in result["duplicates"]]
    assert [result["other"] for result in results] == [[], []]
    assert len(admitted) == 1 and len(duplicates) == 99 and set(duplicates) == set(admitted)
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT status FROM videos")).scalars().all() == ["ready"]
    finally:
        engine.dispose()


def test_create_checks_its_input_and_answers_duplicates(sqlite_url: str) -> None:
    asyncio.run(create_checks(sqlite_url))


async def create_checks(sqlite_url: str) -> None:
    async with ClaimFirst(Settings(database_url=sqlite_url, sim_seconds="0.2")) as cf:
        with pytest.raises(InvalidRequest, match="prompt is empty"):
            await cf.create(42, " ...! ")
        with pytest.raises(InvalidRequest, match="tg_user_id"):
            await cf.create(0, "A cat surfing")
        first = await cf.create(42, "A cat surfing")
        with pytest.raises(DuplicateRequest) as dup:
            await cf.create(42, "a CAT  surfing!")
        assert dup.value.existing.id == first.video_id
        assert (await cf.get(first.video_id)).prompt_key == "a cat surfing"
