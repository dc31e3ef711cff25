"""claimfirst's generation service: `/create` wins or loses one atomic claim in the database,
then generates in the background under a renewed lease.

The public API is `__all__`: what an embedding program or a test may import from `service`
itself. Each name is imported on first use (PEP 562), so `python -m service` and the audit,
which import single modules, pay for nothing else. The layers below are in README.md
("Layout") and pyproject.toml's `[tool.importlinter]`; arrows point down.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.app import create_app
    from service.claim import ClaimRule, Limits, NewVideo
    from service.embed import ClaimFirst
    from service.errors import (
        BadIdempotencyKey,
        ClaimContention,
        ClaimfirstError,
        DuplicateRequest,
        Forbidden,
        GenerationError,
        IdempotencyError,
        IdempotencyKeyInProgress,
        IdempotencyKeyReused,
        InvalidRequest,
        LimitReached,
        RequestTooLarge,
        ScopeMissing,
        StorageUnavailable,
        Throttled,
        Unauthenticated,
        UserNotAllowed,
        VideoNotFound,
    )
    from service.generation import GenerationJob, Generator, SimulatedGenerator, make_generator
    from service.http.schemas import CreateRequest
    from service.policies import Admission
    from service.records import GenerationResult, VideoRecord
    from service.runtime import Runtime
    from service.settings import Settings

# name -> the module that defines it. No name may be a submodule's (`prompt_key` is not here):
# importing `service.prompt_key` binds the module to that attribute, shadowing the function.
_HOMES = {
    # the use case, and the app around it
    "Runtime": "service.runtime",
    "ClaimFirst": "service.embed",  # the claim inside a bot's own process
    "Admission": "service.policies",
    "create_app": "service.app",
    "Settings": "service.settings",
    # the request and record types
    "CreateRequest": "service.http.schemas",
    "NewVideo": "service.claim",
    "ClaimRule": "service.claim",
    "Limits": "service.claim",
    "VideoRecord": "service.records",
    "GenerationResult": "service.records",
    # generation, to plug in another generator
    "Generator": "service.generation",
    "GenerationJob": "service.generation",
    "SimulatedGenerator": "service.generation",
    "make_generator": "service.generation",
    # the exceptions
    **dict.fromkeys([
        "ClaimfirstError", "InvalidRequest", "Unauthenticated", "RequestTooLarge", "DuplicateRequest",
        "ClaimContention", "VideoNotFound", "StorageUnavailable", "Throttled", "LimitReached", "GenerationError",
        "IdempotencyError", "BadIdempotencyKey", "IdempotencyKeyInProgress", "IdempotencyKeyReused",
        "Forbidden", "ScopeMissing", "UserNotAllowed",
    ], "service.errors"),
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'service' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once imported, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
