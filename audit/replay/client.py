"""The replay's HTTP side: send each scheduled request on time, then wait for the service to drain.

One asyncio task per request sleeps until its scheduled time on the loop's monotonic clock
and sends; the lag (how late it left versus its schedule) is measured there. After the last
answer, ``/stats`` is polled until no generation is in flight, with a deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pandas as pd

from audit.frames import AuditError

__all__ = ["auth_headers", "run_sync", "send_schedule"]

# The first send leaves this long after the tasks are created, so creating them (and opening
# the client) does not count as lag against the first request.
START_LEAD_SECONDS = 0.1
# One /create does a few statements; even with a replayed Supabase latency of 100 ms per
# statement and a burst queueing on SQLite's write lock it answers in seconds.
REQUEST_TIMEOUT_SECONDS = 60.0
# After the last scheduled generation should have finished: room for queueing and for the
# statements each generation still makes (the final save), before we call it hung.
DRAIN_MARGIN_SECONDS = 30.0
STATS_POLL_SECONDS = 0.05
# Connections opened before the first send, so a burst goes out on open connections instead
# of waiting for TCP handshakes (which on a loaded machine can take longer than the database
# round trip a burst is about). More simultaneous requests than this are rare in a log.
WARM_CONNECTIONS = 50


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The headers that authenticate the replay to a service that requires an API key."""
    return {} if not api_key else {"Authorization": f"Bearer {api_key}"}


def run_sync(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run `coroutine` to completion, also from inside a running loop (a notebook's kernel)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def send_schedule(
    url: str,
    schedule: pd.DataFrame,
    last_finish: float,
    *,
    api_key: str | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[list[dict], dict]:
    # One connection per request: a burst must reach the service at once, not queue in
    # the client's pool.
    limits = httpx.Limits(max_connections=max(len(schedule), 10), max_keepalive_connections=len(schedule))
    # The key goes on the client, so every request (warm-up, /create, /stats) carries it.
    async with httpx.AsyncClient(
        base_url=url, limits=limits, timeout=REQUEST_TIMEOUT_SECONDS, headers=auth_headers(api_key)
    ) as client:
        # /stats reads counters, not the database: warming up costs no replayed latency.
        warm = min(len(schedule), WARM_CONNECTIONS)
        await asyncio.gather(*(client.get("/stats") for _ in range(warm)))
        loop = asyncio.get_running_loop()
        start = loop.time() + START_LEAD_SECONDS
        sent = 0

        def one_sent(offset: float) -> None:
            nonlocal sent
            sent += 1
            if progress is not None:
                progress(sent, offset)

        tasks = [asyncio.create_task(_send(client, row, start + row["offset_seconds"], one_sent))
                 for row in schedule.to_dict("records")]
        outcomes = await asyncio.gather(*tasks)
        remaining = start + last_finish - loop.time()
        stats = await _drained_stats(client, deadline=loop.time() + max(0.0, remaining) + DRAIN_MARGIN_SECONDS)
    return outcomes, stats


async def _send(
    client: httpx.AsyncClient, row: dict[str, Any], due: float, on_sent: Callable[[float], None]
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, due - loop.time()))  # scheduling: wait for the request's time
    sent = loop.time()
    on_sent(row["offset_seconds"])
    body = {"tg_user_id": int(row["tg_user_id"]), "prompt": row["prompt"]}
    headers = {"X-Sim-Seconds": f"{row['sim_seconds']:.6f}", "X-Sim-Fail": "1" if row["sim_fail"] else "0"}
    outcome: dict[str, Any] = {"request_id": row["request_id"], "lag_ms": (sent - due) * 1000,
                               "status_code": pd.NA, "replay_video_id": pd.NA, "error": None}
    try:
        response = await client.post("/create", json=body, headers=headers)
    except httpx.HTTPError as exc:
        outcome.update(outcome="error", error=f"{type(exc).__name__}: {exc}")
    else:
        answer = _json(response)
        outcome.update(status_code=response.status_code, replay_video_id=answer.get("video_id"),
                       outcome={202: "accepted", 409: "blocked"}.get(response.status_code, "error"))
        if outcome["outcome"] == "error":
            outcome["error"] = str(answer.get("detail", response.text))[:200]
    outcome["response_ms"] = (loop.time() - sent) * 1000
    return outcome


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


async def _drained_stats(client: httpx.AsyncClient, *, deadline: float) -> dict[str, Any]:
    """Poll /stats until no generation is in flight; the final counters."""
    loop = asyncio.get_running_loop()
    while True:
        stats = (await client.get("/stats")).raise_for_status().json()
        if stats.get("in_flight", 0) == 0:
            return stats
        if loop.time() > deadline:
            raise AuditError(f"generations still in flight after the replay's deadline: {stats}")
        await asyncio.sleep(STATS_POLL_SECONDS)
