"""The audit's copy of the service's defaults (`audit.defaults`) and what importing the
streaming sweep's modules loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import audit.defaults
import service.settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_audit_applies_the_services_defaults() -> None:
    for name in audit.defaults.__all__:
        assert getattr(audit.defaults, name) == getattr(service.settings, name), name


def test_a_sweep_worker_loads_neither_the_services_settings_nor_the_page() -> None:
    # What a spawned worker unpickles: the tasks' functions and the CLI's initializer. In a
    # fresh interpreter, since this test's own process has imported everything already.
    script = ("import sys\n"
              "import audit.cli, audit.stream.partition, audit.stream.shard\n"
              "heavy = sorted({'plotly', 'pydantic', 'sqlalchemy', 'rapidfuzz', 'httpx', 'rich'} & set(sys.modules))\n"
              "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
