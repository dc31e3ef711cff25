"""`python -m service telegram set-webhook`: against the stand-in Bot API, one line either way."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.process import free_port
from service.telegram import cli
from tests.service.live import ROOT
from tests.stand_ins.telegram import DEFAULT_SECRET, DEFAULT_TOKEN, StandInTelegram

URL = "https://bot.example.com/telegram/webhook"


def set_webhook(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "telegram", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={"PATH": "/usr/bin:/bin", **env},
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2 and result.stdout == "", result
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("service: error: "), result.stderr
    assert DEFAULT_TOKEN.split(":")[1] not in result.stderr and DEFAULT_SECRET not in result.stderr
    return result.stderr


def test_set_webhook_registers_the_url_with_the_secret_and_message_updates_only() -> None:
    with StandInTelegram() as telegram:
        result = set_webhook("set-webhook", "--url", URL, TELEGRAM_BOT_TOKEN=DEFAULT_TOKEN,
                             TELEGRAM_WEBHOOK_SECRET=DEFAULT_SECRET, TELEGRAM_API_BASE=telegram.base_url)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"webhook set: Telegram delivers message updates to {URL}\n" and result.stderr == ""
        assert telegram.webhook == {"url": URL, "secret_token": DEFAULT_SECRET, "allowed_updates": ["message"],
                                    "drop_pending_updates": False}


def test_a_token_telegram_refuses_is_one_line() -> None:
    with StandInTelegram(token="7000000001:AAE_another_bots_token") as telegram:
        result = set_webhook("set-webhook", "--url", URL, TELEGRAM_BOT_TOKEN=DEFAULT_TOKEN,
                             TELEGRAM_WEBHOOK_SECRET=DEFAULT_SECRET, TELEGRAM_API_BASE=telegram.base_url)
        assert one_error_line(result) == "service: error: Telegram setWebhook: Unauthorized\n"
        assert telegram.webhook is None


# In-process from here: the same `main` the subprocess runs, without paying an interpreter start each.


def run_in_process(args: list[str], env: dict[str, str], monkeypatch, capsys) -> subprocess.CompletedProcess[str]:
    for name in ("TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "TELEGRAM_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        cli.main(args)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, exited.value.code, out, err)


def test_an_unreachable_bot_api_is_one_line_after_its_retries(monkeypatch, capsys) -> None:
    env = {"TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN, "TELEGRAM_WEBHOOK_SECRET": DEFAULT_SECRET,
           "TELEGRAM_API_BASE": f"http://127.0.0.1:{free_port()}"}
    result = run_in_process(["set-webhook", "--url", URL], env, monkeypatch, capsys)
    assert "could not reach the Bot API (ConnectError)" in one_error_line(result)


@pytest.mark.parametrize(("args", "env", "says"), [
    (["set-webhook", "--url", "http://bot.example.com/telegram/webhook"], {}, "--url must be an https:// URL"),
    (["set-webhook", "--url", URL], {}, "TELEGRAM_BOT_TOKEN is not set"),
    (["set-webhook", "--url", URL], {"TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN},
     "TELEGRAM_WEBHOOK_SECRET is required with TELEGRAM_BOT_TOKEN to serve the webhook"),
    (["set-webhook"], {}, "the following arguments are required: --url"),
    (["unset-everything"], {}, "invalid choice: 'unset-everything'"),
], ids=["http", "no token", "no secret", "no url", "unknown action"])
def test_bad_invocations_are_one_line(args, env, says, monkeypatch, capsys) -> None:
    assert says in one_error_line(run_in_process(args, env, monkeypatch, capsys))
