"""How fast does `/create` answer, on SQLite and PostgreSQL, next to `/healthz`?

Starts a real service per backend (PostgreSQL from the pgserver wheel), then, with 32
concurrent connections, times N requests of each kind:
- `healthz`:   GET /healthz, one `SELECT 1` each: the baseline of HTTP + one round trip;
- `duplicate`: POST /create of a prompt already claimed: the losing upsert plus the holder read;
- `new`:       POST /create of distinct prompts: each wins a claim (upsert + insert + update);
- `new+key`:   the same with a distinct Idempotency-Key each: + the key's begin and finish;
- `replay`:    one Idempotency-Key and body sent again and again: one begin, the stored answer.
Prints requests/s and each kind's ratio to the baseline measured in the same run.

    .venv/bin/python bench/create_throughput.py [--requests 2000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
import pgserver

from service.process import serve_subprocess
from service.settings import normalize_database_url


async def _timed(client: httpx.AsyncClient, requests: list, concurrency: int) -> float:
    queue = iter(requests)

    async def worker() -> None:
        for method, url, body, *headers in queue:
            response = await client.request(method, url, json=body, headers=headers[0] if headers else None)
            assert response.status_code in (200, 202, 409), response.text

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(requests) / (time.perf_counter() - start)


async def measure(url: str, n: int, concurrency: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        await client.post(f"{url}/create", json={"tg_user_id": 1, "prompt": "already claimed"})
        return {
            "healthz": await _timed(client, [("GET", f"{url}/healthz", None)] * n, concurrency),
            "duplicate": await _timed(
                client, [("POST", f"{url}/create", {"tg_user_id": 1, "prompt": "Already claimed!"})] * n, concurrency
            ),
            "new": await _timed(
                client, [("POST", f"{url}/create", {"tg_user_id": 2, "prompt": f"prompt {i}"}) for i in range(n)],
                concurrency,
            ),
            "new+key": await _timed(
                client, [("POST", f"{url}/create", {"tg_user_id": 3, "prompt": f"prompt {i}"},
                          {"Idempotency-Key": f"bench-{i}"}) for i in range(n)],
                concurrency,
            ),
            "replay": await _timed(
                client, [("POST", f"{url}/create", {"tg_user_id": 3, "prompt": "prompt 0"},
                          {"Idempotency-Key": "bench-0"})] * n,
                concurrency,
            ),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    # A backlog large enough that `new` measures claims, not 429s.
    env = {"CLAIMFIRST_SIM_SECONDS": "3600", "CLAIMFIRST_MAX_CONCURRENT_GENERATIONS": "4",
           "CLAIMFIRST_MAX_QUEUED_GENERATIONS": "100000"}
    with tempfile.TemporaryDirectory() as tmp:
        server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        backends = {
            "sqlite": f"sqlite:///{tmp}/bench.db",
            "postgresql": normalize_database_url(server.get_uri()),
        }
        print(f"{args.requests} requests per kind, {args.concurrency} concurrent connections")
        print(f"{'backend':<11} {'kind':<10} {'req/s':>8} {'vs healthz':>11}")
        for name, database_url in backends.items():
            with serve_subprocess({**env, "DATABASE_URL": database_url}, Path(tmp)) as service:
                rates = asyncio.run(measure(service.url, args.requests, args.concurrency))
            for kind, rate in rates.items():
                print(f"{name:<11} {kind:<10} {rate:>8.0f} {rate / rates['healthz']:>10.2f}x")
        server.cleanup()


if __name__ == "__main__":
    main()
