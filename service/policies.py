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

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from service.claim import FAILED, GENERATING, READY, ClaimRule, ClaimTicket, NewVideo, claim_video
from service.errors import DuplicateRequest
from service.generators import GenerationResult
from service.storage import SqlStore

__all__ = ["Admission", "Recorder", "admit", "POLICIES"]


class Recorder(Protocol):
    """How one admitted generation reports back (the runner calls these)."""

    def renew(self, now: datetime) -> bool: ...

    def complete(self, result: GenerationResult, now: datetime) -> bool: ...

    def fail(self, error: str, now: datetime) -> None: ...


@dataclass(frozen=True)
class Admission:
    video_id: int | None  # None under `none`/`check`: their row is written only at the end
    attempt: int
    created_at: datetime
    recorder: Recorder


Clock = Callable[[], datetime]


# -- claim (production) ---------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimRecorder:
    store: SqlStore
    rule: ClaimRule
    ticket: ClaimTicket

    def renew(self, now: datetime) -> bool:
        return self.store.renew(self.ticket, now=now, rule=self.rule)

    def complete(self, result: GenerationResult, now: datetime) -> bool:
        return self.store.complete(self.ticket, result, now=now)

    def fail(self, error: str, now: datetime) -> None:
        self.store.fail(self.ticket, error, now=now)


def _admit_claim(store: SqlStore, rule: ClaimRule, request: NewVideo, clock: Clock) -> Admission:
    ticket = claim_video(store, rule, request, clock)
    return Admission(ticket.video_id, ticket.attempt, ticket.created_at, ClaimRecorder(store, rule, ticket))


# -- legacy (incident replay only) ----------------------------------------------------------


@dataclass(frozen=True)
class PendingRowRecorder:
    """The write-up's fix: update the pending row; no lease to renew, nothing fences it."""

    store: SqlStore
    video_id: int

    def renew(self, now: datetime) -> bool:
        return True

    def complete(self, result: GenerationResult, now: datetime) -> bool:
        self.store.set_outcome(self.video_id, READY, now=now, result=result)
        return True

    def fail(self, error: str, now: datetime) -> None:
        self.store.set_outcome(self.video_id, FAILED, now=now, error=error)


@dataclass(frozen=True)
class SaveAtEndRecorder:
    """Before the fix: the row is written only when the video is done; a failure saves nothing."""

    store: SqlStore
    request: NewVideo

    def renew(self, now: datetime) -> bool:
        return True

    def complete(self, result: GenerationResult, now: datetime) -> bool:
        self.store.insert_video(self.request, READY, now=now, result=result)
        return True

    def fail(self, error: str, now: datetime) -> None:
        return None


def _admit_none(store: SqlStore, rule: ClaimRule, request: NewVideo, clock: Clock) -> Admission:
    return Admission(None, 1, clock(), SaveAtEndRecorder(store, request))


def _admit_check(store: SqlStore, rule: ClaimRule, request: NewVideo, clock: Clock) -> Admission:
    now = clock()
    existing = store.find_recent_by_prompt(request.tg_user_id, request.prompt, since=rule.window_start(now))
    if existing is not None:
        raise DuplicateRequest(existing)
    return Admission(None, 1, now, SaveAtEndRecorder(store, request))


def _admit_pending(store: SqlStore, rule: ClaimRule, request: NewVideo, clock: Clock) -> Admission:
    now = clock()
    existing = store.find_recent_by_prompt(
        request.tg_user_id, request.prompt, since=rule.window_start(now), statuses=(GENERATING, READY)
    )
    if existing is not None:
        raise DuplicateRequest(existing)
    # The race the write-up left open: another request can pass the SELECT above before
    # this INSERT commits. Kept on purpose; it is what replay measures.
    video = store.insert_video(request, GENERATING, now=clock())
    return Admission(video.id, 1, video.created_at, PendingRowRecorder(store, video.id))


POLICIES: dict[str, Callable[[SqlStore, ClaimRule, NewVideo, Clock], Admission]] = {
    "claim": _admit_claim,
    "pending": _admit_pending,
    "check": _admit_check,
    "none": _admit_none,
}


def admit(policy: str, store: SqlStore, rule: ClaimRule, request: NewVideo, clock: Clock) -> Admission:
    """Admit `request` under `policy`, or raise DuplicateRequest / StorageUnavailable."""
    return POLICIES[policy](store, rule, request, clock)
