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
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from audit.frames import AuditError
from service.storage import make_engine, migrate

__all__ = ["ServiceConfig", "ServiceUnavailable", "started_service", "check_service", "free_port"]

# Starting the service runs the Alembic migration on a new SQLite file: well under a second
# on a laptop, several on a loaded CI runner sharing two cores with other test workers.
STARTUP_DEADLINE_SECONDS = 30.0
# How often to ask /healthz while the service starts: short next to the startup time, long
# enough not to busy-loop the core the service needs to start.
POLL_SECONDS = 0.05
# uvicorn's graceful shutdown cancels in-flight generations (each marks its video failed);
# after this long it is killed: nothing it still holds matters once the replay has its numbers.
STOP_DEADLINE_SECONDS = 10.0
# A port picked by binding port 0 can be taken by someone else before the service binds it;
# try again with a new port this many times.
PORT_ATTEMPTS = 3


_MIGRATION_LOCK = threading.Lock()


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


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def started_service(config: ServiceConfig) -> Iterator[str]:
    """Run the reference service for the duration of the block; yield its base URL."""
    with tempfile.TemporaryDirectory(prefix="claimfirst-replay-") as workdir:
        database_url = f"sqlite:///{Path(workdir) / 'replay.db'}"
        _create_schema(database_url)
        env = {**os.environ, **config.environment(database_url)}
        log_path = Path(workdir) / "service.log"
        for attempt in range(PORT_ATTEMPTS):
            port = free_port()
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port),
                     "--log-level", "warning"],
                    env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                )
            url = f"http://127.0.0.1:{port}"
            try:
                if _wait_healthy(url, process):
                    break
            except BaseException:
                _stop(process)
                raise
            _stop(process)
            if attempt == PORT_ATTEMPTS - 1:
                raise ServiceUnavailable(f"the service did not start: {_tail(log_path)}")
        try:
            yield url
        finally:
            _stop(process)


def _create_schema(database_url: str) -> None:
    """Migrate the new database here, before the service starts.

    The service would do it at startup, but with the replayed latency on every statement:
    a hundred-odd statements at 50 ms is seconds of waiting that imitate no request. The
    service's own migration then finds the schema current and does next to nothing.
    Alembic keeps its context in module globals, so concurrent replays (one thread each,
    `audit.replay_compare`) migrate one at a time.
    """
    engine = make_engine(database_url)
    try:
        with _MIGRATION_LOCK:
            migrate(engine)
    finally:
        engine.dispose()


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> bool:
    """True once /healthz answers 200; False if the process exits first (port taken, bad setting)."""
    deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                if client.get(f"{url}/healthz").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(POLL_SECONDS)
    raise ServiceUnavailable(f"the service did not answer /healthz within {STARTUP_DEADLINE_SECONDS:g} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(path: Path, lines: int = 5) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return " | ".join(text[-lines:]) or "no output"


def check_service(url: str, policy: str) -> dict:
    """Check that the service at `url` answers and runs `policy`; return its /stats."""
    try:
        with httpx.Client(timeout=5.0) as client:
            client.get(f"{url}/healthz").raise_for_status()
            stats = client.get(f"{url}/stats").raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ServiceUnavailable(f"cannot reach the service at {url}: {exc}") from exc
    if stats.get("policy") != policy:
        raise ServiceUnavailable(
            f"the service at {url} runs policy {stats.get('policy')!r}, not {policy!r}; "
            f"start it with CLAIMFIRST_POLICY={policy}"
        )
    return stats
