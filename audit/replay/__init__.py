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

from audit.replay.cli import main, read_csv, register
from audit.replay.run import POLICIES, ReplayResult, replay
from audit.replay.schedule import DEFAULT_DURATION_RANGE, DEFAULT_SPEEDUP, build_schedule, burst_requests
from audit.replay.service import ServiceUnavailable, free_port

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
