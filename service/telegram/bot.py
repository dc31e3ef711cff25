"""`TelegramBot`: one webhook delivery in; a claim and the replies out.

    delivery ──▶ a /create, /start or /help from a person? ──no──▶ 200, nothing written
                   │ yes
                   ▼
             record_update(update_id)  ── database down ──▶ StorageUnavailable: 503, Telegram redelivers
                   │ new                ── seen before ──▶ 200, nothing (a redelivery)
                   ▼
             /create: validate the prompt as CreateRequest does ── bad ──▶ reply why, no claim
                   ▼
             runtime.create(…)  (the same claim as POST /create) ──▶ reply: started / duplicate /
                   │                                                 busy (429) / database down (503)
                   ▼ later, once the outcome is recorded
             sendVideo (or the link, if Telegram cannot fetch it) / one failure message

The delivery is recorded before the claim and in its own statement, so a redelivery never
claims again and never replies twice: at most once, not exactly once. A process that dies
between the two leaves that one request unanswered (the user sends it again), which is better
than a second claim attempt answering "duplicate" to the user's own first request.

A record that misses the request's time bound is answered 503, but the statement may still
commit afterwards (a lock released a moment later, a database that froze and came back). Its
answer is then kept for the redelivery, which acts on it instead of finding the update "seen"
and dropping a request nobody handled. That hand-over is per process: a redelivery that lands
on another worker process in that window is dropped (the user asks again).

Replies are sent by background tasks, so Telegram gets its 200 at once, and each request's
notification waits for its first reply to be sent, so "started" always comes before the video
even when a generation takes no time. `close` gives the last sends a moment before the app stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from service.claim import FAILED, READY, NewVideo
from service.errors import ClaimContention, DuplicateRequest, InvalidRequest, LimitReached, StorageUnavailable, Throttled
from service.prompt_key import prompt_key
from service.generation.runner import VideoOutcome
from service.http.schemas import CreateRequest
from service.telegram import replies
from service.telegram.api import Command, Message, Update, command_of
from service.telegram.client import BotApi, TelegramApiError

if TYPE_CHECKING:
    from service.runtime import Runtime

__all__ = ["TelegramBot", "COMMANDS"]

log = logging.getLogger("claimfirst.telegram")

COMMANDS = frozenset({"create", "start", "help"})
# On shutdown, how long replies still being sent are given before they are cancelled: above
# one Bot API round trip with a retry, below uvicorn's own grace period.
CLOSE_GRACE_SECONDS = 5.0
# Records kept for a redelivery (see the module docstring) are few: one per delivery that hit
# the time bound. The cap only matters when the redeliveries land on other processes, which
# would otherwise leave the won ones here for good.
MAX_KEPT_RECORDS = 1024


class TelegramBot:
    def __init__(self, runtime: Runtime, api: BotApi) -> None:
        self.runtime = runtime
        self.api = api
        self._username: str | None = None  # learned from getMe the first time a command names a bot
        self._tasks: set[asyncio.Task[None]] = set()
        # update_id -> a record_update that outlived its delivery's time bound (see above)
        self._recording: dict[int, asyncio.Future[bool]] = {}

    @classmethod
    def from_settings(cls, runtime: Runtime) -> TelegramBot:
        settings = runtime.settings
        assert settings.telegram_bot_token is not None  # only built when the bot is enabled
        return cls(runtime, BotApi(settings.telegram_bot_token.get_secret_value(), settings.telegram_api_base))

    async def drain(self) -> None:
        """Wait until every reply started so far has been sent (or given up)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.drain(), CLOSE_GRACE_SECONDS)
        except TimeoutError:
            log.warning("%d Telegram replies still unsent at shutdown: dropped", len(self._tasks))
        pending = [*self._tasks, *self._recording.values()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.api.aclose()

    # -- a delivery ----------------------------------------------------------------------

    async def take(self, update: Update) -> None:
        """Handle one delivery. Raises StorageUnavailable when it cannot be recorded (the
        webhook answers 503 and Telegram delivers it again); anything else is a 200."""
        message = update.message
        if message is None or message.sender is None or message.sender.is_bot:
            return  # an edit, a channel post, a button press, a bot: not a request
        command = command_of(message)
        if command is None or command.name not in COMMANDS or not await self._addressed_to_me(command):
            return
        if not await self._first_delivery(update.update_id):
            log.info("update %s delivered again: already answered", update.update_id)
            return
        if command.name == "create":
            await self._create(message, command.argument)
        else:
            self._spawn(self._say(message, replies.usage(), quote=False))

    async def _first_delivery(self, update_id: int) -> bool:
        """record_update within the request's time bound: True when this delivery is the one to act."""
        recording = self._recording.pop(update_id, None)
        if recording is None or (recording.done() and (recording.cancelled() or recording.exception())):
            recording = asyncio.ensure_future(self.runtime.store.record_update(update_id))
            recording.add_done_callback(_retrieve)
        try:
            return await self.runtime.bounded(asyncio.shield(recording))
        except StorageUnavailable:
            if not recording.done():
                self._keep(update_id, recording)
            raise

    def _keep(self, update_id: int, recording: asyncio.Future[bool]) -> None:
        """Keep a record that outlived its delivery: its answer belongs to the redelivery."""
        self._recording[update_id] = recording
        if len(self._recording) > MAX_KEPT_RECORDS:
            self._recording.pop(next(iter(self._recording)))  # the oldest

        def forget_unless_won(done: asyncio.Future[bool]) -> None:
            # Only a record that inserted the update is worth handing on.
            if (done.cancelled() or done.exception() or not done.result()) and self._recording.get(update_id) is done:
                del self._recording[update_id]

        recording.add_done_callback(forget_unless_won)

    async def _addressed_to_me(self, command: Command) -> bool:
        """`/create` is for every bot in the chat; `/create@name` only for the bot called name."""
        if command.addressee is None:
            return True
        if self._username is None:
            try:
                me = await self.api.call("getMe")
                self._username = str(me["username"]).lower()
            except (TelegramApiError, KeyError, TypeError) as exc:
                # Unknown, so do not drop what may be a user's request to this very bot.
                log.warning("could not learn the bot's username (%s); taking /%s@%s", exc, command.name,
                            command.addressee)
                return True
        return command.addressee == self._username

    async def _create(self, message: Message, argument: str) -> None:
        assert message.sender is not None
        if not argument:
            self._spawn(self._say(message, replies.invalid_prompt(None)))
            return
        try:
            body = CreateRequest(tg_user_id=message.sender.id, prompt=argument)
        except ValidationError as exc:
            self._spawn(self._say(message, replies.invalid_prompt(replies.prompt_problem(exc))))
            return
        first_reply = asyncio.Event()

        async def on_outcome(outcome: VideoOutcome) -> None:
            self._spawn(self._tell_outcome(message.chat.id, outcome, after=first_reply))

        try:
            admission = await self.runtime.create(NewVideo(body.tg_user_id, body.prompt, prompt_key(body.prompt)),
                                                  on_outcome=on_outcome)
            text = replies.started(admission.video_id)
        except DuplicateRequest as exc:
            text = replies.duplicate(exc.existing)
        except LimitReached as exc:
            text = replies.limited(exc.limit, exc.retry_after)
        except Throttled as exc:
            text = replies.busy(exc.retry_after)
        except ClaimContention:
            text = replies.busy(None)
        except StorageUnavailable:
            text = replies.unavailable()
        except InvalidRequest as exc:
            text = replies.invalid_prompt(exc.detail)
        self._spawn(self._say(message, text, done=first_reply))

    # -- replies -------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _say(self, message: Message, text: str, *, quote: bool = True, done: asyncio.Event | None = None) -> None:
        payload: dict[str, Any] = {"chat_id": message.chat.id, "text": text}
        if quote:
            # In a group, the answer shows which /create it answers; if that message is gone
            # by now, the answer is still sent.
            payload["reply_parameters"] = {"message_id": message.message_id, "allow_sending_without_reply": True}
        try:
            await self._send("sendMessage", payload)
        finally:
            if done is not None:
                done.set()

    async def _tell_outcome(self, chat_id: int, outcome: VideoOutcome, *, after: asyncio.Event) -> None:
        await after.wait()
        if outcome.status == READY and outcome.video_url:
            sent = await self._send("sendVideo", {"chat_id": chat_id, "video": outcome.video_url,
                                                  "caption": replies.ready_caption(outcome.video_id)},
                                    quiet_on_400=True)
            if not sent:  # Telegram could not fetch or play the URL (over 20 MB, not a video): the link
                log.info("video %s: Telegram refused its URL as a video; sending the link", outcome.video_id)
                await self._send("sendMessage", {"chat_id": chat_id,
                                                 "text": replies.ready_link(outcome.video_id, outcome.video_url)})
        elif outcome.status == FAILED:
            await self._send("sendMessage", {"chat_id": chat_id, "text": replies.failed(outcome.video_id, outcome.error)})
        else:  # superseded: a newer attempt holds the claim, and its caller hears how it ends
            log.info("video %s superseded: no message", outcome.video_id)

    async def _send(self, method: str, payload: dict[str, Any], *, quiet_on_400: bool = False) -> bool:
        """Call the Bot API; False (logged) when it did not work. A reply is never retried forever."""
        try:
            await self.api.call(method, payload)
            return True
        except TelegramApiError as exc:
            if not (quiet_on_400 and exc.error_code == 400):
                log.warning("reply to chat %s lost: %s", payload.get("chat_id"), exc)
            return False


def _retrieve(future: asyncio.Future[bool]) -> None:
    # A kept record that failed while nobody awaited it is not "never retrieved": its
    # redelivery starts a new one.
    if not future.cancelled():
        future.exception()
