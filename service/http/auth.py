"""Who may call the API: bearer API keys (`CLAIMFIRST_API_KEYS`).

`api_key_check(settings)` is the check of a presented key; `caller_guard(check)` makes it the
dependency a route lists to require a key, and `/create` (a `service.http.routes.DirectRoute`, which
solves no dependencies) calls it itself. A route that lists none is open (`/healthz`, and the
Telegram webhook, which checks its own secret: `service.telegram.webhook`).
With no key configured the guard is empty and the service is anonymous: allowed on loopback,
and refused on any other address by `anonymous_refusal` unless CLAIMFIRST_ALLOW_ANONYMOUS.

Keys are compared in constant time against every configured key (no early exit, so timing
tells neither which key nor how much of it matched), and never logged or echoed.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import Depends
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import SecretStr

from service.errors import Unauthenticated
from service.settings import Settings

__all__ = ["ApiKeys", "KeyCheck", "api_key_check", "bearer_token", "caller_guard", "openapi_security",
           "anonymous_refusal", "simulated_refusal", "is_loopback"]

log = logging.getLogger("claimfirst")

# auto_error=False: a missing or non-Bearer header reaches our check, which answers 401 with
# our error body (FastAPI's own would be 403 on older versions and a different body).
_bearer = HTTPBearer(auto_error=False, description="one of CLAIMFIRST_API_KEYS")


class ApiKeys:
    def __init__(self, keys: Iterable[SecretStr]) -> None:
        self._keys = tuple(key.get_secret_value().encode() for key in keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __repr__(self) -> str:
        return f"ApiKeys({len(self._keys)} keys)"

    def matches(self, presented: str) -> bool:
        # Header values arrive decoded as latin-1, so this encoding never fails.
        candidate = presented.encode("latin-1")
        found = False
        for key in self._keys:
            found |= hmac.compare_digest(key, candidate)
        return found


KeyCheck = Callable[[str | None], None]


def api_key_check(settings: Settings) -> KeyCheck | None:
    """The check of a presented bearer token, raising Unauthenticated; None when anonymous."""
    keys = ApiKeys(settings.api_keys)
    if not keys:
        log.warning(
            "no CLAIMFIRST_API_KEYS: the API is anonymous, anyone who reaches it can start generations"
        )
        return None

    def check(presented: str | None) -> None:
        if presented is None or not keys.matches(presented):
            raise Unauthenticated("Unauthorized: send `Authorization: Bearer <key>` with a key of this service.")

    return check


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, read as `HTTPBearer` reads it."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    return credentials if scheme.lower() == "bearer" and credentials else None


def caller_guard(check: KeyCheck | None) -> list[DependsParam]:
    """The dependencies that make a route require an API key (empty when anonymous)."""
    if check is None:
        return []

    async def require_api_key(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        check(None if credentials is None else credentials.credentials)

    return [Depends(require_api_key)]


def openapi_security(check: KeyCheck | None) -> dict[str, Any]:
    """What `caller_guard`'s dependency adds to an operation's OpenAPI, for a route that checks
    the key itself. The scheme's definition comes from the routes that list the dependency."""
    return {"security": [{_bearer.scheme_name: []}]} if check is not None else {}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def anonymous_refusal(host: str, settings: Settings) -> str | None:
    """Why serving on `host` with these settings is refused, or None when it may start."""
    if settings.api_keys or settings.allow_anonymous or is_loopback(host):
        return None
    return (
        f"refusing to serve {host} without CLAIMFIRST_API_KEYS: anyone could start paid generations"
        " (set keys, or CLAIMFIRST_ALLOW_ANONYMOUS=true behind a gateway that authenticates)"
    )


def simulated_refusal(host: str, settings: Settings) -> str | None:
    """Why serving the simulated generator on `host` is refused, or None. `sim` is the default
    so that a checkout runs with nothing configured; on a public address that default would
    answer real users with fake video links, so it must be asked for by name there."""
    if settings.generator != "sim" or "generator" in settings.model_fields_set or is_loopback(host):
        return None
    return (
        f"refusing to serve {host} with the simulated generator (fake videos) by default: set"
        " CLAIMFIRST_GENERATOR=replicate for real videos, or CLAIMFIRST_GENERATOR=sim to serve fake ones on purpose"
    )
