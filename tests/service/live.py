"""Real `python -m service` processes (uvicorn on loopback) for concurrency and crash tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from service.process import ServiceProcess, serve_subprocess

ROOT = Path(__file__).resolve().parents[2]


def wait_until(
    condition: Callable[[], object], *, timeout: float = 20.0, what: str | Callable[[], str] = "condition",
    every: float = 0.05,
) -> object:
    """Poll `condition` until it returns something truthy; fail the test after `timeout` s.

    `what` names what was awaited in the failure; a callable is asked then, so it can say
    what was seen instead."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")
        time.sleep(every)


@contextmanager
def live_service(
    database_url: str, log_dir: Path, *, prefix: Sequence[str] = (), extra_env: Mapping[str, str] | None = None,
    log_level: str = "warning", **settings: object,
) -> Iterator[ServiceProcess]:
    """`python -m service` on `database_url` with CLAIMFIRST_* `settings`; `prefix` wraps the command."""
    env = {"DATABASE_URL": database_url, **{f"CLAIMFIRST_{k.upper()}": str(v) for k, v in settings.items()},
           **(extra_env or {})}
    with serve_subprocess(env, log_dir, cwd=ROOT, prefix=prefix, log_level=log_level) as service:
        yield service
