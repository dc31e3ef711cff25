"""Idempotency-Key on `POST /create` (IETF draft "The Idempotency-Key HTTP Header Field").

The prompt key already stops a second generation; the header gives a client that retries
after a timeout its *own* answer back instead of "duplicate". The flow, after Powertools'
idempotency handler, knows no SQL (the store's primitives are `begin_key`, `finish_key`,
`release_key`; see `service.stores.idempotency`):

    begin ──new──────▶ admit ──202 / 409 duplicate──▶ finish (store the answer) ──▶ answer
      │                  └──anything else (429, 503, 422 from the database)──▶ release ──▶ error
      ├──another body──▶ 422 key reused
      ├──in progress───▶ 409 in progress (retry later)
      └──finished──────▶ the stored answer again, `Idempotent-Replayed: true`, no new work

What is kept and replayed: an answer that reports a decision on the claim (202: this request
won it; 409: an equivalent video holds it). Stripe keeps every answer of a request that began
to execute; here only those two began anything. A 429 or a 503 means nothing ran (nothing was
claimed, or the database did not answer), so replaying it would keep the client from ever
getting through: the key is released and the retry runs afresh.

Scope: a key belongs to its caller, the API key that sent it (a short SHA-256 of the key,
never the key) or, anonymous, the `tg_user_id`; it is kept for the duplicate window.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.errors import (
    BadIdempotencyKey, ClaimfirstError, DuplicateRequest, IdempotencyKeyInProgress, IdempotencyKeyReused,
)
from service.http.errors import error_content
from service.http.schemas import MAX_IDEMPOTENCY_KEY_CHARS

if TYPE_CHECKING:
    from service.runtime import Runtime

__all__ = ["KeyedRequest", "parse_key", "caller_scope", "fingerprint", "answer_once", "REPLAYED_HEADER",
           "MAX_KEY_CHARS", "in_progress_timeout"]

log = logging.getLogger("claimfirst.idempotency")

REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_CHARS = MAX_IDEMPOTENCY_KEY_CHARS
# A live request holds its key "in progress" for at most: the begin, the admission (one
# bounded call, or two when the backlog is full: the holder read, then the answer), and the
# finish, each bounded by request_timeout_seconds. A row still in progress after four bounds
# belongs to a process that died mid-request: it is taken over rather than answer 409 for the
# whole window. Taking over a live-but-slow holder's key cannot pay twice: the claim decides.
IN_PROGRESS_BOUNDS = 4
# Enough of the API key's SHA-256 to tell a deployment's few keys apart, too little to matter
# if the table leaks (it is a hash of a secret of >= 16 random characters anyway).
SCOPE_HASH_CHARS = 16

Work = Callable[[], Awaitable[BaseModel]]


@dataclass(frozen=True)
class KeyedRequest:
    scope: str
    key: str
    fingerprint: str


def parse_key(header: str) -> str:
    """The key in an Idempotency-Key header value, or BadIdempotencyKey (400).

    The draft's form is a Structured Field string, `"…"`; the bare value Stripe's clients send
    is accepted too. Either way 1..255 printable ASCII characters (headers arrive as latin-1)."""
    if not 1 <= len(header) <= MAX_KEY_CHARS or not all(" " <= char <= "~" for char in header):
        raise BadIdempotencyKey(
            f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable ASCII characters (got {len(header)} characters"
            f"{'' if header.isascii() and header.isprintable() else ', some not printable ASCII'})."
        )
    key = header[1:-1] if len(header) >= 2 and header[0] == header[-1] == '"' else header
    if not key.strip():
        raise BadIdempotencyKey("Idempotency-Key is empty.")
    return key


def caller_scope(api_key: str | None, tg_user_id: int) -> str:
    """Whose key it is: the API key's short hash when keys are set, else the Telegram user."""
    if api_key is not None:
        return "key:" + hashlib.sha256(api_key.encode("latin-1")).hexdigest()[:SCOPE_HASH_CHARS]
    return f"user:{tg_user_id}"


def fingerprint(body: dict[str, Any]) -> str:
    """SHA-256 of the request as parsed: key order and JSON spacing do not make another request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def in_progress_timeout(request_timeout_seconds: float) -> timedelta:
    return timedelta(seconds=IN_PROGRESS_BOUNDS * request_timeout_seconds)


def _replay(status_code: int, response_body: str) -> JSONResponse:
    content = json.loads(response_body)
    # A kept 409 is a problem (service.errors): replayed with the media type it first had. A row
    # kept before the 409 became one has no `type` and goes out as the plain JSON it was.
    problem = status_code >= 400 and isinstance(content, dict) and "type" in content
    return JSONResponse(content, status_code=status_code, headers={REPLAYED_HEADER: "true"},
                        media_type="application/problem+json" if problem else None)


async def answer_once(runtime: Runtime, keyed: KeyedRequest, work: Work, *, status_code: int = 202) -> JSONResponse:
    """Run `work` (the route's answer) at most once per key; replay its stored answer otherwise."""
    store, settings = runtime.store, runtime.settings
    begun = await runtime.bounded(store.begin_key(
        keyed.scope, keyed.key, keyed.fingerprint, timedelta(hours=settings.duplicate_window_hours),
        in_progress_timeout(settings.request_timeout_seconds)))
    if begun.token is None:
        if begun.fingerprint is not None and begun.fingerprint != keyed.fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was first sent with another request body; use a new key for a new request.")
        if begun.status_code is None or begun.response_body is None:
            raise IdempotencyKeyInProgress(
                "The first request with this Idempotency-Key is still being admitted; retry in a moment.")
        return _replay(begun.status_code, begun.response_body)
    try:
        content = (await work()).model_dump(mode="json")
    except DuplicateRequest as exc:
        await _settle(store.finish_key(keyed.scope, keyed.key, begun.token, exc.status_code,
                                       json.dumps(error_content(exc))), runtime)
        raise
    except BaseException:
        await _settle(store.release_key(keyed.scope, keyed.key, begun.token), runtime)
        raise
    await _settle(store.finish_key(keyed.scope, keyed.key, begun.token, status_code, json.dumps(content)), runtime)
    return JSONResponse(content, status_code=status_code)


async def _settle(write: Awaitable[object], runtime: Runtime) -> None:
    """Finish or release the key; if the database does not answer, the answer still goes out
    and the row stays in progress until `in_progress_timeout` frees it (the claim still
    decides a retry: a second generation cannot start)."""
    try:
        await runtime.bounded(write)
    except ClaimfirstError as exc:  # StorageUnavailable, or a value the database refused
        log.warning("Idempotency-Key not settled (%s); it frees itself after %s", exc,
                    in_progress_timeout(runtime.settings.request_timeout_seconds))
