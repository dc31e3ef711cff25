"""Replay of a request log against the service, one policy at a time.

Modules, each one concern:

- `schedule`: what is sent and when (the log's times and historical durations, scaled);
- `service`: the reference service as a target (started as a subprocess, or checked by URL);
- `client`: the HTTP side (send on time, authenticate, wait for the service to drain);
- `run`: `replay` itself and its summary;
- `compare`: every policy side by side, and their race windows next to history's (notebook 02);
- `cli`: ``python -m audit replay``.
"""

from __future__ import annotations

import importlib

from audit.replay.cli import main, read_csv, register
from audit.replay.schedule import DEFAULT_DURATION_RANGE, DEFAULT_SPEEDUP, POLICIES, build_schedule, burst_requests

# Loaded on first use (PEP 562): `python -m audit` imports this package to register the
# command, and these load the HTTP client (httpx) that only a replay uses.
_LAZY = {"ReplayResult": "run", "replay": "run", "ServiceUnavailable": "service", "free_port": "service"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"audit.replay.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_DURATION_RANGE",
    "DEFAULT_SPEEDUP",
    "POLICIES",
    "ReplayResult",
    "ServiceUnavailable",
    "build_schedule",
    "burst_requests",
    "free_port",
    "main",
    "read_csv",
    "register",
    "replay",
]
