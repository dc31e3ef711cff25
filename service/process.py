"""Run `python -m service` as a child process on a free loopback port.

For whoever needs a real service next to them: incident replay, the concurrency and crash
tests, the benchmarks. `serve_subprocess` starts it with the given environment, waits until
`/healthz` answers, yields a handle, and stops it (SIGTERM, so in-flight generations are marked
failed; SIGKILL after a grace period).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["ServiceProcess", "ServiceStartError", "serve_subprocess", "free_port"]

# Starting runs the Alembic migration: well under a second on a laptop, several seconds on
# a loaded two-core CI runner that is also running other services.
STARTUP_DEADLINE_SECONDS = 30.0
# Short next to the startup time, long enough not to busy-loop the core the service needs.
POLL_SECONDS = 0.05
# uvicorn's graceful shutdown cancels in-flight generations (each marks its video failed);
# a process still alive after this long is killed.
STOP_DEADLINE_SECONDS = 10.0
# A port picked by binding port 0 can be taken by someone else before the child binds it.
PORT_ATTEMPTS = 3


class ServiceStartError(RuntimeError):
    """The child service exited or did not answer /healthz in time."""


@dataclass
class ServiceProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/stats", timeout=5).raise_for_status().json()

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def log_tail(self, lines: int = 5) -> str:
        text = self.log_path.read_text(errors="replace").strip().splitlines() if self.log_path.exists() else []
        return " | ".join(text[-lines:]) or "no output"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_subprocess(
    env: Mapping[str, str], log_dir: Path, *, cwd: Path | None = None, prefix: Sequence[str] = (),
    log_level: str = "warning",
) -> Iterator[ServiceProcess]:
    """Run the service with `env` added to this process's environment; yield its handle.

    `prefix` goes before the interpreter, e.g. `("env", "LD_PRELOAD=…/libfaketime.so.1",
    "FAKETIME=+40s")` to run the service on a skewed clock. It must exec the interpreter, not
    run it as a child (the `faketime` command does): the handle stops the process it started."""
    full_env = {**os.environ, **env}
    for attempt in range(PORT_ATTEMPTS):
        port = free_port()
        log_path = Path(log_dir) / f"service-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*prefix, sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port),
                 "--log-level", log_level],
                env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
            )
        handle = ServiceProcess(process, f"http://127.0.0.1:{port}", log_path)
        try:
            if _wait_healthy(handle):
                break
        except BaseException:
            _stop(process)
            raise
        _stop(process)
        if attempt == PORT_ATTEMPTS - 1:
            raise ServiceStartError(f"the service did not start: {handle.log_tail()}")
    try:
        yield handle
    finally:
        _stop(handle.process)


def _wait_healthy(handle: ServiceProcess) -> bool:
    """True once /healthz answers 200; False if the process exits first (port taken, bad setting)."""
    deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if handle.process.poll() is not None:
                return False
            try:
                if client.get(f"{handle.url}/healthz").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(POLL_SECONDS)
    raise ServiceStartError(f"the service did not answer /healthz within {STARTUP_DEADLINE_SECONDS:g} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
        process.terminate()
        try:
            process.wait(STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
