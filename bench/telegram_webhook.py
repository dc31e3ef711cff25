"""How fast is the Telegram webhook next to `POST /create`, on SQLite and PostgreSQL?

Starts a real service per backend with the bot enabled, its Bot API the loopback stand-in of
the tests (tests/stand_ins/telegram.py), then, with 32 concurrent connections, times N of each:
- `healthz`:     GET /healthz, one `SELECT 1`: the baseline of HTTP + one round trip;
- `create`:      POST /create of distinct prompts: each wins a claim;
- `webhook`:     a delivery of `/create <distinct prompt>`: the delivery recorded, then the same
                 claim, then a reply handed to a background task (Telegram's 200 comes first);
- `redelivery`:  the same update delivered again: one conflicting INSERT, nothing else.
Prints requests/s and each kind's ratio to the baseline measured in the same run, and checks
that every delivered update was answered exactly once.

    .venv/bin/python bench/telegram_webhook.py [--requests 1000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pgserver

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the stand-in lives with the tests

from service.process import serve_subprocess  # noqa: E402
from service.settings import normalize_database_url  # noqa: E402
from service.telegram.webhook import SECRET_HEADER, WEBHOOK_PATH  # noqa: E402
from tests.stand_ins.telegram import DEFAULT_SECRET, StandInTelegram, message_update  # noqa: E402


async def _timed(client: httpx.AsyncClient, requests: list, concurrency: int) -> float:
    queue = iter(requests)

    async def worker() -> None:
        for method, url, body in queue:
            response = await client.request(method, url, json=body, headers={SECRET_HEADER: DEFAULT_SECRET})
            assert response.status_code in (200, 202), response.text

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(requests) / (time.perf_counter() - start)


async def measure(url: str, n: int, concurrency: int) -> dict[str, float]:
    hook = f"{url}{WEBHOOK_PATH}"
    updates = [message_update(f"/create webhook prompt {i}", user_id=3) for i in range(n)]
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency), timeout=60) as client:
        return {
            "healthz": await _timed(client, [("GET", f"{url}/healthz", None)] * n, concurrency),
            "create": await _timed(client, [("POST", f"{url}/create", {"tg_user_id": 2, "prompt": f"prompt {i}"})
                                            for i in range(n)], concurrency),
            "webhook": await _timed(client, [("POST", hook, u) for u in updates], concurrency),
            "redelivery": await _timed(client, [("POST", hook, u) for u in updates], concurrency),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, StandInTelegram() as telegram:
        env = {"CLAIMFIRST_SIM_SECONDS": "3600", "CLAIMFIRST_MAX_QUEUED_GENERATIONS": str(4 * args.requests),
               "TELEGRAM_BOT_TOKEN": telegram.token, "TELEGRAM_WEBHOOK_SECRET": DEFAULT_SECRET,
               "TELEGRAM_API_BASE": telegram.base_url}
        server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        backends = {"sqlite": f"sqlite:///{tmp}/bench.db", "postgresql": normalize_database_url(server.get_uri())}
        print(f"{args.requests} requests per kind, {args.concurrency} concurrent connections")
        print(f"{'backend':<11} {'kind':<11} {'req/s':>8} {'vs healthz':>11}")
        for name, database_url in backends.items():
            before = len(telegram.sent("sendMessage"))
            with serve_subprocess({**env, "DATABASE_URL": database_url}, Path(tmp)) as service:
                rates = asyncio.run(measure(service.url, args.requests, args.concurrency))
                telegram.wait_for("sendMessage", before + args.requests, timeout=120)
            # Counted after the stop, so a late second reply would be seen; the stop's own
            # notices ("Sorry, … service stopped") are the cancelled generations', not replies.
            texts = [m["text"] for m in telegram.sent("sendMessage")[before:]]
            started = sum(t.startswith("Generating video") for t in texts)
            duplicates = sum(t.startswith("You already asked") for t in texts)
            for kind, rate in rates.items():
                print(f"{name:<11} {kind:<11} {rate:>8.0f} {rate / rates['healthz']:>10.2f}x")
            print(f"{name:<11} webhook/create {rates['webhook'] / rates['create']:.2f}; {args.requests} updates"
                  f" delivered twice: {started} 'started' replies, {duplicates} 'duplicate' replies")
        server.cleanup()


if __name__ == "__main__":
    main()
