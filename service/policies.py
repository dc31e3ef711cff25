"""Admission policies: what `/create` does before and after a generation.

`claim` is the service: one atomic claim (see `service.claim`), fenced writes, leases. It is
the default and the only policy for production.

The others exist for incident replay only (`CLAIMFIRST_POLICY`, `python -m audit replay`):
they reproduce, faithfully, what the bot did, so a replay shows how many videos each would
have made. Faithful means their check and their write are separate database round trips,
they match the prompt exactly as the bot did (`.eq("prompt", prompt)`), and they have no
lease:
- `none`    generate, then save the row: no duplicate check at all;
- `check`   SELECT a saved video for the prompt in the window; generate; then save
            (the code before the write-up's fix: a row exists only once a video is done);
- `pending` SELECT a generating/ready row; INSERT a `generating` row; generate; UPDATE it
            (the write-up's fix: a row that dies with its worker stays `generating`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from service.claim import FAILED, GENERATING, READY, ClaimRule, ClaimTicket, NewVideo, claim_video
from service.errors import DuplicateRequest
from service.records import GenerationResult
from service.stores.base import Store

__all__ = ["Admission", "Recorder", "admit", "POLICIES"]


class Recorder(Protocol):
    """How one admitted generation reports back (the runner calls these, retrying on outages)."""

    async def request_job(self) -> bool: ...

    async def record_job(self, job_id: str) -> bool: ...

    async def release(self) -> None: ...

    async def complete(self, result: GenerationResult) -> bool: ...

    async def fail(self, error: str, cost_usd: Decimal | None) -> None: ...


@dataclass(frozen=True)
class Admission:
    video_id: int | None  # None under `none`/`check`: their row is written only at the end
    attempt: int
    created_at: datetime
    recorder: Recorder
    ticket: ClaimTicket | None = None  # the claim whose lease the runner renews (claim only)


# -- claim (production) ---------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimRecorder:
    store: Store
    ticket: ClaimTicket

    async def request_job(self) -> bool:
        return await self.store.request_job(self.ticket)

    async def record_job(self, job_id: str) -> bool:
        return await self.store.record_job(self.ticket, job_id)

    async def release(self) -> None:
        await self.store.release(self.ticket)

    async def complete(self, result: GenerationResult) -> bool:
        return await self.store.complete(self.ticket, result)

    async def fail(self, error: str, cost_usd: Decimal | None) -> None:
        await self.store.fail(self.ticket, error, cost_usd)


async def _admit_claim(store: Store, rule: ClaimRule, request: NewVideo, deadline: float | None = None) -> Admission:
    ticket = await claim_video(store, rule, request, deadline)
    return Admission(ticket.video_id, ticket.attempt, ticket.created_at, ClaimRecorder(store, ticket), ticket)


# -- legacy (incident replay only) ----------------------------------------------------------


@dataclass(frozen=True)
class PendingRowRecorder:
    """The write-up's fix: update the pending row; no lease to renew, nothing fences it."""

    store: Store
    video_id: int

    async def request_job(self) -> bool:
        return True

    async def record_job(self, job_id: str) -> bool:
        return True

    async def release(self) -> None:
        return None

    async def complete(self, result: GenerationResult) -> bool:
        await self.store.set_outcome(self.video_id, READY, result=result)
        return True

    async def fail(self, error: str, cost_usd: Decimal | None) -> None:
        await self.store.set_outcome(self.video_id, FAILED, error=error)


@dataclass(frozen=True)
class SaveAtEndRecorder:
    """Before the fix: the row is written only when the video is done; a failure saves nothing."""

    store: Store
    request: NewVideo

    async def request_job(self) -> bool:
        return True

    async def record_job(self, job_id: str) -> bool:
        return True

    async def release(self) -> None:
        return None

    async def complete(self, result: GenerationResult) -> bool:
        await self.store.insert_video(self.request, READY, result=result)
        return True

    async def fail(self, error: str, cost_usd: Decimal | None) -> None:
        return None


def _admitted_now() -> datetime:
    # Only for the answer's `created_at` under `none`/`check`, which write no row to take it from.
    return datetime.now(UTC)


async def _admit_none(store: Store, rule: ClaimRule, request: NewVideo, deadline: float | None = None) -> Admission:
    return Admission(None, 1, _admitted_now(), SaveAtEndRecorder(store, request))


async def _admit_check(store: Store, rule: ClaimRule, request: NewVideo, deadline: float | None = None) -> Admission:
    existing = await store.find_recent_by_prompt(request.tg_user_id, request.prompt, rule.window)
    if existing is not None:
        raise DuplicateRequest(existing)
    return Admission(None, 1, _admitted_now(), SaveAtEndRecorder(store, request))


async def _admit_pending(store: Store, rule: ClaimRule, request: NewVideo, deadline: float | None = None) -> Admission:
    existing = await store.find_recent_by_prompt(
        request.tg_user_id, request.prompt, rule.window, statuses=(GENERATING, READY)
    )
    if existing is not None:
        raise DuplicateRequest(existing)
    # The race the write-up left open: another request can pass the SELECT above before
    # this INSERT commits. Kept on purpose; it is what replay measures.
    video = await store.insert_video(request, GENERATING)
    return Admission(video.id, 1, video.created_at, PendingRowRecorder(store, video.id))


POLICIES: dict[str, Callable[[Store, ClaimRule, NewVideo, float | None], Awaitable[Admission]]] = {
    "claim": _admit_claim,
    "pending": _admit_pending,
    "check": _admit_check,
    "none": _admit_none,
}


async def admit(policy: str, store: Store, rule: ClaimRule, request: NewVideo,
                deadline: float | None = None) -> Admission:
    """Admit `request` under `policy`, or raise DuplicateRequest / StorageUnavailable. A claim
    decided after `deadline` (time.monotonic(): when the request gives up) changes nothing."""
    return await POLICIES[policy](store, rule, request, deadline)
