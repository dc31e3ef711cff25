"""Replay fixtures: the incident's request log and videos, and a service started by the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from audit.replay import read_csv
from service.process import serve_subprocess

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
    """`python -m service` under `claim` with simulation hints, started by the test itself."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'svc.db'}", "CLAIMFIRST_POLICY": "claim",
           "CLAIMFIRST_SIM_HINTS": "true"}
    with serve_subprocess(env, tmp_path, cwd=tmp_path) as service:
        yield service.url
