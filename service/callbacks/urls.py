"""Where a completion callback may go: the operator's allowlist, and no address inside their network.

A `callback_url` makes the service POST wherever a caller asks, so it is checked twice:

- at `/create` (`check_callback_url`, 422 and nothing written when refused): https (http only
  with CLAIMFIRST_CALLBACK_ALLOW_LOOPBACK), no credentials in it, its host in
  CLAIMFIRST_CALLBACK_HOSTS, and an address written literally must be public;
- at every delivery (`resolve_target`): the URL again (the allowlist may have changed since),
  and every address its host resolves to now. The delivery then connects to the address
  checked here, not to a second lookup, so a name that answers a public address to the check
  and a private one to the connection (DNS rebinding) reaches nothing inside.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from service.errors import InvalidRequest
from service.settings import Settings

__all__ = ["check_callback_url", "resolve_target", "Target", "MAX_CALLBACK_URL_CHARS", "host_allowed"]

# Browsers and proxies handle URLs of this length everywhere; a receiver's URL is far shorter.
MAX_CALLBACK_URL_CHARS = 2000

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """A checked callback: where to connect, and the name to send in Host and SNI."""

    url: str  # the URL with its host replaced by the checked address
    host: str  # the host as the caller wrote it (Host header, TLS server name)
    address: str


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """`host` is one of `allowed`, or under one of its `*.` domains (never the domain itself)."""
    host = host.lower().rstrip(".")
    for entry in allowed:
        if entry.startswith("*.") and host.endswith(entry[1:]) and len(host) > len(entry) - 1:
            return True
        if host == entry.strip("[]"):
            return True
    return False


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _usable(address: Address, allow_loopback: bool) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    if address.is_global:
        return True
    # Loopback and private ranges only when the operator asked for them (tests, a local
    # receiver); link-local (cloud metadata at 169.254.169.254), multicast and unspecified never.
    return allow_loopback and (address.is_loopback or address.is_private) and not (
        address.is_link_local or address.is_multicast or address.is_unspecified)


def check_callback_url(url: str, settings: Settings) -> str:
    """The URL if a callback may go there, else InvalidRequest (422) saying why."""
    if len(url) > MAX_CALLBACK_URL_CHARS:
        raise InvalidRequest(f"callback_url is over {MAX_CALLBACK_URL_CHARS} characters")
    if not settings.callback_hosts:
        raise InvalidRequest("callback_url is not accepted here: CLAIMFIRST_CALLBACK_HOSTS is empty")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"callback_url is not a URL: {exc}") from None
    schemes = ("https", "http") if settings.callback_allow_loopback else ("https",)
    if parts.scheme not in schemes:
        raise InvalidRequest("callback_url must be an https URL")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest("callback_url may not hold credentials: the signature authenticates the service")
    host = (parts.hostname or "").rstrip(".")
    if not host or any(c.isspace() or ord(c) < 33 for c in url) or port == 0:
        raise InvalidRequest("callback_url has no valid host")
    if not host_allowed(host, settings.callback_hosts):
        raise InvalidRequest(f"callback_url's host {host} is not in CLAIMFIRST_CALLBACK_HOSTS")
    literal = _address(host)
    if literal is not None and not _usable(literal, settings.callback_allow_loopback):
        raise InvalidRequest(f"callback_url's address {host} is not public")
    if literal is None and host in ("localhost", "localhost.localdomain") and not settings.callback_allow_loopback:
        raise InvalidRequest("callback_url's host is loopback")
    return url


async def resolve_target(url: str, settings: Settings) -> Target:
    """The address to deliver `url` to, checked now; InvalidRequest when it may not be reached."""
    check_callback_url(url, settings)
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = _address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise InvalidRequest(f"cannot resolve {host}: {exc.strerror or exc}") from None
        addresses = [a for a in (_address(str(info[4][0]).split("%")[0]) for info in infos) if a is not None]
    if not addresses:
        raise InvalidRequest(f"{host} resolves to no address")
    # Every address must pass, not one: which one a client would use is not ours to predict.
    for address in addresses:
        if not _usable(address, settings.callback_allow_loopback):
            raise InvalidRequest(f"{host} resolves to {address}, which is not public")
    chosen = addresses[0]
    netloc = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    if parts.port is not None:
        netloc += f":{parts.port}"
    return Target(parts._replace(netloc=netloc).geturl(), host, str(chosen))
