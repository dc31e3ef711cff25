"""One `/create` in, the answers out, whatever sends them: the built-in webhook bot and the
aiogram and python-telegram-bot handlers (`service.telegram.aiogram`, `service.telegram.ptb`)
say the same things in the same order.

    /create <prompt> ──▶ the prompt as POST /create would take it? ──no──▶ "I can't start that: …"
                           │ yes
                           ▼
                         claim ──▶ "Generating video N…" / "You already asked…" / busy / unavailable
                           │
                           ▼ later, once the outcome is recorded, and never before that first answer
                         the video (its link when Telegram cannot fetch it) / "Sorry, video N failed: …"

A framework hands in three small senders (`Senders`) and keeps its own error types: each sender
returns normally when its message is sent or lost (logged), so a blocked bot or a Telegram
outage loses a reply, never the claim.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from service.claim import FAILED, READY
from service.errors import ClaimContention, DuplicateRequest, InvalidRequest, LimitReached, StorageUnavailable, Throttled
from service.generation.runner import VideoOutcome
from service.http.schemas import CreateRequest
from service.telegram import replies

if TYPE_CHECKING:
    from service.embed import ClaimFirst

__all__ = ["REFUSALS", "Senders", "bot_senders", "refusal", "prompt_of", "tell_outcome", "take_create"]

log = logging.getLogger("claimfirst.telegram")

# What a claim can answer instead of an admission, each with its reply below.
REFUSALS = (DuplicateRequest, Throttled, ClaimContention, StorageUnavailable, InvalidRequest)
# How long an outcome waits for its request's first answer to be sent before it goes anyway: a
# generation can end before "Generating…" is out, and the user should read them in that order.
# Above a Bot API call with its retries (aiogram's default request timeout is 60 s); a lost or
# stuck first answer must not hold the video back for good.
FIRST_ANSWER_WAIT_SECONDS = 90.0


@dataclass(frozen=True)
class Senders:
    """How a framework sends; none raises for a message Telegram did not take."""

    reply: Callable[[str], Awaitable[None]]  # a text answering the /create message itself
    text: Callable[[str], Awaitable[None]]  # a text to the chat
    video: Callable[[str, str], Awaitable[bool]]  # (url, caption): False when Telegram refused the URL


def bot_senders(bot: Any, chat_id: int, quote: object, *, errors: type[Exception],
                refused_url: type[Exception]) -> Senders:
    """`Senders` over a framework's `Bot`: aiogram's and python-telegram-bot's take the Bot API's
    own method and argument names. `quote` is the framework's ReplyParameters for the /create
    message; `errors` its base exception (a message lost: logged, not raised); `refused_url` the
    one a video URL Telegram cannot fetch raises (not logged: the link is sent instead)."""

    async def sent(call: Awaitable[object], *, quiet_on_refusal: bool = False) -> bool:
        try:
            await call
            return True
        except errors as exc:
            if not (quiet_on_refusal and isinstance(exc, refused_url)):
                log.warning("reply to chat %s lost: %s", chat_id, exc)
            return False

    async def reply(words: str) -> None:
        await sent(bot.send_message(chat_id=chat_id, text=words, reply_parameters=quote))

    async def text(words: str) -> None:
        await sent(bot.send_message(chat_id=chat_id, text=words))

    async def video(url: str, caption: str) -> bool:
        return await sent(bot.send_video(chat_id=chat_id, video=url, caption=caption), quiet_on_refusal=True)

    return Senders(reply=reply, text=text, video=video)


def refusal(exc: Exception) -> str:
    """The reply to one of REFUSALS."""
    if isinstance(exc, DuplicateRequest):
        return replies.duplicate(exc.existing)
    if isinstance(exc, LimitReached):  # a Throttled: first
        return replies.limited(exc.limit, exc.retry_after)
    if isinstance(exc, Throttled):
        return replies.busy(exc.retry_after)
    if isinstance(exc, ClaimContention):
        return replies.busy(None)
    if isinstance(exc, StorageUnavailable):
        return replies.unavailable()
    if isinstance(exc, InvalidRequest):
        return replies.invalid_prompt(exc.detail)
    raise TypeError(f"not a refusal: {exc!r}")


def prompt_of(text: str | None) -> str:
    """What follows the command (`/create@bot a fox` -> `a fox`), as the built-in bot reads it."""
    parts = (text or "").split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


async def tell_outcome(outcome: VideoOutcome, send: Senders) -> None:
    if outcome.status == READY and outcome.video_url:
        if not await send.video(outcome.video_url, replies.ready_caption(outcome.video_id)):
            # Telegram could not fetch or play the URL (over 20 MB, not a video): the link
            log.info("video %s: Telegram refused its URL as a video; sending the link", outcome.video_id)
            await send.text(replies.ready_link(outcome.video_id, outcome.video_url))
    elif outcome.status == FAILED:
        await send.text(replies.failed(outcome.video_id, outcome.error))
    else:  # superseded: a newer attempt holds the claim, and its caller hears how it ends
        log.info("video %s superseded: no message", outcome.video_id)


async def take_create(cf: ClaimFirst, tg_user_id: int, prompt: str, send: Senders) -> None:
    """Answer one `/create <prompt>` from `tg_user_id`; the outcome follows through `send`
    when the generation ends (awaited by the runner, so leaving `ClaimFirst` waits for it)."""
    if not prompt:
        await send.reply(replies.invalid_prompt(None))
        return
    try:
        CreateRequest(tg_user_id=tg_user_id, prompt=prompt)  # the same checks and words as POST /create
    except ValidationError as exc:
        await send.reply(replies.invalid_prompt(replies.prompt_problem(exc)))
        return
    answered = asyncio.Event()

    async def on_outcome(outcome: VideoOutcome) -> None:
        try:
            await asyncio.wait_for(answered.wait(), FIRST_ANSWER_WAIT_SECONDS)
        except TimeoutError:
            log.warning("video %s: its first answer is still unsent; telling the outcome anyway", outcome.video_id)
        await tell_outcome(outcome, send)

    try:
        admission = await cf.create(tg_user_id, prompt, on_outcome=on_outcome)
        answer = replies.started(admission.video_id)
    except REFUSALS as exc:
        answer = refusal(exc)
    try:
        await send.reply(answer)
    finally:
        answered.set()
