"""The reference service as a replay target: start it as a subprocess, or check one given by URL.

`started_service` runs ``python -m service`` on a free loopback port with a throwaway SQLite
database, the simulated generator and per-request simulation hints switched on, waits until
``/healthz`` answers, and stops it afterwards. `check_service` is the ``--url`` side: the
service must answer ``/healthz`` and ``/stats``, and run the policy the replay asks for.

A service given by ``--url`` must have been started with ``CLAIMFIRST_SIM_HINTS=true``;
otherwise it ignores the ``X-Sim-Seconds`` / ``X-Sim-Fail`` headers and every generation takes
its own configured duration instead of the historical one.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from audit.frames import AuditError
from audit.replay.client import auth_headers
from service.process import ServiceStartError, free_port, serve_subprocess

__all__ = ["ServiceConfig", "ServiceUnavailable", "started_service", "check_service", "free_port"]


class ServiceUnavailable(AuditError):
    """The service could not be started, or the one given by URL does not answer."""


@dataclass(frozen=True)
class ServiceConfig:
    """What a started service needs for a faithful replay.

    ``duplicate_window_hours`` is already scaled by the replay's speedup (a 24 h window
    replayed 60x faster lasts 24 minutes), ``lease_seconds`` and ``timeout_seconds`` are long
    enough for the longest scaled generation, ``max_concurrent`` at least the number of
    requests: the bot had no concurrency limit, so the replay must not add one.
    """

    policy: str
    db_latency_ms: float = 0.0
    duplicate_window_hours: float = 24.0
    lease_seconds: float = 30.0
    timeout_seconds: float = 600.0
    max_concurrent: int = 4
    seed: int = 0

    def environment(self, database_url: str) -> dict[str, str]:
        return {
            "DATABASE_URL": database_url,
            "CLAIMFIRST_POLICY": self.policy,
            "CLAIMFIRST_SIM_HINTS": "true",
            "CLAIMFIRST_SIM_SEED": str(self.seed),
            "CLAIMFIRST_DB_LATENCY_MS": f"{self.db_latency_ms:g}",
            "CLAIMFIRST_DUPLICATE_WINDOW_HOURS": f"{self.duplicate_window_hours:g}",
            "CLAIMFIRST_LEASE_SECONDS": f"{self.lease_seconds:g}",
            "CLAIMFIRST_GENERATION_TIMEOUT_SECONDS": f"{self.timeout_seconds:g}",
            "CLAIMFIRST_MAX_CONCURRENT_GENERATIONS": str(self.max_concurrent),
        }


@contextlib.contextmanager
def started_service(config: ServiceConfig) -> Iterator[str]:
    """Run the reference service for the duration of the block; yield its base URL."""
    with tempfile.TemporaryDirectory(prefix="claimfirst-replay-") as workdir:
        database_url = f"sqlite:///{Path(workdir) / 'replay.db'}"
        try:
            with serve_subprocess(config.environment(database_url), Path(workdir), cwd=Path(workdir)) as handle:
                yield handle.url
        except ServiceStartError as exc:  # raised only while starting: the block never ran
            raise ServiceUnavailable(str(exc)) from exc


def check_service(url: str, policy: str, *, api_key: str | None = None) -> dict:
    """Check that the service at `url` answers and runs `policy`; return its /stats."""
    try:
        with httpx.Client(timeout=5.0, headers=auth_headers(api_key)) as client:
            client.get(f"{url}/healthz").raise_for_status()
            answer = client.get(f"{url}/stats")
            if answer.status_code == 401:
                hint = "the key was refused" if api_key else "pass --api-key or set CLAIMFIRST_API_KEY"
                raise ServiceUnavailable(f"the service at {url} requires an API key: {hint}")
            stats = answer.raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ServiceUnavailable(f"cannot reach the service at {url}: {exc}") from exc
    if stats.get("policy") != policy:
        raise ServiceUnavailable(
            f"the service at {url} runs policy {stats.get('policy')!r}, not {policy!r}; "
            f"start it with CLAIMFIRST_POLICY={policy}"
        )
    return stats
