"""`/create` in an aiogram or python-telegram-bot bot (issue 19, part 5): the real frameworks,
the stand-in Bot API on loopback, the claim on both databases. Each test runs under both."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from service import Settings
from service.stores.engine import make_engine
from service.telegram import replies
from tests.service.bot_frameworks import FRAMEWORKS, running_bot
from tests.stand_ins.telegram import StandInTelegram, message_update, recorded_update

PROMPT = "Smart wallets as digital assistants..."
USER = 5012345678

pytestmark = pytest.mark.parametrize("framework", FRAMEWORKS)


def videos(database_url: str) -> list[dict[str, Any]]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text("SELECT * FROM videos ORDER BY id")).mappings()]
    finally:
        engine.dispose()


def test_three_identical_creates_at_once_make_one_generation_and_two_already_asked(framework: str,
                                                                                   db_url: str) -> None:
    async def scenario(telegram: StandInTelegram) -> None:
        async with running_bot(framework, telegram, Settings(database_url=db_url, sim_seconds="0.5")) as bot:
            await asyncio.gather(*(bot.feed(message_update(f"/create {PROMPT}")) for _ in range(3)))
            await bot.settle()

    with StandInTelegram() as telegram:
        asyncio.run(scenario(telegram))
    (video,) = videos(db_url)
    assert (video["tg_user_id"], video["prompt"], video["status"]) == (USER, PROMPT, "ready")
    answers = [body["text"] for body in telegram.sent("sendMessage")]
    assert answers.count(replies.started(video["id"])) == 1
    already = [text for text in answers if text.startswith("You already asked for this video (")]
    assert len(already) == 2 and len(answers) == 3
    assert all(f"): video {video['id']} " in text and text.endswith("Nothing new was started.") for text in already)
    quoted = {"message_id": message_update("/create x")["message"]["message_id"], "allow_sending_without_reply": True}
    assert all(body["chat_id"] == USER and body["reply_parameters"] == quoted for body in telegram.sent("sendMessage"))
    (sent,) = telegram.sent("sendVideo")
    assert sent == {"chat_id": USER, "video": video["video_url"], "caption": replies.ready_caption(video["id"])}
    started_at = next(c.at for c in telegram.calls if c.body.get("text") == replies.started(video["id"]))
    assert next(c.at for c in telegram.calls if c.method == "sendVideo") >= started_at  # "started", then the video


def test_a_failed_generation_is_told_with_the_built_in_words(framework: str, sqlite_url: str) -> None:
    async def scenario(telegram: StandInTelegram) -> None:
        settings = Settings(database_url=sqlite_url, sim_seconds="0.1", sim_failure_rate=1.0)
        async with running_bot(framework, telegram, settings) as bot:
            await bot.feed(message_update(f"/create {PROMPT}"))
            await bot.settle()

    with StandInTelegram() as telegram:
        asyncio.run(scenario(telegram))
    (video,) = videos(sqlite_url)
    started, failed = telegram.sent("sendMessage")
    assert started["text"] == replies.started(video["id"])
    assert failed == {"chat_id": USER, "text": replies.failed(video["id"], video["error"])}
    assert "simulated" in failed["text"] and telegram.sent("sendVideo") == []


def test_a_video_telegram_cannot_fetch_is_sent_as_its_link(framework: str, sqlite_url: str) -> None:
    async def scenario(telegram: StandInTelegram) -> None:
        async with running_bot(framework, telegram, Settings(database_url=sqlite_url, sim_seconds="0.1")) as bot:
            telegram.fault("sendVideo", status=400)
            await bot.feed(message_update(f"/create {PROMPT}"))
            await bot.settle()

    with StandInTelegram() as telegram:
        asyncio.run(scenario(telegram))
    (video,) = videos(sqlite_url)
    assert [body["text"] for body in telegram.sent("sendMessage")] == [
        replies.started(video["id"]), replies.ready_link(video["id"], video["video_url"])]


@pytest.mark.parametrize("text, problem", [("/create", None), ("/create   ...!  ", "prompt is empty"),
                                           (f"/create {'x' * 2001}", "too long")])
def test_a_prompt_post_create_would_refuse_is_answered_and_claims_nothing(framework: str, sqlite_url: str,
                                                                          text: str, problem: str | None) -> None:
    async def scenario(telegram: StandInTelegram) -> None:
        async with running_bot(framework, telegram, Settings(database_url=sqlite_url)) as bot:
            await bot.feed(message_update(text))

    with StandInTelegram() as telegram:
        asyncio.run(scenario(telegram))
    (answer,) = telegram.sent("sendMessage")
    assert answer["text"].startswith("I can't start that: ") and answer["text"].endswith(replies.usage())
    if problem is None:
        assert answer["text"] == replies.invalid_prompt(None)
    else:
        assert problem in answer["text"]
    assert videos(sqlite_url) == []


def test_a_busy_service_says_so_and_claims_nothing(framework: str, sqlite_url: str) -> None:
    async def scenario(telegram: StandInTelegram) -> None:
        settings = Settings(database_url=sqlite_url, sim_seconds="30", max_concurrent_generations=1,
                            max_queued_generations=0)
        async with running_bot(framework, telegram, settings) as bot:
            await bot.feed(message_update("/create one"))
            await bot.feed(message_update("/create two"))

    with StandInTelegram() as telegram:
        asyncio.run(scenario(telegram))
    started, busy, stopped = (body["text"] for body in telegram.sent("sendMessage"))
    assert busy.startswith("I'm busy right now") and "Nothing was started" in busy
    (video,) = videos(sqlite_url)
    assert video["prompt"] == "one" and started == replies.started(video["id"])
    assert stopped.startswith(f"Sorry, video {video['id']} failed: ")  # the bot stopped first: told, not lost


def test_a_database_that_does_not_answer_is_told_and_starts_nothing(framework: str, db_url: str) -> None:
    async def scenario(telegram: StandInTelegram) -> None:
        settings = Settings(database_url=db_url, sim_seconds="0.1", request_timeout_seconds=0.5)
        async with running_bot(framework, telegram, settings) as bot:
            with database_locked(db_url):
                await bot.feed(message_update(f"/create {PROMPT}"))

    with StandInTelegram() as telegram:
        asyncio.run(scenario(telegram))
    assert [body["text"] for body in telegram.sent("sendMessage")][:1] == [replies.unavailable()]


def test_only_a_persons_create_to_this_bot_is_taken(framework: str, sqlite_url: str) -> None:
    addressed = recorded_update("update_create_group_addressed")  # /create@claimfirst_bot in a group
    elsewhere = message_update("/create@some_other_bot a lighthouse in a storm", user_id=77)
    from_a_bot = message_update("/create a bot's request", user_id=78)
    from_a_bot["message"]["from"]["is_bot"] = True
    edited = message_update("/create an edited request", user_id=79)
    edited["edited_message"] = edited.pop("message")

    async def scenario(telegram: StandInTelegram) -> None:
        async with running_bot(framework, telegram, Settings(database_url=sqlite_url, sim_seconds="0.1")) as bot:
            for update in (addressed, elsewhere, from_a_bot, edited):
                await bot.feed(update)
            await bot.settle()

    with StandInTelegram() as telegram:
        asyncio.run(scenario(telegram))
    (video,) = videos(sqlite_url)
    assert (video["prompt"], video["tg_user_id"]) == ("a lighthouse in a storm, cinematic", USER)
    (started,) = telegram.sent("sendMessage")
    group = addressed["message"]["chat"]["id"]
    assert started["chat_id"] == group and started["reply_parameters"]["message_id"] == addressed["message"]["message_id"]
    assert [body["chat_id"] for body in telegram.sent("sendVideo")] == [group]


@contextmanager
def database_locked(database_url: str) -> Iterator[None]:
    """Another session holds the videos table: every claim waits past its time bound."""
    if database_url.startswith("sqlite"):
        blocker = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        return
    conninfo = sa.make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as blocker:
        blocker.execute("LOCK TABLE videos IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            blocker.rollback()
