"""Every domain error maps to an HTTP status, and the map is the one the docstring draws."""

from __future__ import annotations

from datetime import UTC, datetime

from service import ClaimfirstError
from service.records import VideoRecord
import service.errors as errors

EXPECTED = {
    "InvalidRequest": 422, "Unauthenticated": 401, "Forbidden": 403, "ScopeMissing": 403, "UserNotAllowed": 403,
    "RequestTooLarge": 413, "DuplicateRequest": 409,
    "ClaimContention": 409, "VideoNotFound": 404, "Throttled": 429, "LimitReached": 429, "StorageUnavailable": 503,
    "GenerationError": 502, "IdempotencyError": 400, "BadIdempotencyKey": 400,
    "IdempotencyKeyInProgress": 409, "IdempotencyKeyReused": 422,
}


def _all_subclasses(cls: type) -> set[type]:
    return {sub for direct in cls.__subclasses__() for sub in {direct, *_all_subclasses(direct)}}


def test_every_error_has_its_own_http_status() -> None:
    subclasses = _all_subclasses(ClaimfirstError)
    assert {cls.__name__: cls.status_code for cls in subclasses} == EXPECTED
    assert set(errors.__all__) == {"ClaimfirstError", *EXPECTED}
    for cls in subclasses:
        assert cls.__name__ in errors.__doc__ and str(cls.status_code) in errors.__doc__


def test_every_409_is_a_problem_with_its_own_type() -> None:
    now = datetime.now(UTC)
    holder = VideoRecord(7, 42, "p", "p", None, "ready", 1, "https://v.example/7.mp4", None, None, None, now, now)
    conflicts = [errors.DuplicateRequest(holder), errors.ClaimContention("kept changing hands"),
                 errors.IdempotencyKeyInProgress("in progress")]
    bodies = [error.body() for error in conflicts]
    assert {error.media_type for error in conflicts} == {"application/problem+json"}
    assert len({body["type"] for body in bodies}) == 3 and all(body["title"] for body in bodies)
    # The duplicate's members are the ones its clients read before it became a problem.
    assert bodies[0] | {"detail": ""} == {"type": "/problems/duplicate-video", "title": "Duplicate video", "detail": "",
                                          "video_id": 7, "status": "ready", "created_at": now,
                                          "video_url": "https://v.example/7.mp4"}


def test_each_limit_is_a_problem_with_its_own_type_and_retry_after() -> None:
    refusals = [errors.LimitReached(limit, "full", retry_after=60 + n) for n, limit in enumerate(errors.LimitReached.KINDS)]
    bodies = [error.body() for error in refusals]
    assert {error.media_type for error in refusals} == {"application/problem+json"}
    assert [body["type"] for body in bodies] == ["/problems/user-daily-limit", "/problems/user-concurrent-limit",
                                                 "/problems/daily-budget"]
    assert [error.headers() for error in refusals] == [{"Retry-After": str(60 + n)} for n in range(3)]
    assert all(isinstance(error, errors.Throttled) and body["status"] == 429 for error, body in zip(refusals, bodies))
    assert [errors.LimitReached.of_type(body["type"]) for body in bodies] == list(errors.LimitReached.KINDS)
