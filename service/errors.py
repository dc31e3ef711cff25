"""The service's exceptions: one tree, each class carrying the HTTP status it maps to.

    ClaimfirstError                 500  base: anything the service raises on purpose
     ├── InvalidRequest             422  bad input; nothing was written
     ├── Unauthenticated            401  no or unknown API key (carries WWW-Authenticate)
     ├── RequestTooLarge            413  body over the limit; refused before it was read
     ├── DuplicateRequest           409  an equivalent video holds the claim (carries it)
     ├── ClaimContention            409  the claim kept changing hands while we looked; retry
     ├── VideoNotFound              404
     ├── StorageUnavailable         503  the database did not answer; nothing was generated
     └── GenerationError            502  the generator failed (or timed out)

`GenerationError` is raised inside the background runner and normally never reaches HTTP; it
still maps to a status so no error is left unmapped (a test checks that). A fenced-off worker
is not an error: the store's fenced writes answer False and the runner records the loss.
Lower-layer errors are translated at the storage boundary (`storage.translate_db_errors`);
FastAPI's own HTTP errors (body limit, unparsable body) at the HTTP one (`service.http_errors`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from service.storage import VideoRecord

__all__ = [
    "ClaimfirstError",
    "InvalidRequest",
    "Unauthenticated",
    "RequestTooLarge",
    "DuplicateRequest",
    "ClaimContention",
    "VideoNotFound",
    "StorageUnavailable",
    "GenerationError",
]


class ClaimfirstError(Exception):
    status_code = 500
    # Response headers the status needs (RFC 9110: a 401 names its scheme).
    headers: ClassVar[Mapping[str, str]] = {}

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail}


class InvalidRequest(ClaimfirstError):
    status_code = 422


class Unauthenticated(ClaimfirstError):
    status_code = 401
    headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": "Bearer"}


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


class StorageUnavailable(ClaimfirstError):
    status_code = 503


class GenerationError(ClaimfirstError):
    status_code = 502
