"""The claim: when a `/create` may start a generation, as a state machine with no SQL.

A claim is the right to generate one video for one (user, prompt key). It moves

    (none) ──claim──▶ generating ──complete──▶ ready
                        │   ▲ renew (heartbeat)
                        ├──fail / timeout / lease lost──▶ failed
                        └──lease expires──▶ free again (taken over, or swept to failed)

and a new request may take a key only when its current holder does not block it:
`ClaimRule.blocks` below is the Python statement of the condition the storage layer writes
into its one conditional upsert (`storage.SqlStore.try_claim`); a test holds them together.

`claim_video` is the request-time flow, after Powertools' idempotency handler: try the claim;
if it is lost, read the holder and answer with it; if the holder turns out free by the time
we read it (it failed or expired in between), try again, a bounded number of times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from service.errors import ClaimContention, DuplicateRequest

__all__ = [
    "GENERATING",
    "READY",
    "FAILED",
    "STATUSES",
    "ClaimRule",
    "ClaimState",
    "ClaimTicket",
    "Holder",
    "NewVideo",
    "ClaimStore",
    "claim_video",
    "MAX_CLAIM_RETRIES",
]

GENERATING = "generating"
READY = "ready"
FAILED = "failed"
STATUSES = (GENERATING, READY, FAILED)

# A lost claim whose holder is free by the time we read it means the key changed hands
# between two statements; two more tries are plenty (each one is a single round trip) and
# a bound keeps a pathological flapping key from spinning a request thread.
MAX_CLAIM_RETRIES = 2


@dataclass(frozen=True)
class ClaimRule:
    """The duplicate window and the lease: what makes a holder block a new request."""

    window: timedelta
    lease: timedelta

    def window_start(self, now: datetime) -> datetime:
        return now - self.window

    def lease_expiry(self, now: datetime) -> datetime:
        return now + self.lease

    def blocks(self, holder: ClaimState, now: datetime) -> bool:
        """Whether the current holder of a key blocks a new request at `now`.

        A failed video never blocks; one claimed before the window never blocks (the audit's
        rule: a duplicate is at most `window` after its original); a `generating` claim whose
        lease ran out belongs to a dead worker and no longer blocks.
        """
        if holder.status == FAILED:
            return False
        if holder.claimed_at < self.window_start(now):
            return False
        if holder.status == GENERATING and (
            holder.lease_expires_at is None or holder.lease_expires_at <= now
        ):
            return False
        return True


@dataclass(frozen=True)
class ClaimState:
    status: str
    attempt: int
    claimed_at: datetime
    lease_expires_at: datetime | None


@dataclass(frozen=True)
class NewVideo:
    """A validated `/create`: what a claim is taken for."""

    tg_user_id: int
    prompt: str
    prompt_key: str
    category: str | None = None


@dataclass(frozen=True)
class ClaimTicket:
    """What a worker holds while generating: the fencing token is `attempt`."""

    video_id: int
    tg_user_id: int
    prompt_key: str
    attempt: int
    created_at: datetime


@dataclass(frozen=True)
class Holder:
    claim: ClaimState
    video: object  # storage.VideoRecord; kept opaque here so this module knows no storage


class ClaimStore(Protocol):
    def try_claim(self, request: NewVideo, *, now: datetime, rule: ClaimRule) -> ClaimTicket | None: ...

    def holder(self, tg_user_id: int, prompt_key: str) -> Holder | None: ...


def claim_video(
    store: ClaimStore, rule: ClaimRule, request: NewVideo, clock: Callable[[], datetime]
) -> ClaimTicket:
    """Win the claim for `request`, or raise `DuplicateRequest` with the video that holds it."""
    for _ in range(1 + MAX_CLAIM_RETRIES):
        now = clock()
        ticket = store.try_claim(request, now=now, rule=rule)
        if ticket is not None:
            return ticket
        holder = store.holder(request.tg_user_id, request.prompt_key)
        if holder is not None and rule.blocks(holder.claim, clock()):
            raise DuplicateRequest(holder.video)  # type: ignore[arg-type]
    raise ClaimContention(
        "The claim for this prompt changed hands several times while we looked; try again."
    )
