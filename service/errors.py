"""The service's exceptions: one tree, each class carrying the HTTP status it maps to.

    ClaimfirstError                 500  base: anything the service raises on purpose
     ├── InvalidRequest             422  bad input; nothing was written
     ├── Unauthenticated            401  no or unknown API key (carries WWW-Authenticate)
     ├── Forbidden                  403  the key may not do this (application/problem+json)
     │    ├── ScopeMissing          403  it lacks the endpoint's scope
     │    └── UserNotAllowed        403  it may not act for this tg_user_id
     ├── RequestTooLarge            413  body over the limit; refused before it was read
     ├── DuplicateRequest           409  an equivalent video holds the claim (carries it; problem+json)
     ├── ClaimContention            409  the claim kept changing hands while we looked; retry (problem+json)
     ├── VideoNotFound              404
     ├── Throttled                  429  the backlog is full; nothing was claimed (Retry-After)
     │    └── LimitReached          429  a user's daily or concurrent limit, or the daily budget
     │                                   (problem+json, a `type` per limit, Retry-After from the data)
     ├── StorageUnavailable         503  the database did not answer; nothing was generated (Retry-After)
     ├── GenerationError            502  the generator failed (or timed out)
     └── IdempotencyError           400  the Idempotency-Key header (application/problem+json)
          ├── BadIdempotencyKey     400  empty, over 255 characters, or not printable ASCII
          ├── IdempotencyKeyInProgress 409  the first request with this key is still being admitted
          └── IdempotencyKeyReused  422  this key was sent with another body

`GenerationError` is raised inside the background runner and normally never reaches HTTP; it
still maps to a status so no error is left unmapped (a test checks that). A fenced-off worker
is not an error: the store's fenced writes answer False and the runner records the loss.
Lower-layer errors are translated at the storage boundary (`storage.translate_db_errors`);
FastAPI's own HTTP errors (body limit, unparsable body) at the HTTP one (`service.http.errors`).
`IdempotencyError`s, `Forbidden`, `DuplicateRequest` and `ClaimContention` answer RFC 9457
problem details (`application/problem+json`): a stable `type` per kind, `title`, `status`,
`detail`. Every 409 is a problem, so a client tells them apart by `type` alone. The duplicate
keeps the members its clients always read (`video_id`, `status`, `video_url`, `created_at`): its
`status` is the video's (a string), not the problem's HTTP status; RFC 9457 §3.1 has a consumer
ignore a member of the wrong type, and the HTTP status line says 409 anyway.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.records import VideoRecord

__all__ = [
    "ClaimfirstError",
    "InvalidRequest",
    "Unauthenticated",
    "Forbidden",
    "ScopeMissing",
    "UserNotAllowed",
    "RequestTooLarge",
    "DuplicateRequest",
    "ClaimContention",
    "VideoNotFound",
    "StorageUnavailable",
    "Throttled",
    "LimitReached",
    "GenerationError",
    "IdempotencyError",
    "BadIdempotencyKey",
    "IdempotencyKeyInProgress",
    "IdempotencyKeyReused",
]


class ClaimfirstError(Exception):
    status_code = 500
    media_type = "application/json"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail}

    def headers(self) -> dict[str, str]:
        """Response headers the status needs (a 401 names its scheme, a 503 says when to retry)."""
        return {}


class InvalidRequest(ClaimfirstError):
    status_code = 422


class Unauthenticated(ClaimfirstError):
    status_code = 401

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}  # RFC 9110: a 401 names its scheme


class _Problem:
    """RFC 9457 problem details. The `type` is a relative URI reference, stable per kind
    (clients match on it), resolved against the service's URL."""

    media_type = "application/problem+json"
    problem = "about:blank"
    title = "Problem"
    status_code: int
    detail: str

    def body(self) -> dict[str, Any]:
        return {"type": self.problem, "title": self.title, "status": self.status_code, "detail": self.detail}


class Forbidden(_Problem, ClaimfirstError):
    status_code = 403
    problem = "/problems/forbidden"
    title = "This API key may not do this"


class ScopeMissing(Forbidden):
    problem = "/problems/scope-missing"
    title = "This API key lacks the scope this endpoint needs"


class UserNotAllowed(Forbidden):
    problem = "/problems/user-not-allowed"
    title = "This API key may not act for this Telegram user"


class RequestTooLarge(ClaimfirstError):
    status_code = 413


class DuplicateRequest(ClaimfirstError):
    status_code = 409
    media_type = "application/problem+json"
    problem = "/problems/duplicate-video"
    title = "Duplicate video"

    def __init__(self, existing: VideoRecord) -> None:
        super().__init__(
            f"Duplicate video: video {existing.id} for this prompt is {existing.status} "
            f"(requested {existing.created_at.isoformat()}); no new video was started."
        )
        # `existing` is the whole record; the four below are what the 409 answer carries, all a
        # client rebuilding this error from that answer (`service.client`) can know.
        self.existing: VideoRecord | None = existing
        self.video_id, self.status, self.created_at = existing.id, existing.status, existing.created_at
        self.video_url = existing.video_url

    @classmethod
    def answered(cls, detail: str, *, video_id: int, status: str, created_at: datetime,
                 video_url: str | None) -> DuplicateRequest:
        """The error as an HTTP client reads it from a 409: no `existing` record."""
        error = cls.__new__(cls)
        ClaimfirstError.__init__(error, detail)
        error.existing = None
        error.video_id, error.status, error.created_at, error.video_url = video_id, status, created_at, video_url
        return error

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.problem,
            "title": self.title,
            "detail": self.detail,
            "video_id": self.video_id,
            "status": self.status,
            "created_at": self.created_at,
        }
        if self.video_url:
            body["video_url"] = self.video_url
        return body


class ClaimContention(ClaimfirstError):
    status_code = 409
    media_type = "application/problem+json"
    problem = "/problems/claim-contention"
    title = "The claim kept changing hands; retry"

    def body(self) -> dict[str, Any]:
        return {"type": self.problem, "title": self.title, "status": self.status_code, "detail": self.detail}


class VideoNotFound(ClaimfirstError):
    status_code = 404


class _RetryAfter:
    """Errors that tell the client when to come back (the Retry-After header)."""

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)  # type: ignore[call-arg]
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Throttled(_RetryAfter, ClaimfirstError):
    status_code = 429


class LimitReached(Throttled):
    """A limit the claim enforces (service.stores.limits): nothing was claimed, nothing paid.

    A subclass of `Throttled`, so code that handles "429, come back later" handles it too; its
    own `type` per limit tells a client which one (and a person, `detail`). `retry_after` is
    computed from the stored data: when the oldest counting generation leaves the 24 h window
    (daily limit, budget), or an estimate of when a running one ends (concurrent limit)."""

    media_type = "application/problem+json"
    # limit -> (problem type, title); the limit's name is also the metric's label.
    KINDS = {
        "user_daily": ("/problems/user-daily-limit", "Daily limit of new videos for this user reached"),
        "user_concurrent": ("/problems/user-concurrent-limit", "This user's limit of videos generating at once reached"),
        "daily_budget": ("/problems/daily-budget", "The service's daily budget is spent"),
    }

    def __init__(self, limit: str, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.limit = limit
        self.problem, self.title = self.KINDS[limit]

    @classmethod
    def of_type(cls, problem: str) -> str | None:
        """The limit whose problem `type` this is, else None."""
        return next((limit for limit, (kind, _) in cls.KINDS.items() if kind == problem), None)

    def body(self) -> dict[str, Any]:
        return {"type": self.problem, "title": self.title, "status": self.status_code, "detail": self.detail,
                "limit": self.limit, "retry_after": self.retry_after}


class StorageUnavailable(_RetryAfter, ClaimfirstError):
    status_code = 503

    # A database that did not answer is usually back within seconds (a restart, a failover,
    # a lock released); clients retrying sooner only add to the queue.
    RETRY_AFTER_SECONDS = 5

    def __init__(self, detail: str, *, retry_after: int = RETRY_AFTER_SECONDS) -> None:
        super().__init__(detail, retry_after=retry_after)


class GenerationError(ClaimfirstError):
    status_code = 502

    def __init__(self, message: str, *, cost_usd: Decimal | None = None) -> None:
        super().__init__(message)
        # What the failed generation cost: set once a provider job existed (it bills whatever
        # its end), so the books show the money even when there is no video.
        self.cost_usd = cost_usd


class IdempotencyError(_Problem, ClaimfirstError):
    """An RFC 9457 problem about the Idempotency-Key header."""

    status_code = 400
    title = "Idempotency-Key problem"


class BadIdempotencyKey(IdempotencyError):
    status_code = 400
    problem = "/problems/idempotency-key-malformed"
    title = "Malformed Idempotency-Key"


class IdempotencyKeyInProgress(IdempotencyError):
    status_code = 409
    problem = "/problems/idempotency-key-in-progress"
    title = "A request with this Idempotency-Key is still being admitted"


class IdempotencyKeyReused(IdempotencyError):
    status_code = 422
    problem = "/problems/idempotency-key-reused"
    title = "Idempotency-Key reused with another request body"
