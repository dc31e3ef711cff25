"""Who may call the API, and what it may do: bearer API keys with scopes (`CLAIMFIRST_API_KEYS`).

`api_key_check(settings)` finds the `Caller` a presented key belongs to; `caller_guard(check,
scope)` makes it the dependency a route lists to require a key with that scope, and `/create` (a
`service.http.routes.DirectRoute`, which solves no dependencies) calls `check` and `require`
itself. A route that lists none is open (`/healthz`, and the Telegram webhook, which checks its
own secret: `service.telegram.webhook`).
With no key configured the guard is empty and the service is anonymous (everyone is `EVERYONE`):
allowed on loopback, and refused on any other address by `anonymous_refusal` unless
CLAIMFIRST_ALLOW_ANONYMOUS.

Scopes: `create` (POST /create), `read` (GET /videos/{id}), `metrics` (GET /metrics), `admin`
(GET /stats). A key without the route's scope gets 403 (`ScopeMissing`). A key given
`tg_user_ids` creates only for those users (403 `UserNotAllowed` otherwise) and sees only their
videos: another user's video answers 404, as an unknown id does, so ids cannot be probed.
A bare key has every scope and every user: what every key meant before keys had scopes.

Keys are compared in constant time against every configured key (no early exit, so timing
tells neither which key nor how much of it matched), and never logged or echoed; a key's
*name* is logged with each request (`caller`).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from service.errors import ScopeMissing, Unauthenticated, UserNotAllowed
from service.logs import bind
from service.settings import SCOPES, ApiKey, Scope, Settings

__all__ = ["ApiKeys", "Caller", "EVERYONE", "KeyCheck", "api_key_check", "bearer_token", "caller_guard",
           "caller_of", "require", "openapi_security", "anonymous_refusal", "simulated_refusal", "is_loopback"]

log = logging.getLogger("claimfirst")

# auto_error=False: a missing or non-Bearer header reaches our check, which answers 401 with
# our error body (FastAPI's own would be 403 on older versions and a different body).
_bearer = HTTPBearer(auto_error=False, description="one of CLAIMFIRST_API_KEYS")


@dataclass(frozen=True)
class Caller:
    name: str
    scopes: frozenset[Scope]
    tg_user_ids: frozenset[int] | None  # None: every user

    def sees(self, tg_user_id: int) -> bool:
        return self.tg_user_ids is None or tg_user_id in self.tg_user_ids


EVERYONE = Caller("anonymous", SCOPES, None)


class ApiKeys:
    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = tuple((key.get_secret_value().encode(), Caller(key.name, key.scopes, key.tg_user_ids))
                           for key in keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __repr__(self) -> str:
        return f"ApiKeys({len(self._keys)} keys)"

    def find(self, presented: str) -> Caller | None:
        # Header values arrive decoded as latin-1, so this encoding never fails.
        candidate = presented.encode("latin-1")
        found = None
        for key, caller in self._keys:
            if hmac.compare_digest(key, candidate):
                found = caller
        return found

    def may_refuse(self, scope: Scope) -> bool:
        """Whether some key can get 403 on a route needing `scope` (documented there only then)."""
        return any(scope not in caller.scopes or (scope == "create" and caller.tg_user_ids is not None)
                   for _, caller in self._keys)


KeyCheck = Callable[[str | None], Caller]


def api_key_check(settings: Settings) -> tuple[KeyCheck | None, ApiKeys]:
    """The check of a presented bearer token, raising Unauthenticated (None when anonymous),
    and the keys it checks against."""
    keys = ApiKeys(settings.api_keys)
    if not keys:
        log.warning(
            "no CLAIMFIRST_API_KEYS: the API is anonymous, anyone who reaches it can start generations"
        )
        return None, keys

    def check(presented: str | None) -> Caller:
        caller = None if presented is None else keys.find(presented)
        if caller is None:
            raise Unauthenticated("Unauthorized: send `Authorization: Bearer <key>` with a key of this service.")
        bind(caller=caller.name)
        return caller

    return check, keys


def require(caller: Caller, scope: Scope, tg_user_id: int | None = None) -> None:
    if scope not in caller.scopes:
        raise ScopeMissing(f"Forbidden: the key {caller.name!r} lacks the scope {scope!r} this endpoint needs.")
    if tg_user_id is not None and not caller.sees(tg_user_id):
        raise UserNotAllowed(f"Forbidden: the key {caller.name!r} may not act for tg_user_id {tg_user_id}.")


def caller_of(request: Request) -> Caller:
    """Who called a guarded route (set by its guard; everyone when anonymous)."""
    return getattr(request.state, "caller", EVERYONE)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, read as `HTTPBearer` reads it."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    return credentials if scheme.lower() == "bearer" and credentials else None


def caller_guard(check: KeyCheck | None, scope: Scope) -> list[DependsParam]:
    """The dependencies that make a route require a key with `scope` (empty when anonymous)."""
    if check is None:
        return []

    async def require_api_key(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        caller = check(None if credentials is None else credentials.credentials)
        require(caller, scope)
        request.state.caller = caller

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


def webhook_refusal(settings: Settings) -> str | None:
    """Why serving (or registering) the Telegram webhook with these settings is refused, or None."""
    if not settings.telegram_enabled or settings.telegram_webhook_secret is not None:
        return None
    return ("TELEGRAM_WEBHOOK_SECRET is required with TELEGRAM_BOT_TOKEN to serve the webhook: without it"
            " anyone who finds its URL could start generations (long polling, `python -m service telegram poll`,"
            " needs none)")


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
