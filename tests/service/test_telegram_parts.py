"""The Telegram bot's parts: reading commands, the Bot API client against the recorded answers
(httpx.MockTransport at the HTTP boundary), the delivery log on both databases, the settings."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
from pydantic import ValidationError

from service import NewVideo, Settings
from service.housekeeping import UPDATE_MEMORY
from service.prompt_key import prompt_key
from service.generation.runner import VideoOutcome
from service.telegram.api import Message, Update, command_of
from service.telegram.client import BotApi, RetryPolicy, TelegramApiError
from tests.service.app_client import drain, running_app, runtime
from tests.stand_ins.telegram import DEFAULT_TOKEN, RECORDINGS, recorded_update
from tests.stores import age

NO_WAIT = RetryPolicy(attempts=3, backoff_base_seconds=0, backoff_cap_seconds=0, retry_after_cap_seconds=0)


def message(text: str, length: int, offset: int = 0) -> Message:
    update = recorded_update("update_create_private")
    update["message"].update(text=text, entities=[{"offset": offset, "length": length, "type": "bot_command"}])
    return Update.model_validate(update).message  # type: ignore[return-value]


# -- commands ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "length", "expected"), [
    ("/create a cat", 7, ("create", None, "a cat")),
    ("/create@ClaimFirst_Bot  a cat ", 22, ("create", "claimfirst_bot", "a cat")),
    ("/Create\na cat\non two lines", 7, ("create", None, "a cat\non two lines")),
    # entity lengths count UTF-16 units: the emoji after the command is two of them
    ("/create 🦊 in snow", 7, ("create", None, "🦊 in snow")),
    ("/start", 6, ("start", None, "")),
])
def test_a_command_is_read_from_its_entity(text: str, length: int, expected: tuple) -> None:
    command = command_of(message(text, length))
    assert command is not None and (command.name, command.addressee, command.argument) == expected


@pytest.mark.parametrize(("text", "length", "offset"), [
    ("please /create a cat", 7, 7),  # a command not at the start
    ("🦊/create", 1, 0),  # an entity that ends inside a character
    ("create a cat", 6, 0),  # no slash
])
def test_what_is_not_a_leading_command_is_none(text: str, length: int, offset: int) -> None:
    assert command_of(message(text, length, offset)) is None


def test_every_recorded_update_parses_and_only_messages_carry_one() -> None:
    kinds = {path.stem: Update.model_validate(json.loads(path.read_text())["update"])
             for path in RECORDINGS.glob("update_*.json")}
    assert {name for name, update in kinds.items() if update.message is None} == {
        "update_edited_message", "update_channel_post", "update_callback_query"}
    assert kinds["update_create_private"].message.sender.id == 5012345678  # type: ignore[union-attr]


# -- the Bot API client ---------------------------------------------------------------------


def recorded(name: str) -> httpx.Response:
    response = json.loads((RECORDINGS / f"{name}.json").read_text())["response"]
    return httpx.Response(response["status"], headers=response["headers"], json=response["body"])


def call_against(*answers: httpx.Response | Exception, retry: RetryPolicy = NO_WAIT) -> tuple[object, list[httpx.Request]]:
    queue, seen = list(answers), []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        next_answer = queue.pop(0)
        if isinstance(next_answer, Exception):
            raise next_answer
        return next_answer

    async def run() -> object:
        api = BotApi(DEFAULT_TOKEN, "https://api.telegram.org", retry=retry, transport=httpx.MockTransport(answer))
        try:
            return await api.call("sendMessage", {"chat_id": 1, "text": "hi"})
        except TelegramApiError as exc:
            return exc
        finally:
            await api.aclose()

    return asyncio.run(run()), seen


def test_a_call_posts_json_to_the_methods_url_and_returns_its_result() -> None:
    result, (request,) = call_against(recorded("sendMessage_ok"))
    assert str(request.url) == f"https://api.telegram.org/bot{DEFAULT_TOKEN}/sendMessage"
    assert json.loads(request.content) == {"chat_id": 1, "text": "hi"}
    assert result["message_id"] == 224  # type: ignore[index]


def test_flood_control_and_5xx_are_retried_then_succeed() -> None:
    result, seen = call_against(recorded("error_429_flood"), httpx.Response(502, text="<html>Bad Gateway</html>"),
                                recorded("sendMessage_ok"))
    assert len(seen) == 3 and result["text"]  # type: ignore[index]


def test_retry_after_is_what_the_next_try_waits() -> None:
    policy = RetryPolicy(retry_after_cap_seconds=30)
    assert policy.delay(1, 3) == 3 and RetryPolicy(retry_after_cap_seconds=2).delay(1, 3) == 2
    assert 0.5 <= policy.delay(2, None) <= 1.0  # no retry_after: the 1 s backoff, jittered


@pytest.mark.parametrize(("answer", "message"), [
    ("error_403_blocked", "Telegram sendMessage: Forbidden: bot was blocked by the user"),
    ("error_401_unauthorized", "Telegram sendMessage: Unauthorized"),
    ("error_400_video_url", "Telegram sendMessage: Bad Request: wrong file identifier/HTTP URL specified"),
])
def test_a_client_error_is_final_at_once_in_telegrams_words(answer: str, message: str) -> None:
    error, seen = call_against(recorded(answer))
    assert isinstance(error, TelegramApiError) and str(error) == message and len(seen) == 1


def test_a_request_that_may_have_been_carried_out_is_not_sent_again() -> None:
    error, seen = call_against(httpx.ReadTimeout("timed out"))
    assert isinstance(error, TelegramApiError) and "may have been carried out" in str(error) and len(seen) == 1


def test_a_connection_that_never_opened_is_retried_then_given_up_without_the_token() -> None:
    error, seen = call_against(*[httpx.ConnectError("refused")] * 3)
    assert isinstance(error, TelegramApiError) and len(seen) == 3
    assert str(error) == "Telegram sendMessage: could not reach the Bot API (ConnectError)"


def test_the_token_never_reaches_a_log_line(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    call_against(recorded("error_429_flood"), recorded("sendMessage_ok"))
    assert "/bot<token>/sendMessage" in caplog.text and DEFAULT_TOKEN not in caplog.text
    assert DEFAULT_TOKEN.split(":")[1] not in repr(BotApi(DEFAULT_TOKEN, "https://api.telegram.org"))


# -- the delivery log, on both databases ---------------------------------------------------


def test_record_update_is_true_once_per_update_id_even_when_raced(store) -> None:
    assert store.record_update(815196407) is True
    assert store.record_update(815196407) is False

    async def race() -> list[bool]:
        return await asyncio.gather(*(store._store.record_update(2**62) for _ in range(8)))

    assert sorted(store._runner.run(race())) == [False] * 7 + [True]


def test_deliveries_older_than_telegram_redelivers_are_forgotten(store) -> None:
    assert store.record_update(1) is True
    age(store.url, hours=47)
    assert store.record_update(2) is True
    assert store.forget_updates(UPDATE_MEMORY, 10) == 0  # 47 h: Telegram could not redeliver it, but kept
    age(store.url, hours=2)
    assert store.forget_updates(UPDATE_MEMORY, 10) == 1  # update 1, now 49 h old
    assert store.record_update(2) is False  # update 2 (2 h old) still recognised as a redelivery
    assert store.record_update(1) is True  # forgotten: a new delivery, as far as the table knows
    for update_id in range(100, 105):
        store.record_update(update_id)
    age(store.url, hours=49)
    assert [store.forget_updates(UPDATE_MEMORY, 3) for _ in range(3)] == [3, 3, 1]  # 7 old: at most 3 each


# -- settings ---------------------------------------------------------------------------------


def test_the_bot_is_enabled_by_the_token_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "abc_DEF-123")
    monkeypatch.setenv("TELEGRAM_API_BASE", "http://127.0.0.1:9/")
    settings = Settings()
    assert settings.telegram_enabled and settings.telegram_api_base == "http://127.0.0.1:9"
    assert DEFAULT_TOKEN not in repr(settings) and "abc_DEF-123" not in repr(settings)
    assert not Settings(telegram_bot_token="").telegram_enabled


@pytest.mark.parametrize(("values", "named", "says"), [
    ({"telegram_bot_token": DEFAULT_TOKEN, "telegram_webhook_secret": "has space"}, "telegram_webhook_secret",
     "1-256 characters"),
    ({"telegram_bot_token": DEFAULT_TOKEN, "telegram_webhook_secret": "x" * 257}, "telegram_webhook_secret",
     "1-256 characters"),
    ({"telegram_bot_token": "7000000001/AAE_secret?x", "telegram_webhook_secret": "s"}, "telegram_bot_token",
     "not a bot token"),
    ({"telegram_api_base": "api.telegram.org"}, "telegram_api_base", "expected an http(s) URL"),
])
def test_bad_telegram_settings_are_refused_by_name_without_their_value(values, named, says) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**values)
    text = str(refused.value)
    assert named in text and says in text and "AAE_" not in text and "has space" not in text


# -- the runner's outcome hook ----------------------------------------------------------------


def test_the_outcome_hook_hears_each_recorded_outcome_once_and_its_failure_harms_nothing(sqlite_url: str, caplog) -> None:
    heard: list[VideoOutcome] = []

    async def listen(outcome: VideoOutcome) -> None:
        heard.append(outcome)
        raise RuntimeError("a listener with a bug")

    with running_app(sqlite_url) as client:
        async def create(prompt: str) -> int | None:
            admission = await runtime(client).create(NewVideo(42, prompt, prompt_key(prompt)), on_outcome=listen)
            return admission.video_id

        first = client.portal.call(create, "a cat")
        drain(client)
        second = client.portal.call(create, "a dog")  # the runner is still serving
        drain(client)
        assert [(o.video_id, o.status) for o in heard] == [(first, "ready"), (second, "ready")]
        assert heard[0].video_url == client.get(f"/videos/{first}").json()["video_url"]
        assert runtime(client).runner.stats.ready == 2
    assert "the outcome listener failed" in caplog.text


def test_a_token_without_a_webhook_secret_is_refused_only_where_the_webhook_is_served(tmp_path, monkeypatch) -> None:
    """Long polling and a bot embedding ClaimFirst have a token and no webhook: they need no
    secret. Serving the webhook without one would let anyone who finds its URL start videos."""
    import subprocess
    import sys

    from service import ClaimFirst
    from service.app import create_app

    database_url = f"sqlite:///{tmp_path}/bot.db"
    settings = Settings(telegram_bot_token=DEFAULT_TOKEN, database_url=database_url)
    assert settings.telegram_enabled and settings.telegram_webhook_secret is None

    async def embedded() -> None:
        async with ClaimFirst(settings) as cf:
            assert (await cf.create(7, "A token and no webhook")).video_id > 0

    asyncio.run(embedded())
    with pytest.raises(ValueError, match="TELEGRAM_WEBHOOK_SECRET is required with TELEGRAM_BOT_TOKEN"):
        create_app(settings)
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url, "TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN}
    served = subprocess.run([sys.executable, "-m", "service", "--port", "0"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert served.returncode == 2 and served.stdout == "" and served.stderr.count("\n") == 1, served.stderr
    assert "TELEGRAM_WEBHOOK_SECRET is required" in served.stderr and DEFAULT_TOKEN not in served.stderr
