"""The deliverer: a background task in every worker that sends due callbacks from the outbox.

    every poll (or at once, when this process just recorded an outcome):
        take up to BATCH due rows under a lease of our own   (service.stores.outbox)
        for each, concurrently: check the address, POST the signed event, one bounded attempt
        finish it: delivered, or due again after a backoff, or given up

Everything a retry needs is in the row, on the database's clock: a restart, a crash or
another worker picks up where this one stopped. At least once: a worker that dies after the
receiver answered and before the finish is written leaves the lease to expire, and the row is
sent again with the same `webhook-id` (the receiver dedupes on it). In the normal case each
event is sent once: one deliverer holds a row at a time.

Signing: Standard Webhooks (https://www.standardwebhooks.com), by its reference package:
`webhook-signature: v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">`.
The body is the same bytes on every retry; the timestamp is the attempt's, so a receiver's
five-minute tolerance holds for retries hours later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from standardwebhooks import Webhook

from service.callbacks.urls import resolve_target
from service.deadlines import within
from service.errors import ClaimfirstError, InvalidRequest
from service.metrics import Metrics
from service.settings import Settings
from service.stores.base import Store
from service.stores.outbox import READY_EVENT, DueCallback

__all__ = ["Deliverer", "payload", "retry_delay", "BATCH"]

log = logging.getLogger("claimfirst.callbacks")

# Rows one deliverer takes per round, and so sends at once: enough to drain a burst of
# outcomes in a few rounds, few enough that one slow receiver holds few of them back.
BATCH = 16
# A lease covers the attempt and the write that finishes it, with a margin; one that runs
# out (a frozen or killed worker) hands the row to another deliverer.
LEASE_MARGIN_SECONDS = 5.0
USER_AGENT = "claimfirst-callbacks/1"


def payload(due: DueCallback) -> bytes:
    """The event's body, the same bytes on every attempt (the signature covers them)."""
    status = "ready" if due.event == READY_EVENT else "failed"
    body = {
        "type": due.event,
        "timestamp": due.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": {"video_id": due.video_id, "status": status, "video_url": due.video_url, "error": due.error,
                 "tg_user_id": due.tg_user_id},
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def retry_delay(attempts: int, first: float, cap: float) -> timedelta:
    """After `attempts` tries: first, 2x first, 4x first, … capped, each drawn from its upper
    half (jitter: receivers coming back are not hit by every worker's retries at once)."""
    ceiling = min(cap, first * 2 ** min(max(attempts - 1, 0), 60))
    return timedelta(seconds=ceiling * random.uniform(0.5, 1.0))


class Deliverer:
    def __init__(self, store: Store, settings: Settings, metrics: Metrics | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self._webhook = Webhook(settings.callback_secret.get_secret_value()) if settings.callback_secret else None
        self._transport = transport
        self._timeout = settings.callback_timeout_seconds
        self._lease = timedelta(seconds=self._timeout + 2 * settings.request_timeout_seconds + LEASE_MARGIN_SECONDS)
        self._give_up = timedelta(hours=settings.callback_give_up_hours)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def enabled(self) -> bool:
        return self._webhook is not None

    def start(self) -> None:
        if not self.enabled:
            return
        # Not the environment's proxy (it would connect to the name, not the address checked),
        # no redirects (a 3xx is the receiver's error, not a new destination), and no kept
        # connections: one to a checked address must not serve another name that resolves there.
        self._client = httpx.AsyncClient(
            transport=self._transport, trust_env=False, follow_redirects=False, timeout=self._timeout,
            limits=httpx.Limits(max_keepalive_connections=0), headers={"user-agent": USER_AGENT})
        self._task = asyncio.get_running_loop().create_task(self._run(), name="callbacks")

    async def stop(self) -> None:
        """Stop taking rows; a delivery in flight is cancelled and its lease left to expire
        (sent again later: at least once)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def nudge(self) -> None:
        """An outcome was just recorded here: look for due rows now, not at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                taken = await self.deliver_once()
            except (ClaimfirstError, TimeoutError) as exc:
                log.warning("callbacks: could not take due rows (%s)", str(exc) or "timed out")
                taken = 0
            except Exception:  # a bug here must not end deliveries for the process's lifetime
                log.exception("callbacks: delivery round failed")
                taken = 0
            if taken >= BATCH:
                continue  # more may be due
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.callback_poll_seconds)
            except TimeoutError:
                pass
            self._wake.clear()

    async def deliver_once(self) -> int:
        """One round: take what is due, send it, finish it; how many rows were taken."""
        token = uuid.uuid4().hex
        due = await within(self.store.take_callbacks(token, self._lease, BATCH), self.settings.request_timeout_seconds)
        if due:
            await asyncio.gather(*(self._deliver(row, token) for row in due))
        return len(due)

    async def _deliver(self, due: DueCallback, token: str) -> None:
        error = await self._attempt(due)
        delay = retry_delay(due.attempts, self.settings.callback_retry_first_seconds,
                            self.settings.callback_retry_max_seconds)
        try:
            state = await within(self.store.finish_callback(
                due, token, ok=error is None, error=error, delay=delay, give_up=self._give_up),
                self.settings.request_timeout_seconds)
        except (ClaimfirstError, TimeoutError) as exc:
            # The lease runs out and the row is sent again: at least once.
            log.warning("callback %s (video %s): result not recorded (%s)", due.delivery_id, due.video_id,
                        str(exc) or "timed out")
            return
        result = {"delivered": "delivered", "pending": "retrying", "failed": "given_up"}.get(state or "", "replaced")
        if error is not None:
            log.warning("callback %s (video %s) attempt %d: %s; %s", due.delivery_id, due.video_id, due.attempts,
                        error, "given up" if result == "given_up" else f"retry in {delay.total_seconds():.0f} s")
        if self.metrics is not None:
            self.metrics.callback_delivered(result)

    async def _attempt(self, due: DueCallback) -> str | None:
        """One POST, bounded as a whole; None when the receiver answered 2xx, else why not."""
        assert self._client is not None and self._webhook is not None
        body = payload(due)
        try:
            async with asyncio.timeout(self._timeout):
                target = await resolve_target(due.url, self.settings)
                now = datetime.now(UTC)
                headers = {
                    "content-type": "application/json", "host": target.host,
                    "webhook-id": due.delivery_id, "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": self._webhook.sign(due.delivery_id, now, body),
                }
                response = await self._client.post(target.url, content=body, headers=headers,
                                                   extensions={"sni_hostname": target.host})
        except InvalidRequest as exc:
            return f"refused: {exc}"
        except (TimeoutError, httpx.TimeoutException):
            return f"no answer within {self._timeout:g} s"
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {str(exc) or 'connection failed'}"[:500]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"
