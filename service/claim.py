"""The claim: when a `/create` may start a generation, as a state machine with no SQL.

A claim is the right to generate one video for one (user, prompt key). It moves

    (none) ──claim──▶ generating ──complete──▶ ready
                        │   ▲ renew (heartbeat)
                        ├──fail / timeout / lease lost──▶ failed
                        └──lease expires──▶ free again (taken over, or swept to failed)

and a new request may take a key only when its current holder does not block it:
`ClaimRule.blocks` below is the Python statement of the condition the stores write into their
one conditional upsert (`service.stores`); a test holds them together on both backends.

Time is the database's. Every "now" in a decision (is the lease alive, is the holder inside
the window, when does a new lease end) is read by the database inside the statement that acts
on it, after any lock wait, so a claim that queued behind a lock is not born expired and a
process whose clock is a minute off changes nothing. `ClaimRule.blocks` therefore takes `now`
as an argument: the stores evaluate the same rule with the database's clock.

`claim_video` is the request-time flow, after Powertools' idempotency handler: try the claim;
if it is lost, the same round trip brings the holder back; if that holder no longer blocks by
the time it is read (it failed or expired in between, or the key changed hands concurrently),
try again, a bounded number of times.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from service.errors import ClaimContention, DuplicateRequest

if TYPE_CHECKING:
    from service.records import VideoRecord

__all__ = [
    "GENERATING",
    "READY",
    "FAILED",
    "STATUSES",
    "ClaimRule",
    "ClaimState",
    "Limits",
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
# between the claim and the read; two more tries are plenty (each one is a single round trip)
# and a bound keeps a pathological flapping key from spinning a request.
MAX_CLAIM_RETRIES = 2


@dataclass(frozen=True)
class Limits:
    """What a new generation must fit under, decided by the claim itself (service.stores.limits).

    None: no such limit. Every count is over the last `WINDOW` on the database's clock. A
    generation reserves `reserve_usd` of the budget from its claim until its cost is recorded;
    `typical_seconds` is how long a generation usually runs (the concurrent limit's Retry-After)."""

    WINDOW = timedelta(hours=24)

    user_daily: int | None = None
    user_concurrent: int | None = None
    budget_usd: Decimal | None = None
    reserve_usd: Decimal = Decimal(0)
    typical_seconds: float = 60.0

    @property
    def on(self) -> bool:
        return self.user_daily is not None or self.user_concurrent is not None or self.budget_usd is not None


@dataclass(frozen=True)
class ClaimRule:
    """The duplicate window and the lease: what makes a holder block a new request; and the
    limits a new generation must fit under (None: none, the claim as it always was)."""

    window: timedelta
    lease: timedelta
    limits: Limits | None = None

    def blocks(self, holder: ClaimState, now: datetime) -> bool:
        """Whether the current holder of a key blocks a new request at `now` (the database's).

        A failed video never blocks. A `generating` claim blocks exactly while its lease is
        alive, whatever its age: its worker is still paying for it (a lease that ran out
        belongs to a dead worker; no lease at all is a row the old bot left behind). A
        finished video blocks for `window` after it was claimed (the audit's rule: a
        duplicate is at most `window` after its original; the edge is inclusive).
        """
        if holder.status == FAILED:
            return False
        if holder.status == GENERATING:
            return holder.lease_expires_at is not None and holder.lease_expires_at > now
        return holder.claimed_at >= now - self.window


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
    prompt_key: str  # with the params CLAIMFIRST_KEY_PARAMS names (service.prompt_key.key_with_params)
    category: str | None = None
    # Checked generation parameters (service.params), for the provider and the video's row.
    params: Mapping[str, Any] | None = field(default=None, hash=False)
    # Where to POST the outcome (service.callbacks), checked against the operator's allowlist
    # before it gets here; after a takeover the new attempt carries it on.
    callback_url: str | None = None


@dataclass(frozen=True)
class ClaimTicket:
    """What a worker holds while generating: the fencing token is `attempt`.

    `adopt_job_id` is the provider job of the attempt this one took over (its worker died, stalled
    or handed it over while the job ran): the new worker looks at that job before paying for
    another. `adopt_requested_at` is set instead when that attempt asked the provider for a job
    and never recorded its id: the new worker looks for it at the provider first.
    """

    video_id: int
    tg_user_id: int
    prompt_key: str
    attempt: int
    created_at: datetime
    adopt_job_id: str | None = None
    adopt_requested_at: datetime | None = None
    # The parameters this attempt generates with, as its video row holds them: the request's,
    # or, when it was handed an earlier attempt's job (or a job to look for), that attempt's:
    # it is the same job, asked for with those.
    params: Mapping[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class Holder:
    """The claim's current holder as the database saw it, and whether it blocks (its clock)."""

    claim: ClaimState
    video: VideoRecord
    blocks: bool


class ClaimStore(Protocol):
    async def claim(self, request: NewVideo, rule: ClaimRule, deadline: float | None = None
                    ) -> ClaimTicket | Holder | None:
        """Try the claim: the ticket when won, else the holder (None if it could not be seen).

        `deadline` (time.monotonic()) is when the request gives up: a claim the database decides
        after it changes nothing, so a request that already answered 503 cannot take a key."""
        ...

    async def holder(self, request: NewVideo, rule: ClaimRule) -> Holder | None: ...


async def claim_video(store: ClaimStore, rule: ClaimRule, request: NewVideo,
                      deadline: float | None = None) -> ClaimTicket:
    """Win the claim for `request`, or raise `DuplicateRequest` with the video that holds it."""
    for _ in range(1 + MAX_CLAIM_RETRIES):
        outcome = await store.claim(request, rule, deadline)
        if isinstance(outcome, ClaimTicket):
            return outcome
        # PostgreSQL reads the holder in the claim's own statement, under that statement's
        # snapshot: a holder committed while we waited on its row lock is not in it. Then
        # (rarely, only under a true race) one more plain read sees it.
        holder = outcome or await store.holder(request, rule)
        if holder is not None and holder.blocks:
            raise DuplicateRequest(holder.video)
    raise ClaimContention(
        "The claim for this prompt changed hands several times while we looked; try again."
    )
