"""Replay fixtures: the incident's request log and videos, and a service started by the test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from audit.replay import read_csv
from audit.replay_service import free_port

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "data" / "fixtures"
INCIDENT_USER = 6891234507


@pytest.fixture(scope="session")
def videos() -> pd.DataFrame:
    return read_csv(FIXTURES / "videos.csv", kind="videos")


@pytest.fixture(scope="session")
def incident_requests() -> pd.DataFrame:
    """The three "Smart wallets…" requests of 2025-10-15 that produced videos 54, 55, 56."""
    requests = read_csv(FIXTURES / "requests.csv", kind="requests")
    incident = requests[requests["video_id"].isin([54, 55, 56])]
    assert list(incident["tg_user_id"].unique()) == [INCIDENT_USER]
    return incident.reset_index(drop=True)


@pytest.fixture
def running_service(tmp_path: Path) -> Iterator[str]:
    """`python -m service` under `claim` with simulation hints, on a free loopback port.

    Started here, not through `audit.replay_service`, so the `--url` test does not lean on
    the code path it is meant to replace.
    """
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'svc.db'}", "CLAIMFIRST_POLICY": "claim",
           "CLAIMFIRST_SIM_HINTS": "true"}
    log = (tmp_path / "svc.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "svc.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "service did not become healthy"
            time.sleep(0.05)  # polling interval, not synchronisation
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
