"""Secrets nowhere (issue 18): each secret planted in every place it can enter the service and the
audit, then every output grepped for it: the service's logs (text and JSON, uvicorn's access
lines, tracebacks) and error lines, the audit's error lines, summary.json, report.html and
duplicates.csv. Real processes on real PostgreSQL, whose trust authentication ignores the
planted passwords: the service and the audit run with them, as they would with real ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from service.process import free_port
from tests.service.live import ROOT, live_service
from tests.stand_ins.telegram import message_update

PASSWORD = "pw-in-userinfo-0451"
QUERY_PASSWORD = "pw-in-query-7319"
SSL_PASSWORD = "sslpw-in-query-2264"
API_KEY = "api-key-planted-0123456789"
REPLICATE_TOKEN = "r8_planted_replicate_token_5821"
TELEGRAM_TOKEN = "123456789:AAE-planted-telegram-token-77"
WEBHOOK_SECRET = "planted-webhook-secret-3390"
CALLBACK_SECRET = "whsec_cGxhbnRlZC1jYWxsYmFjay1zZWNyZXQtNDQxNzI5"  # base64 of 30 planted bytes
SECRETS = (PASSWORD, QUERY_PASSWORD, SSL_PASSWORD, API_KEY, REPLICATE_TOKEN, TELEGRAM_TOKEN,
           TELEGRAM_TOKEN.split(":")[1], WEBHOOK_SECRET, CALLBACK_SECRET, CALLBACK_SECRET.removeprefix("whsec_"))

pytestmark = pytest.mark.postgres


def _with_userinfo(url: str) -> str:
    return make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def _with_query(url: str) -> str:
    # libpq's form of the issue: the password as a query parameter, beside the socket's host
    return f"{url}&password={QUERY_PASSWORD}&sslpassword={SSL_PASSWORD}"


def _leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def _exercise(service_url: str) -> None:
    """Every request through which a secret can reach a log line."""
    key = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=service_url, timeout=10) as client:
        client.get("/healthz", headers={"X-Request-ID": API_KEY})
        assert client.post("/create", json={"tg_user_id": 1, "prompt": f"a prompt {REPLICATE_TOKEN}"},
                           headers={**key, "X-Request-ID": API_KEY}).status_code == 202
        # A signed callback to a receiver that is not there: its failed attempts are logged.
        assert client.post("/create", json={"tg_user_id": 1, "prompt": "called back",
                                            "callback_url": f"http://127.0.0.1:{free_port()}/hook"},
                           headers=key).status_code == 202
        client.get(f"/videos/1?token={API_KEY}", headers={**key, "X-Request-ID": WEBHOOK_SECRET})
        client.get("/stats", headers={"Authorization": f"Bearer {REPLICATE_TOKEN}"})  # 401
        # The bot replies through a Bot API that is not there: httpx's line names the token's URL.
        update = client.post("/telegram/webhook", json=message_update("/create a secret video"),
                             headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET, "X-Request-ID": API_KEY})
        assert update.status_code == 200
        client.post("/telegram/webhook", json=message_update("/start"),
                    headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_TOKEN})  # refused: wrong secret


@pytest.mark.parametrize("log_format, plant", [("text", _with_userinfo), ("json", _with_query)])
def test_a_running_service_logs_no_secret(pg_url: str, tmp_path: Path, log_format: str, plant) -> None:
    env = {"CLAIMFIRST_API_KEYS": API_KEY, "REPLICATE_API_TOKEN": REPLICATE_TOKEN,
           "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
           "TELEGRAM_API_BASE": f"http://127.0.0.1:{free_port()}", "CLAIMFIRST_CALLBACK_HOSTS": "127.0.0.1",
           "CLAIMFIRST_CALLBACK_SECRET": CALLBACK_SECRET, "CLAIMFIRST_CALLBACK_ALLOW_LOOPBACK": "true",
           "CLAIMFIRST_CALLBACK_POLL_SECONDS": "0.1", "CLAIMFIRST_CALLBACK_RETRY_FIRST_SECONDS": "0.1"}
    with live_service(plant(pg_url), tmp_path, extra_env=env, log_level="debug", log_format=log_format,
                      sim_seconds=0.01) as service:
        _exercise(service.url)
    log = service.log_path.read_text()
    # The lines that could leak were written, masked.
    assert "GET /videos/1?token=*** " in log and "Telegram sendMessage: could not reach" in log
    if log_format == "json":
        assert '"request_id": "[redacted]"' in log
    assert _leaks(log) == []


@pytest.mark.parametrize("plant", [_with_userinfo, _with_query])
def test_the_service_error_lines_name_no_secret(pg_url: str, plant) -> None:
    port = free_port()  # nothing listens there: the database is unreachable
    unreachable = make_url(plant(pg_url)).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    down = _run("service", env={"DATABASE_URL": unreachable, "CLAIMFIRST_REQUEST_TIMEOUT_SECONDS": "2"})
    assert down.returncode == 1 and "cannot prepare the database" in down.stderr
    unsupported = _run("service", env={"DATABASE_URL": plant(pg_url).replace("postgresql+psycopg", "mysql", 1)})
    assert unsupported.returncode == 2 and "service: error:" in unsupported.stderr
    for done in (down, unsupported):
        assert _leaks(done.stdout + done.stderr) == [], done.stderr


@pytest.mark.parametrize("plant", [_with_userinfo, _with_query])
def test_the_audit_writes_no_secret(pg_url: str, tmp_path: Path, plant) -> None:
    # A database with a duplicate in it, made by the service itself.
    with live_service(pg_url, tmp_path, sim_seconds=0.01, duplicate_window_hours=0.0001) as service:
        for _ in range(2):
            httpx.post(f"{service.url}/create", json={"tg_user_id": 1, "prompt": "twice"}, timeout=10)
    out = tmp_path / "reports"
    swept = _run("audit", "sweep", "--database-url", plant(pg_url), "--since", "2000-01-01", "--out", str(out),
                 "--no-progress")
    assert swept.returncode == 0, swept.stderr
    outputs = {name: (out / name).read_text() for name in ("summary.json", "report.html", "duplicates.csv")}
    assert '"source": "database postgresql+psycopg://postgres:' in outputs["summary.json"]
    unreachable = make_url(plant(pg_url)).set(host="127.0.0.1", port=free_port()).render_as_string(hide_password=False)
    failed = _run("audit", "sweep", "--database-url", unreachable, "--out", str(tmp_path / "none"), "--no-progress")
    assert failed.returncode == 2 and failed.stderr.startswith("audit: error: ")
    for name, text in {**outputs, "stdout": swept.stdout + swept.stderr, "error line": failed.stderr}.items():
        assert _leaks(text) == [], (name, _leaks(text))
