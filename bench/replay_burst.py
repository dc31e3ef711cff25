"""How fast does the claim turn away a burst of duplicates, next to `/healthz`?

The replay's burst scenario as a benchmark: a service started exactly as `audit.replay`
starts it (`claim`, SQLite in a temporary directory, simulation hints on), one request that
wins the claim and keeps generating, then rounds of `--burst` identical `POST /create` sent at
once, one connection each, as a replayed burst arrives. Every one must be a 409. The baseline
is the same rounds of `GET /healthz` (HTTP plus one `SELECT 1`), measured in the same run, so
the ratio does not depend on the machine. Not part of the test suite.

    .venv/bin/python bench/replay_burst.py [--burst 50] [--rounds 20] [--db-latency-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx

from audit.replay.service import ServiceConfig, started_service

PROMPT = "Smart wallets as digital assistants..."


async def _rounds(send: Callable[[], Awaitable[httpx.Response]], *, burst: int, rounds: int, expect: int) -> float:
    """Requests per second over `rounds` bursts of `burst` concurrent requests."""
    elapsed = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        responses = await asyncio.gather(*(send() for _ in range(burst)))
        elapsed += time.perf_counter() - started
        codes = {r.status_code for r in responses}
        assert codes == {expect}, f"expected only {expect}, got {codes}"
    return burst * rounds / elapsed


async def measure(url: str, *, burst: int, rounds: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=burst, max_keepalive_connections=burst)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        # The winner: generating for an hour, so every later request is a duplicate of it.
        first = await client.post("/create", json={"tg_user_id": 1, "prompt": PROMPT}, headers={"X-Sim-Seconds": "3600"})
        assert first.status_code == 202, first.text

        def healthz() -> Awaitable[httpx.Response]:
            return client.get("/healthz")

        def duplicate() -> Awaitable[httpx.Response]:
            return client.post("/create", json={"tg_user_id": 1, "prompt": PROMPT})

        await _rounds(healthz, burst=burst, rounds=1, expect=200)  # open the connections
        return {
            "healthz": await _rounds(healthz, burst=burst, rounds=rounds, expect=200),
            "duplicate": await _rounds(duplicate, burst=burst, rounds=rounds, expect=409),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=50, help="identical requests sent at once (default 50)")
    parser.add_argument("--rounds", type=int, default=20, help="bursts per kind (default 20)")
    parser.add_argument("--db-latency-ms", type=float, default=0.0, help="delay per SQL statement (default 0)")
    args = parser.parse_args()
    config = ServiceConfig(policy="claim", db_latency_ms=args.db_latency_ms, lease_seconds=3600, max_concurrent=4)
    with started_service(config) as url:
        rates = asyncio.run(measure(url, burst=args.burst, rounds=args.rounds))
    print(f"claim on SQLite, bursts of {args.burst} x {args.rounds} rounds, db latency {args.db_latency_ms:g} ms")
    print(f"{'kind':<10} {'req/s':>8} {'vs healthz':>11}")
    for kind, rate in rates.items():
        print(f"{kind:<10} {rate:>8.0f} {rate / rates['healthz']:>10.2f}x")


if __name__ == "__main__":
    main()
