"""Settings from the environment, and what `python -m service` does with bad ones."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from service.settings import Settings, describe_settings_error, normalize_database_url

from tests.service.live import ROOT


@pytest.mark.parametrize(
    ("given", "expected"),
    [("postgres://u:p@db.railway.internal:5432/app", "postgresql+psycopg://u:p@db.railway.internal:5432/app"),
     ("postgresql://u:p@host/app", "postgresql+psycopg://u:p@host/app"),
     ("postgresql+psycopg://u:p@host/app", "postgresql+psycopg://u:p@host/app"),
     ("sqlite:///data/claimfirst.db", "sqlite:///data/claimfirst.db")],
)
def test_database_urls_from_railway_and_heroku_use_psycopg3(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_environment_is_read_with_the_documented_names(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@h/db")
    monkeypatch.setenv("CLAIMFIRST_DUPLICATE_WINDOW_HOURS", "12")
    monkeypatch.setenv("CLAIMFIRST_LEASE_SECONDS", "9")
    monkeypatch.setenv("CLAIMFIRST_SIM_SECONDS", "2,5")
    monkeypatch.setenv("CLAIMFIRST_SIM_FAILURE_RATE", "0.25")
    monkeypatch.setenv("CLAIMFIRST_COST_PER_VIDEO_USD", "3.5")
    monkeypatch.setenv("CLAIMFIRST_REQUEST_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("CLAIMFIRST_DB_POOL_SIZE", "3")
    monkeypatch.setenv("CLAIMFIRST_DB_MAX_OVERFLOW", "1")
    monkeypatch.setenv("CLAIMFIRST_MAX_QUEUED_GENERATIONS", "7")
    s = Settings()
    assert (s.database_url, s.duplicate_window_hours, s.lease_seconds) == ("postgresql+psycopg://u:p@h/db", 12, 9)
    assert (s.sim_seconds, s.sim_failure_rate, s.cost_per_video_usd) == ((2.0, 5.0), 0.25, 3.5)
    assert s.policy == "claim"
    assert (s.request_timeout_seconds, s.db_pool_size, s.db_max_overflow, s.max_queued_generations) == (2.5, 3, 1, 7)


def test_guard_settings_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("CLAIMFIRST_API_KEYS", " 0123456789abcdef0123 ,,fedcba9876543210fedc, ")
    monkeypatch.setenv("CLAIMFIRST_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("CLAIMFIRST_WORKERS", "3")
    s = Settings()
    assert [key.get_secret_value() for key in s.api_keys] == ["0123456789abcdef0123", "fedcba9876543210fedc"]
    assert "0123456789abcdef0123" not in repr(s) and "0123456789abcdef0123" not in str(s)
    assert (s.max_body_bytes, s.workers, s.allow_anonymous) == (4096, 3, False)


def test_a_rejected_setting_never_echoes_its_value(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://admin:hunter2-secret@db.example.com:port/app")
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert "hunter2" not in str(raised.value) and "DATABASE_URL" in str(raised.value)
    monkeypatch.setenv("DATABASE_URL", "sqlite:///x.db")
    monkeypatch.setenv("CLAIMFIRST_API_KEYS", "0123456789abcdef,tiny-secret")
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert "tiny-secret" not in str(raised.value)
    assert describe_settings_error(raised.value) == (
        "CLAIMFIRST_API_KEYS entry 2 key: must be at least 16 visible ASCII characters without spaces")
    # The JSON form, scoped keys: a broken array is named, never quoted (json's message quotes it).
    monkeypatch.setenv("CLAIMFIRST_API_KEYS", '[{"name": "bot", "key": "0123456789abcdef-secret"')
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert "secret" not in str(raised.value)
    assert describe_settings_error(raised.value) == (
        "CLAIMFIRST_API_KEYS: not a JSON array of keys, nor comma-separated keys")


def test_scoped_keys_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("CLAIMFIRST_API_KEYS", '[{"name": "ops", "key": "0123456789abcdef-ops"},'
                       ' {"name": "dashboard", "key": "0123456789abcdef-dash", "scopes": ["metrics"]},'
                       ' {"name": "one-user", "key": "0123456789abcdef-user", "scopes": ["create", "read"],'
                       ' "tg_user_ids": [42]}]')
    ops, dashboard, one_user = Settings().api_keys
    assert (ops.name, ops.scopes, ops.tg_user_ids) == ("ops", {"create", "read", "metrics", "admin"}, None)
    assert (dashboard.scopes, one_user.scopes, one_user.tg_user_ids) == ({"metrics"}, {"create", "read"}, {42})
    for bad, why in [('[{"name": "x", "key": "0123456789abcdef-x", "scopes": ["write"]}]', "entry 1 scopes entry 1"),
                     ('[{"name": "x", "key": "0123456789abcdef-x", "tg_user_ids": [0]}]', "entry 1 tg_user_ids"),
                     ('[{"name": "x", "key": "0123456789abcdef-x"}, {"name": "x", "key": "0123456789abcdef-y"}]',
                      "two keys have one name"),
                     ('[{"name": "x", "key": "0123456789abcdef-x", "scope": ["read"]}]', "entry 1 scope")]:
        monkeypatch.setenv("CLAIMFIRST_API_KEYS", bad)
        with pytest.raises(ValidationError) as raised:
            Settings()
        assert why in describe_settings_error(raised.value) and "0123456789abcdef" not in str(raised.value)


def test_defaults(monkeypatch) -> None:
    for name in ("DATABASE_URL", "CLAIMFIRST_SIM_SECONDS", "CLAIMFIRST_POLICY"):
        monkeypatch.delenv(name, raising=False)
    s = Settings()
    assert s.database_url == "sqlite:///data/claimfirst.db" and s.duplicate_window_hours == 24
    assert s.cost_per_video_usd == 4 and s.sim_seconds == (3.0, 8.0)
    assert (s.api_keys, s.max_body_bytes, s.limit_concurrency, s.keepalive_seconds, s.workers) == ((), 65536, 512, 5, 1)


@pytest.mark.parametrize(
    ("name", "value"),
    [("CLAIMFIRST_SIM_SECONDS", "5,2"), ("CLAIMFIRST_SIM_SECONDS", "soon"), ("CLAIMFIRST_SIM_FAILURE_RATE", "1.5"),
     ("CLAIMFIRST_POLICY", "yolo"), ("CLAIMFIRST_LEASE_SECONDS", "0"), ("CLAIMFIRST_API_KEYS", "short"),
     ("CLAIMFIRST_API_KEYS", "0123456789abcdef,with a space inside"), ("CLAIMFIRST_MAX_BODY_BYTES", "10"),
     ("CLAIMFIRST_LIMIT_CONCURRENCY", "0"), ("CLAIMFIRST_KEEPALIVE_SECONDS", "0"), ("CLAIMFIRST_WORKERS", "0"),
     ("DATABASE_URL", "mysql://u:p@h/db"), ("DATABASE_URL", "not a url")],
)
def test_bad_setting_is_refused(monkeypatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_service_refuses_to_start_with_a_bad_setting(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "--port", "1"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "CLAIMFIRST_SIM_FAILURE_RATE": "2", "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"},
    )
    assert result.returncode == 2
    assert result.stderr == (
        "service: error: bad setting: CLAIMFIRST_SIM_FAILURE_RATE: Input should be less than or equal to 1\n"
    )
    assert not (tmp_path / "x.db").exists()


def test_service_says_so_in_one_line_when_the_database_is_down(tmp_path) -> None:
    from service.process import free_port

    result = subprocess.run(
        [sys.executable, "-m", "service", "--port", "1"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": f"postgres://claimfirst:secret@127.0.0.1:{free_port()}/x"},
    )
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("service: error: cannot prepare the database") and "database unavailable" in last_line
    assert "Traceback" not in result.stderr and "secret" not in result.stderr
