"""What every store shares: the record types, the key digest, the interface, error mapping.

A store is the only place that speaks SQL at run time. Its interface is narrow: the claim
(one conditional write), the holder read, the worker's fenced writes (renew, record the
provider job, complete, fail), the sweep, reads, the Telegram delivery log, and the three primitives the replay-only
legacy policies need. Every time in a decision is the database's own clock, read inside the
statement that acts on it (see `service.claim`); a store never takes a `now` from Python.

Errors: a database that does not answer (refused, reset, frozen past the deadline, pool
exhausted) is `StorageUnavailable` (503) with a message that names no host, port, index or
table (those go to the log); a value the database cannot store is `InvalidRequest` (422).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, Protocol

from service.claim import ClaimRule, ClaimState, ClaimTicket, Holder, NewVideo
from service.prompt_key import prompt_key
from service.records import GenerationResult, VideoRecord, as_utc
from service.stores.outbox import CallbackState, DueCallback

__all__ = ["Store", "VideoRecord", "KeyBegun", "key_digest", "holder_from_row", "video_record", "as_utc", "SUPERSEDED_ERROR",
           "LATE_ERROR", "ABANDONED_ERROR"]

# What the stores write into `videos.error` for the outcomes they decide themselves.
SUPERSEDED_ERROR = "lease expired; superseded by attempt {attempt} (video {video_id})"
LATE_ERROR = "late result rejected: claim lost"
ABANDONED_ERROR = "abandoned: lease expired, worker gone"


def key_digest(prompt_key: str) -> bytes:
    """The claim's key: SHA-256 of the prompt key, a fixed 32 bytes whatever the prompt's length."""
    return hashlib.sha256(prompt_key.encode("utf-8")).digest()


@dataclass(frozen=True)
class KeyBegun:
    """What `Store.begin_key` found for an Idempotency-Key (see `service.http.idempotency`).

    `token` is set when this request now holds the key (a new row, or an expired one taken
    over): it is the row's `created_at`, and `finish_key`/`release_key` are fenced on it, so a
    holder whose row was taken over cannot overwrite its successor's. Otherwise the row found:
    its fingerprint, and its stored answer (`status_code` None while still in progress). All
    None but `token`: the row appeared concurrently and was not visible yet (in progress)."""

    token: Any = None
    fingerprint: str | None = None
    status_code: int | None = None
    response_body: str | None = None


def video_record(row: Mapping[str, Any]) -> VideoRecord:
    """A record from a `videos` row, also one the operator's old bot wrote during a switch-over
    (migration 0001): its NULL `prompt_key` is computed from the prompt, a NULL `attempt` is 1 and
    a NULL `updated_at` (SQLite cannot default it) is its `created_at`."""
    if row["prompt_key"] is not None and row["attempt"] is not None and row["updated_at"] is not None:
        return VideoRecord.from_mapping(row)
    filled = dict(row)
    if filled["prompt_key"] is None:
        filled["prompt_key"] = prompt_key(filled["prompt"] or "")
    filled["attempt"] = 1 if filled["attempt"] is None else filled["attempt"]
    filled["updated_at"] = filled["created_at"] if filled["updated_at"] is None else filled["updated_at"]
    return VideoRecord.from_mapping(filled)


def holder_from_row(row: Mapping[str, Any]) -> Holder:
    """A holder from a row of `claim_*` columns, `blocks`, and the video's columns."""
    state = ClaimState(row["claim_status"], row["claim_attempt"], as_utc(row["claim_claimed_at"]),  # type: ignore[arg-type]
                       as_utc(row["claim_lease_expires_at"]))
    return Holder(state, video_record(row), bool(row["blocks"]))


class Store(Protocol):
    """The run-time storage interface (async). `service.stores.open_store` picks the backend."""

    dialect: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    # the claim
    async def claim(self, request: NewVideo, rule: ClaimRule, deadline: float | None = None
                    ) -> ClaimTicket | Holder | None:
        """The conditional upsert; void when the database decides it after `deadline`."""
        ...

    async def holder(self, request: NewVideo, rule: ClaimRule) -> Holder | None: ...

    # the worker's side, every write fenced by the claim's attempt; reserved connections
    async def renew(self, tickets: Sequence[ClaimTicket], lease: timedelta) -> set[int]:
        """Extend the leases of `tickets` in one statement; the video ids still held."""
        ...

    async def request_job(self, ticket: ClaimTicket) -> bool:
        """The recovery point before asking the provider for a job: True while the lease is live."""
        ...

    async def record_job(self, ticket: ClaimTicket, job_id: str) -> bool:
        """Put the job's id on the attempt's own row; True if the attempt still holds the claim."""
        ...

    async def release(self, ticket: ClaimTicket) -> None:
        """End the lease now, leaving the claim generating, so its running job is adopted."""
        ...

    async def adoptable(self, limit: int, mine: Sequence[int] = ()) -> list[NewVideo]:
        """Abandoned claims (lease expired) with a provider job or a recovery point, not `mine`."""
        ...

    async def complete(self, ticket: ClaimTicket, result: GenerationResult) -> bool: ...

    async def fail(self, ticket: ClaimTicket, error: str, cost_usd: Decimal | None = None) -> None: ...

    async def expire_abandoned(self, mine: Sequence[int] = ()) -> list[int]:
        """Fail abandoned claims (lease expired) that never asked for a provider job, but not the
        process's own (`mine`: video ids whose lease it renews; a process that was paused
        takes its own back with its next beat rather than sweep itself)."""
        ...

    # Idempotency-Key (service.http.idempotency), on the request path, on the database's clock
    async def begin_key(self, scope: str, key: str, fingerprint: str, window: timedelta,
                        in_progress: timedelta) -> KeyBegun:
        """Take the key (new, or its row older than `window`, or in progress past `in_progress`),
        or report the row that holds it."""
        ...

    async def finish_key(self, scope: str, key: str, token: Any, status_code: int, response_body: str) -> bool:
        """Store the answer to replay; False when the row is no longer this holder's."""
        ...

    async def release_key(self, scope: str, key: str, token: Any) -> None:
        """Forget an in-progress key (nothing ran), so a retry runs afresh."""
        ...

    async def forget_keys(self, window: timedelta) -> int:
        """Delete key rows older than `window` (begin_key already ignores them); how many."""
        ...

    # completion callbacks (service.stores.outbox, service.callbacks)
    async def take_callbacks(self, token: str, lease: timedelta, limit: int) -> list[DueCallback]:
        """Lease up to `limit` due callbacks to `token` for `lease`; none another deliverer holds."""
        ...

    async def finish_callback(self, due: DueCallback, token: str, *, ok: bool, error: str | None,
                              delay: timedelta, give_up: timedelta) -> str | None:
        """Delivered (`ok`), or due again after `delay` (failed past `give_up`); the new state,
        None when the row's event was replaced meanwhile (only the lease is cleared)."""
        ...

    async def callback_state(self, video_id: int) -> CallbackState | None: ...

    # reads
    async def get(self, video_id: int) -> VideoRecord: ...

    # the Telegram webhook (service.telegram)
    async def record_update(self, update_id: int) -> bool:
        """Take a Telegram delivery: True the first time its update_id is seen, False on a
        redelivery. One INSERT … ON CONFLICT DO NOTHING, `received_at` the database's clock."""
        ...

    async def forget_updates(self, age: timedelta, limit: int) -> int:
        """Delete up to `limit` deliveries received more than `age` ago (Telegram redelivers
        none that old); how many. Bounded, so that a table that grew for months before it was
        first pruned is emptied in statements that each fit the time bound."""
        ...

    # incident replay only (service.policies): the bot's separate round trips
    async def find_recent_by_prompt(
        self, tg_user_id: int, prompt: str, window: timedelta, statuses: tuple[str, ...] | None = None
    ) -> VideoRecord | None: ...

    async def insert_video(
        self, request: NewVideo, status: str, result: GenerationResult | None = None
    ) -> VideoRecord: ...

    async def set_outcome(
        self, video_id: int, status: str, result: GenerationResult | None = None, error: str | None = None
    ) -> None: ...
