"""`BotApi`: the Bot API over one shared httpx client.

    POST {TELEGRAM_API_BASE}/bot<token>/<method>   JSON body   →   {"ok": true, "result": …}

Retries. A request that certainly did nothing is tried again, a few times with capped
exponential backoff: the connection never opened (connect error or timeout, no free pooled
connection), flood control (429, after its `parameters.retry_after`), or a 5xx from Telegram's
front end. A request that may have been carried out (a read timeout, a dropped connection) is
not: sendMessage has no idempotency key, and the brief of this bot is one reply per request,
so a lost answer is reported instead of risking the message twice. Any other error (400, 403
"bot was blocked by the user", 401 bad token) is final at once.

At most `MAX_CONCURRENT_CALLS` calls are in flight; the rest wait for a slot (a burst of a
thousand replies is sent, at the pace Telegram takes it, rather than timed out in the pool).

Secrets. The token is part of every URL. It never appears in an error this module raises, and
httpx's own INFO line ("HTTP Request: POST https://…/bot<token>/sendMessage") is redacted by a
filter on the `httpx` logger, since `python -m service` logs at INFO.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from service.telegram.api import ApiAnswer

__all__ = ["BotApi", "RetryPolicy", "TelegramApiError", "redact_token"]

log = logging.getLogger("claimfirst.telegram")

# One exchange, not a generation: the Bot API answers in well under a second; sendVideo by URL
# makes Telegram fetch the file first, which for a 20 MB video can take several seconds.
REQUEST_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 5.0
# Bot API calls in flight at once, per process. Telegram itself takes about 30 messages a
# second per bot, so more parallel calls buy nothing; past this a burst of replies waits its
# turn here instead of timing out waiting for one of httpx's pooled connections.
MAX_CONCURRENT_CALLS = 16
# Transport failures after which the request certainly never reached Telegram.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_TOKEN_IN_URL = re.compile(r"/bot[0-9]+:[A-Za-z0-9_-]+")


def redact_token(text: str) -> str:
    return _TOKEN_IN_URL.sub("/bot<token>", text)


class _RedactToken(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/bot" in message:
            record.msg, record.args = redact_token(message), None
        return True


_REDACT = _RedactToken()


class TelegramApiError(Exception):
    """A Bot API call that did not succeed; the text is Telegram's description (never the URL)."""

    def __init__(self, method: str, description: str, *, error_code: int | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(f"Telegram {method}: {description}")
        self.method = method
        self.description = description
        self.error_code = error_code
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    # Four tries with backoff 0.5, 1, 2 s: a blip of a few seconds is ridden out; past that
    # the reply is logged as lost rather than hold a task for minutes.
    attempts: int = 4
    backoff_base_seconds: float = 0.5
    backoff_cap_seconds: float = 4.0
    # Flood control asks for seconds (1 message per second per chat, 30 per second overall);
    # a longer wait is capped so a reply never sits behind one answer for minutes.
    retry_after_cap_seconds: float = 30.0

    def delay(self, attempt: int, retry_after: int | None) -> float:
        if retry_after is not None:
            return min(float(retry_after), self.retry_after_cap_seconds)
        backoff = min(self.backoff_cap_seconds, self.backoff_base_seconds * 2 ** (attempt - 1))
        return backoff * random.uniform(0.5, 1.0)  # jitter: throttled tasks do not return together


class BotApi:
    def __init__(self, token: str, base_url: str, *, retry: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        logging.getLogger("httpx").addFilter(_REDACT)  # a set: adding it twice is adding it once
        self.retry = retry or RetryPolicy()
        self._client = httpx.AsyncClient(
            base_url=f"{base_url.rstrip('/')}/bot{token}/", transport=transport,
            timeout=httpx.Timeout(REQUEST_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS),
            limits=httpx.Limits(max_connections=MAX_CONCURRENT_CALLS, max_keepalive_connections=MAX_CONCURRENT_CALLS),
        )
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_CALLS)

    def __repr__(self) -> str:
        return "BotApi(<token>)"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(self, method: str, payload: dict[str, Any] | None = None) -> Any:
        """The method's `result`, or TelegramApiError once retrying is over or pointless."""
        for attempt in range(1, self.retry.attempts + 1):
            try:
                async with self._slots:
                    response = await self._client.post(method, json=payload or {})
            except _NOT_SENT as exc:
                error = TelegramApiError(method, f"could not reach the Bot API ({type(exc).__name__})")
            except httpx.HTTPError as exc:
                raise TelegramApiError(
                    method, f"no answer from the Bot API ({type(exc).__name__}); it may have been carried out"
                ) from None
            else:
                answer = _answer(response)
                if answer.ok:
                    return answer.result
                retry_after = answer.parameters.retry_after if answer.parameters else None
                error = TelegramApiError(method, answer.description or f"HTTP {response.status_code}",
                                         error_code=answer.error_code or response.status_code, retry_after=retry_after)
                if response.status_code != 429 and response.status_code < 500:
                    raise error
            if attempt == self.retry.attempts:
                raise error
            delay = self.retry.delay(attempt, error.retry_after)
            log.warning("%s; trying again in %.1f s", error, delay)
            await asyncio.sleep(delay)  # backoff between tries, not synchronisation
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _answer(response: httpx.Response) -> ApiAnswer:
    try:
        return ApiAnswer.model_validate_json(response.content)
    except ValidationError:  # a proxy's HTML 502, an empty body
        return ApiAnswer(ok=False, description=f"HTTP {response.status_code} without a Bot API answer")
