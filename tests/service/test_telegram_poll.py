"""`python -m service telegram poll` against the stand-in Bot API, as a real process, on SQLite and PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, func, select, update

from service.stores.models import TelegramPollOffset, Video
from service.telegram.poll import bot_id_of
from tests.service.live import ROOT, wait_until
from tests.stand_ins.telegram import DEFAULT_SECRET, DEFAULT_TOKEN, StandInTelegram, message_update

FIRST_ID = 700_000_001
USERS = range(1, 6)


@contextmanager
def poller(db_url: str, telegram: StandInTelegram, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": db_url, "TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN,
           # No TELEGRAM_WEBHOOK_SECRET: polling serves no webhook, so it needs none.
           "TELEGRAM_API_BASE": telegram.base_url,
           "CLAIMFIRST_SIM_SECONDS": "60"}  # no outcome message during the test: only the replies
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "service", "telegram", "poll", "--poll-seconds", "1"],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def stopped(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(30)


def videos_by_user(db_url: str) -> dict[int, int]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(select(Video.tg_user_id, func.count()).group_by(Video.tg_user_id)).all())
    finally:
        engine.dispose()


def saved_offset(db_url: str) -> int | None:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(TelegramPollOffset.next_offset)
                                .where(TelegramPollOffset.bot_id == bot_id_of(DEFAULT_TOKEN))).scalar_one_or_none()
    finally:
        engine.dispose()


def set_offset(db_url: str, next_offset: int) -> None:
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(update(TelegramPollOffset).values(next_offset=next_offset))
    finally:
        engine.dispose()


def replies_by_chat(telegram: StandInTelegram) -> Counter[int]:
    """The answers to a /create (they quote it), per chat; not the outcome messages (a stopping
    poller fails the generations it runs and says so, as the served bot does)."""
    return Counter(body["chat_id"] for body in telegram.sent("sendMessage") if "reply_parameters" in body)


def test_a_restart_mid_batch_handles_every_update_once(db_url: str, tmp_path) -> None:
    updates = [message_update(f"/create video number {user}", user_id=user, update_id=FIRST_ID + user - 1)
               for user in USERS]
    log = tmp_path / "poll.log"
    with StandInTelegram() as telegram:
        telegram.queue(*updates)
        # Two updates answered; the third's reply waits, so the stop lands in the middle of the batch.
        telegram.hold("sendMessage", after=2)
        with poller(db_url, telegram, log) as first:
            wait_until(lambda: telegram.holding.is_set() or first.poll() is not None, what="the third reply")
            assert first.poll() is None, log.read_text()[-2000:]
            first.send_signal(signal.SIGTERM)
            wait_until(lambda: "stop asked" in log.read_text(), what=lambda: f"the stop; log: {log.read_text()[-500:]}")
            telegram.release()  # the update in hand finishes (its reply goes out), then the poller exits
            assert first.wait(30) == 0, log.read_text()[-2000:]
        assert videos_by_user(db_url) == {1: 1, 2: 1, 3: 1}
        assert saved_offset(db_url) == FIRST_ID + 3
        assert replies_by_chat(telegram) == {1: 1, 2: 1, 3: 1}
        assert telegram.deliveries == [update["update_id"] for update in updates]  # one batch of five

        # As if the offsets saved after updates 2 and 3 had been lost (a kill between handling
        # and saving): the restart is handed updates 2 and 3 again, and must not act on them.
        set_offset(db_url, FIRST_ID + 1)
        with poller(db_url, telegram, log) as second:
            wait_until(lambda: videos_by_user(db_url) == {user: 1 for user in USERS},
                       what=lambda: f"a video per user; saw {videos_by_user(db_url)}")
            wait_until(lambda: sum(replies_by_chat(telegram).values()) >= 5, what="an answer per /create")
            wait_until(lambda: saved_offset(db_url) == FIRST_ID + 5, what="the offset past the last update")
            assert stopped(second) == 0, log.read_text()[-2000:]
        assert telegram.deliveries[5:] == [FIRST_ID + 1, FIRST_ID + 2, FIRST_ID + 3, FIRST_ID + 4]
        assert replies_by_chat(telegram) == {user: 1 for user in USERS}  # none twice, none lost
        assert telegram.webhook is None and "deleteWebhook" in telegram.methods()
    assert "Traceback" not in log.read_text()


def test_polling_the_real_bot_api_with_the_simulated_generator_by_default_is_refused(tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN,
           "TELEGRAM_WEBHOOK_SECRET": DEFAULT_SECRET}  # the default TELEGRAM_API_BASE: Telegram itself
    result = subprocess.run([sys.executable, "-m", "service", "telegram", "poll"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("service: error: refusing to answer Telegram users with the simulated generator")
    assert DEFAULT_TOKEN.split(":")[1] not in result.stderr and not (tmp_path / "x.db").exists()
