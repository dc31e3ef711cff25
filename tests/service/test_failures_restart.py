"""PostgreSQL restarted while `/create` requests are in flight.

Eight clients keep sending `/create` to a real service process, each prompt four times in a
row (new claims and their duplicates, some racing each other), while its PostgreSQL is
stopped (`pg_ctl stop`: every session is terminated, mid-statement or not) and started again
on the same data. Whatever a request was doing at that moment, it is answered 202, 409 or 503
with Retry-After, never a 500 or a dropped connection; once the database is back the service
answers again without a restart. Nothing is paid twice: each prompt was answered 202 at most
once, every 202 started exactly one generation and ended `ready`, and a claim that committed
as its connection died (its client heard 503) started nothing.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from service.stores.models import Video
from tests.service.failures import OwnPostgres, count, own_postgres
from tests.service.live import live_service, wait_until

REPEATS = 4  # requests per prompt
CLIENTS = 8


@pytest.fixture
def pg() -> Iterator[OwnPostgres]:
    with own_postgres() as server:
        yield server


class Clients:
    """`CLIENTS` concurrent clients on their own thread and loop, recording every answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[str, int | str, str | None]] = []  # prompt, status or error, Retry-After
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Clients:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def seen(self, status: int) -> int:
        return sum(answer[1] == status for answer in self.answers)

    async def _run(self) -> None:
        sent = iter(range(10**9))
        async with httpx.AsyncClient(timeout=30) as client:
            async def one_client() -> None:
                while not self._stop.is_set():
                    prompt = f"restart prompt {next(sent) // REPEATS}"
                    try:
                        response = await client.post(f"{self.url}/create", json={"tg_user_id": 9, "prompt": prompt})
                    except httpx.HTTPError as exc:  # a dropped connection: recorded, and it fails the test
                        self.answers.append((prompt, type(exc).__name__, None))
                        continue
                    self.answers.append((prompt, response.status_code, response.headers.get("retry-after")))

            await asyncio.gather(*(one_client() for _ in range(CLIENTS)))


def test_requests_in_flight_when_postgresql_restarts_get_an_answer_and_nothing_is_paid_twice(
    pg: OwnPostgres, tmp_path
) -> None:
    # No backlog limit: generations that finish during the outage wait to record their result,
    # and the 429s a full backlog answers (tests/service/test_api.py) would crowd out the claims.
    with live_service(pg.url, tmp_path, lease_seconds=30, sim_seconds=0.5, request_timeout_seconds=2,
                      max_queued_generations=100_000) as service:
        with Clients(service.url) as clients:
            wait_until(lambda: len(clients.answers) >= 200, timeout=30, what="requests before the restart")
            pg.stop()
            wait_until(lambda: clients.seen(503) >= CLIENTS, timeout=30, what="503s while the database is down")
            pg.start()
            restarted = len(clients.answers)
            # Back without restarting the service: new claims and duplicates are answered again.
            wait_until(lambda: sum(status in (202, 409) for _, status, _ in clients.answers[restarted:]) >= 200,
                       timeout=30, what=lambda: f"answers after the restart: {Counter(a[1] for a in clients.answers[restarted:])}")
        answers = clients.answers
        wait_until(lambda: service.stats()["in_flight"] == 0, timeout=30, what="generations to finish")
        stats = service.stats()

    statuses = Counter(status for _, status, _ in answers)
    assert set(statuses) <= {202, 409, 503}, statuses
    assert all(retry is not None and int(retry) > 0 for _, status, retry in answers if status == 503)
    assert statuses[409] > 0  # the 503s during the outage were awaited above

    accepted = Counter(prompt for prompt, status, _ in answers if status == 202)
    assert max(accepted.values()) == 1, accepted.most_common(3)
    assert stats["generations_started"] == stats["ready"] == statuses[202], (stats, statuses)
    assert (stats["failed"], stats["lost"], stats["unrecorded"]) == (0, 0, 0), stats
    assert count(pg.url, Video, status="ready") == statuses[202]
    # Every other video row is a claim that committed as its connection was cut: nobody
    # generates it, and its lease (30 s) keeps it from being taken over during the test.
    unanswered = count(pg.url, Video) - statuses[202]
    assert count(pg.url, Video, status="generating") == unanswered
    print(dict(statuses), "committed but unanswered:", unanswered)
