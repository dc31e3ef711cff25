"""Every text the bot sends, in one place (plain text: no parse_mode, so nothing needs escaping).

Each reply says what happened to the request and what the user can do next. None repeats the
prompt back (it is the user's own text, and may be long), and none names an internal detail
beyond the video id a user can quote to support.
"""

from __future__ import annotations

import math

from pydantic import ValidationError

from service.claim import GENERATING, READY
from service.http.schemas import MAX_PROMPT_CHARS
from service.records import VideoRecord

__all__ = ["usage", "started", "duplicate", "busy", "limited", "unavailable", "invalid_prompt", "prompt_problem",
           "ready_caption", "ready_link", "failed"]

# A provider's error can be a page of text; a chat message should be a sentence.
MAX_ERROR_CHARS = 200

EXAMPLE = "/create a red fox running through fresh snow at dawn"


def usage() -> str:
    return ("Send /create followed by what the video should show, for example:\n"
            f"{EXAMPLE}\n"
            "I answer at once and send the video here when it is ready. Asking again for the same "
            "video gives you the one already made (or being made) instead of a second one.")


def started(video_id: int | None) -> str:
    which = f"video {video_id}" if video_id is not None else "your video"
    return f"Generating {which}. I will send it here when it is ready; that usually takes a few minutes."


def duplicate(video: VideoRecord) -> str:
    asked = video.created_at.strftime("%Y-%m-%d %H:%M UTC")
    if video.status == READY and video.video_url:
        state = f"is ready: {video.video_url}"
    elif video.status == GENERATING:
        state = "is still being generated"
    else:
        state = f"is {video.status}"
    return f"You already asked for this video ({asked}): video {video.id} {state}. Nothing new was started."


def busy(retry_after: int | None) -> str:
    later = "in a few minutes" if retry_after is None else f"in about {_duration(retry_after)}"
    return f"I'm busy right now: too many videos are being made. Nothing was started; please try again {later}."


def limited(limit: str, retry_after: int) -> str:
    """A limit the service enforces (service.errors.LimitReached) refused the video."""
    later = f"in about {_duration(retry_after)}"
    if limit == "user_daily":
        return f"You have asked for as many new videos as allowed in 24 hours. Nothing was started; you can ask again {later}."
    if limit == "user_concurrent":
        return ("You already have as many videos being made as allowed at once. Nothing was started; please ask "
                f"again when one of them is done (probably {later}).")
    return f"I have reached my spending limit for today. Nothing was started; please try again {later}."


def unavailable() -> str:
    return "I can't reach my database right now, so nothing was started. Please try again in a minute."


def prompt_problem(exc: ValidationError) -> str:
    """What is wrong with a prompt `CreateRequest` refused, in a user's words."""
    error = next((e for e in exc.errors(include_input=False) if e["loc"][:1] == ("prompt",)), exc.errors()[0])
    if error["type"] == "string_too_long":
        return f"the description is too long (the limit is {MAX_PROMPT_CHARS} characters)"
    return str(error["msg"]).removeprefix("Value error, ")


def invalid_prompt(problem: str | None) -> str:
    why = "you did not say what the video should show" if problem is None else problem
    return f"I can't start that: {why}.\n\n{usage()}"


def ready_caption(video_id: int | None) -> str:
    return f"Video {video_id} is ready." if video_id is not None else "Your video is ready."


def ready_link(video_id: int | None, url: str) -> str:
    return f"{ready_caption(video_id)} {url}"


def failed(video_id: int | None, error: str | None) -> str:
    which = f"video {video_id}" if video_id is not None else "your video"
    reason = (error or "no reason given").strip()
    if len(reason) > MAX_ERROR_CHARS:
        reason = reason[: MAX_ERROR_CHARS - 1] + "…"
    return f"Sorry, {which} failed: {reason}. Send the same /create again to try once more."


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{max(1, seconds)} seconds"
    if seconds < 90 * 60:
        return f"{math.ceil(seconds / 60)} minutes"
    return f"{math.ceil(seconds / 3600)} hours"
