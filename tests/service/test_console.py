"""The `claimfirst` console script (issue 19, part 6): serve | migrate | telegram | audit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.service.live import ROOT

CLAIMFIRST = str(Path(sys.executable).parent / "claimfirst")


def claimfirst(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLAIMFIRST, *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", **env})


def test_each_word_runs_its_command(sqlite_url: str) -> None:
    assert claimfirst("--help").returncode == 0
    assert "--workers" in claimfirst("serve", "--help").stdout
    assert claimfirst("migrate", "--check", DATABASE_URL=sqlite_url).returncode == 1
    assert claimfirst("migrate", DATABASE_URL=sqlite_url).returncode == 0
    assert claimfirst("migrate", "--check", DATABASE_URL=sqlite_url).returncode == 0
    assert "set-webhook" in claimfirst("telegram", "--help").stdout
    audit = claimfirst("audit", "--help")
    assert audit.returncode == 0 and "sweep" in audit.stdout, audit.stderr


def test_an_unknown_word_is_one_line() -> None:
    result = claimfirst("deploy")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("claimfirst: error: expected a command: {serve | migrate | telegram | audit}")
