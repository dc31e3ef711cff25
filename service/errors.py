"""The service's exceptions: one tree, each class carrying the HTTP status it maps to.

    ClaimfirstError                 500  base: anything the service raises on purpose
     ├── InvalidRequest             422  bad input; nothing was written
     ├── Unauthenticated            401  no or unknown API key (carries WWW-Authenticate)
     ├── Forbidden                  403  the key may not do this (application/problem+json)
     │    ├── ScopeMissing          403  it lacks the endpoint's scope
     │    └── UserNotAllowed        403  it may not act for this tg_user_id
     ├── RequestTooLarge            413  body over the limit; refused before it was read
     ├── DuplicateRequest           409  an equivalent video holds the claim (carries it)
     ├── ClaimContention            409  the claim kept changing hands while we looked; retry
     ├── VideoNotFound              404
     ├── Throttled                  429  the backlog is full; nothing was claimed (Retry-After)
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
`IdempotencyError`s and `Forbidden` answer RFC 9457 problem details: a stable `type` per kind,
`title`, `status`.
"""

from __future__ import annotations

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

    def __init__(self, existing: VideoRecord) -> None:
        super().__init__(
            f"Duplicate video: video {existing.id} for this prompt is {existing.status} "
            f"(requested {existing.created_at.isoformat()}); no new video was started."
        )
        self.existing = existing

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "detail": self.detail,
            "video_id": self.existing.id,
            "status": self.existing.status,
            "created_at": self.existing.created_at,
        }
        if self.existing.video_url:
            body["video_url"] = self.existing.video_url
        return body


class ClaimContention(ClaimfirstError):
    status_code = 409


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
