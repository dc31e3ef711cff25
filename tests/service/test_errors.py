"""Every domain error maps to an HTTP status, and the map is the one the docstring draws."""

from __future__ import annotations

from service import ClaimfirstError
import service.errors as errors

EXPECTED = {
    "InvalidRequest": 422, "Unauthenticated": 401, "Forbidden": 403, "ScopeMissing": 403, "UserNotAllowed": 403,
    "RequestTooLarge": 413, "DuplicateRequest": 409,
    "ClaimContention": 409, "VideoNotFound": 404, "Throttled": 429, "StorageUnavailable": 503,
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
