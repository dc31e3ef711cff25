"""Real `python -m service` processes (uvicorn on loopback) for concurrency and crash tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], object], *, timeout: float = 20.0, what: str = "condition") -> object:
    """Poll `condition` until it returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class LiveService:
    process: subprocess.Popen
    url: str
    log_path: Path

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/stats", timeout=5).json()

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)


def _healthy(url: str, process: subprocess.Popen, log_path: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"service exited early:\n{log_path.read_text()}")
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def live_service(database_url: str, log_dir: Path, **settings: object) -> Iterator[LiveService]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url}
    env.update({f"CLAIMFIRST_{k.upper()}": str(v) for k, v in settings.items()})
    log_path = log_dir / f"service-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(url, process, log_path), what=f"service on port {port}")
        yield LiveService(process, url, log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # in case a test left it frozen
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
