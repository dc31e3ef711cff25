"""The Telegram webhook end to end: the real app on both databases, the stand-in Bot API on
loopback, updates shaped as Telegram delivers them (tests/service/recordings/telegram/)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import httpx
import pytest

from service.telegram.webhook import SECRET_HEADER, WEBHOOK_PATH
from tests.service.app_client import running_app
from tests.service.live import live_service, wait_until
from tests.service.telegram_app import bot_app, deliver, rows, settle
from tests.stand_ins.telegram import DEFAULT_SECRET, StandInTelegram, message_update, recorded_update

PROMPT = "Smart wallets as digital assistants..."
USER = 5012345678


def test_create_claims_once_answers_at_once_then_sends_the_video(db_url: str, caplog) -> None:
    caplog.set_level(logging.INFO)
    with StandInTelegram() as telegram, bot_app(db_url, telegram) as client:
        answer = deliver(client, message_update(f"/create   {PROMPT}  "))
        assert answer.status_code == 200 and answer.json() == {"ok": True}
        settle(client)
        (video,), deliveries = rows(client)
        assert deliveries == 1
        assert (video["tg_user_id"], video["prompt"], video["status"]) == (USER, PROMPT, "ready")
        assert telegram.methods() == ["sendMessage", "sendVideo"]  # "started" first, then the video
        (started,) = telegram.sent("sendMessage")
        assert started["chat_id"] == USER and started["text"].startswith(f"Generating video {video['id']}.")
        (sent,) = telegram.sent("sendVideo")
        assert sent == {"chat_id": USER, "video": video["video_url"], "caption": f"Video {video['id']} is ready."}
    assert telegram.token not in caplog.text and "/bot<token>/sendMessage" in caplog.text  # httpx's line, redacted


def test_the_same_prompt_again_is_told_which_video_holds_it_and_claims_nothing(db_url: str) -> None:
    with StandInTelegram() as telegram, bot_app(db_url, telegram) as client:
        deliver(client, message_update(f"/create {PROMPT}"))
        settle(client)
        assert deliver(client, message_update(f"/create {PROMPT.upper()}")).status_code == 200
        settle(client)
        (video,), deliveries = rows(client)
        assert deliveries == 2
        first, again = telegram.sent("sendMessage")
        assert f"video {video['id']} is ready: {video['video_url']}" in again["text"]
        assert again["text"].endswith("Nothing new was started.")
        assert len(telegram.sent("sendVideo")) == 1


def test_a_redelivered_update_gets_one_reply_and_one_claim(db_url: str) -> None:
    with StandInTelegram() as telegram, bot_app(db_url, telegram, sim_seconds="30") as client:
        update = message_update(f"/create {PROMPT}")
        assert deliver(client, update).status_code == 200
        assert deliver(client, update).status_code == 200  # Telegram saw no 2xx in time: the same update again
        client.portal.call(client.app.state.telegram.drain)
        videos, deliveries = rows(client)
        assert len(videos) == 1 and deliveries == 1
        assert len(telegram.sent("sendMessage")) == 1


def test_a_wrong_or_missing_secret_is_401_and_writes_nothing(sqlite_url: str) -> None:
    with StandInTelegram() as telegram, bot_app(sqlite_url, telegram) as client:
        for secret in (None, "", "wrong", DEFAULT_SECRET[:-1], DEFAULT_SECRET + "x", DEFAULT_SECRET.upper()):
            answer = deliver(client, message_update(f"/create {PROMPT}"), secret=secret)
            assert answer.status_code == 401, secret
            assert DEFAULT_SECRET not in answer.text
        # Refused before the body is read: not even invalid JSON gets further than 401.
        assert client.post(WEBHOOK_PATH, content=b"{not json", headers={SECRET_HEADER: "wrong"}).status_code == 401
        settle(client)
        assert rows(client) == ([], 0) and telegram.calls == []


@pytest.mark.parametrize("kind", ["update_plain_text", "update_photo_caption", "update_edited_message",
                                  "update_channel_post", "update_callback_query", "update_other_command"])
def test_other_updates_get_200_and_nothing_else(sqlite_url: str, kind: str) -> None:
    with StandInTelegram() as telegram, bot_app(sqlite_url, telegram) as client:
        assert deliver(client, recorded_update(kind)).status_code == 200
        settle(client)
        assert rows(client) == ([], 0) and telegram.calls == []


def test_a_failing_generation_is_told_once(sqlite_url: str) -> None:
    with StandInTelegram() as telegram, bot_app(sqlite_url, telegram, sim_failure_rate=1.0) as client:
        deliver(client, message_update(f"/create {PROMPT}"))
        settle(client)
        (video,), _ = rows(client)
        assert video["status"] == "failed"
        started, failed = telegram.sent("sendMessage")
        assert started["text"].startswith(f"Generating video {video['id']}")
        assert failed["text"].startswith(f"Sorry, video {video['id']} failed: ") and "simulated" in failed["text"]
        assert telegram.methods() == ["sendMessage", "sendMessage"]


def test_create_addressed_to_this_bot_by_name_claims_and_to_another_bot_does_not(db_url: str) -> None:
    with StandInTelegram() as telegram, bot_app(db_url, telegram) as client:
        addressed = recorded_update("update_create_group_addressed")
        assert deliver(client, addressed).status_code == 200
        deliver(client, message_update("/create@some_other_bot a lighthouse in a storm, cinematic", user_id=77))
        settle(client)
        (video,), deliveries = rows(client)
        assert (video["prompt"], video["tg_user_id"], deliveries) == ("a lighthouse in a storm, cinematic", USER, 1)
        assert telegram.methods().count("getMe") == 1  # learned once
        (started,) = telegram.sent("sendMessage")
        group = addressed["message"]["chat"]["id"]
        assert started["chat_id"] == group and started["reply_parameters"]["message_id"] == addressed["message"]["message_id"]
        assert telegram.sent("sendVideo")[0]["chat_id"] == group


@pytest.mark.parametrize(("text", "says"), [
    ("/create", "you did not say what the video should show"),
    ("/create   \n ", "you did not say what the video should show"),
    ("/create ...!!!", "prompt is empty"),
    ("/create \u200b\u2060", "prompt is empty"),
    ("/create " + "x" * 2001, "the description is too long (the limit is 2000 characters)"),
], ids=["nothing", "blank", "punctuation", "invisible", "too long"])
def test_a_prompt_post_create_would_refuse_gets_a_helpful_reply_and_no_claim(sqlite_url: str, text, says) -> None:
    with StandInTelegram() as telegram, bot_app(sqlite_url, telegram) as client:
        assert deliver(client, message_update(text)).status_code == 200
        settle(client)
        (reply,) = telegram.sent("sendMessage")
        assert reply["text"].startswith(f"I can't start that: {says}") and "/create a red fox" in reply["text"]
        assert rows(client)[0] == []


def test_start_and_help_explain_how_to_ask(sqlite_url: str) -> None:
    with StandInTelegram() as telegram, bot_app(sqlite_url, telegram) as client:
        deliver(client, recorded_update("update_start"))
        deliver(client, message_update("/help"))
        settle(client)
        assert [m["text"].splitlines()[0] for m in telegram.sent("sendMessage")] == [
            "Send /create followed by what the video should show, for example:"] * 2
        assert rows(client)[0] == []


def test_a_busy_service_says_so_and_claims_nothing(sqlite_url: str) -> None:
    with StandInTelegram() as telegram, bot_app(sqlite_url, telegram, sim_seconds="30", max_concurrent_generations=1,
                                                max_queued_generations=0) as client:
        deliver(client, message_update("/create one"))
        deliver(client, message_update("/create two"))
        client.portal.call(client.app.state.telegram.drain)
        started, busy = telegram.sent("sendMessage")
        assert busy["text"].startswith("I'm busy right now") and "Nothing was started" in busy["text"]
        assert [v["prompt"] for v in rows(client)[0]] == ["one"]


def test_a_locked_database_answers_503_then_the_redelivery_is_taken(sqlite_url: str) -> None:
    with StandInTelegram() as telegram, bot_app(sqlite_url, telegram, request_timeout_seconds=0.5) as client:
        update = message_update(f"/create {PROMPT}")
        blocker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # the database stops answering writes
        try:
            answer = deliver(client, update)
            assert answer.status_code == 503 and answer.headers["Retry-After"]
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # Nothing claimed, nothing said. (The delivery itself may have been recorded a moment
        # after the 503: then its redelivery is the one that acts on it.)
        assert rows(client)[0] == [] and telegram.calls == []
        assert deliver(client, update).status_code == 200  # Telegram delivers it again
        settle(client)
        assert len(rows(client)[0]) == 1 and telegram.methods() == ["sendMessage", "sendVideo"]


def test_a_record_that_commits_after_its_503_is_acted_on_by_the_redelivery(db_url: str) -> None:
    # Every statement starts 0.8 s late, past the 0.5 s bound: each record_update answers 503
    # and then commits anyway. Without the hand-over the redelivery would find the update
    # "seen" and nobody would ever answer it.
    with StandInTelegram() as telegram, bot_app(db_url, telegram, request_timeout_seconds=0.5,
                                                db_latency_ms=800) as client:
        update = message_update(f"/create {PROMPT}")
        assert deliver(client, update).status_code == 503
        wait_until(lambda: rows(client)[1] == 1, what="the late record committed")
        assert telegram.calls == []
        assert deliver(client, update).status_code == 200
        client.portal.call(client.app.state.telegram.drain)
        # The claim is as slow as the record, so this one reply says the database did not answer.
        (reply,) = telegram.sent("sendMessage")
        assert reply["text"].startswith("I can't reach my database right now")


def test_flood_control_is_waited_out_as_telegram_asks(sqlite_url: str) -> None:
    with StandInTelegram() as telegram, bot_app(sqlite_url, telegram) as client:
        telegram.fault("sendMessage", status=429, retry_after=1)
        deliver(client, message_update(f"/create {PROMPT}"))
        settle(client)
        throttled, retried = [c for c in telegram.calls if c.method == "sendMessage"]
        assert (throttled.status, retried.status) == (429, 200) and retried.body == throttled.body
        assert retried.at - throttled.at >= 1.0
        assert telegram.methods()[-1] == "sendVideo"


def test_a_video_telegram_cannot_fetch_is_sent_as_its_link(sqlite_url: str) -> None:
    with StandInTelegram() as telegram, bot_app(sqlite_url, telegram) as client:
        telegram.fault("sendVideo", status=400)
        deliver(client, message_update(f"/create {PROMPT}"))
        settle(client)
        (video,), _ = rows(client)
        assert telegram.sent("sendMessage")[-1]["text"] == f"Video {video['id']} is ready. {video['video_url']}"
        assert telegram.sent("sendVideo") == []


def test_a_blocked_bot_loses_the_reply_but_the_claim_stands(sqlite_url: str) -> None:
    with StandInTelegram() as telegram, bot_app(sqlite_url, telegram) as client:
        telegram.fault("sendMessage", status=403)
        assert deliver(client, message_update(f"/create {PROMPT}")).status_code == 200
        settle(client)
        assert [c.status for c in telegram.calls] == [403, 200]  # not retried; the video still goes out
        assert rows(client)[0][0]["status"] == "ready"


def test_a_generation_cut_short_by_a_shutdown_is_told_before_the_service_stops(sqlite_url: str) -> None:
    with StandInTelegram() as telegram:
        with bot_app(sqlite_url, telegram, sim_seconds="600") as client:
            deliver(client, message_update(f"/create {PROMPT}"))
            telegram.wait_for("sendMessage")
        # The app has stopped: the runner cancelled the generation, then the bot said so.
        started, stopped = telegram.sent("sendMessage")
        assert stopped["text"].startswith("Sorry, video ") and "service stopped during generation" in stopped["text"]


def test_a_body_that_is_not_an_update_is_422_and_writes_nothing(sqlite_url: str) -> None:
    with StandInTelegram() as telegram, bot_app(sqlite_url, telegram) as client:
        for body in (b"{not json", b"[]", b'{"message": {}}', b'{"update_id": -1}', b'{"update_id": 99999999999999999999}'):
            answer = client.post(WEBHOOK_PATH, content=body, headers={SECRET_HEADER: DEFAULT_SECRET,
                                                                       "Content-Type": "application/json"})
            assert answer.status_code == 422, body
        assert rows(client) == ([], 0) and telegram.calls == []


def test_without_a_token_there_is_no_webhook(sqlite_url: str) -> None:
    with running_app(sqlite_url) as client:
        assert client.post(WEBHOOK_PATH, json=message_update(f"/create {PROMPT}")).status_code == 404
        assert WEBHOOK_PATH not in client.get("/openapi.json").json()["paths"]


def test_the_service_as_a_process_answers_a_create_from_telegram(pg_url: str, tmp_path: Path) -> None:
    with StandInTelegram() as telegram, live_service(
        pg_url, tmp_path, telegram_bot_token=telegram.token, telegram_webhook_secret=DEFAULT_SECRET,
        telegram_api_base=telegram.base_url, sim_seconds="0.2",
    ) as service:
        update = message_update(f"/create {PROMPT}")
        for _ in range(2):  # delivered, then redelivered
            answer = httpx.post(f"{service.url}{WEBHOOK_PATH}", json=update, headers={SECRET_HEADER: DEFAULT_SECRET})
            assert answer.status_code == 200
        (sent,) = telegram.wait_for("sendVideo")
        assert sent["chat_id"] == USER and sent["video"].endswith(".mp4")
        wait_until(lambda: service.stats()["ready"] == 1, what="the video recorded ready")
        assert len(telegram.sent("sendMessage")) == 1 and service.stats()["submitted"] == 1
        assert telegram.token not in service.log_path.read_text()
