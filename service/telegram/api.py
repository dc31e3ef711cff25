"""The Bot API's JSON, as far as this bot reads it (core.telegram.org/bots/api).

An `Update` carries at most one of `message`, `edited_message`, `channel_post`,
`callback_query`, …; only `message` is modelled, every other kind parses to an update with no
message and is ignored. Unknown fields are ignored too: Telegram adds fields with every Bot API
version, and a new one must never turn a delivery into a 422 that Telegram would retry.

Every Bot API answer is `{"ok": true, "result": …}` or `{"ok": false, "error_code": …,
"description": …, "parameters": {"retry_after": …}}`.

Entity offsets and lengths count UTF-16 code units, not Python characters: `command_of` slices
the text in UTF-16, so an emoji before or inside the prompt cannot shift it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.http.schemas import MAX_ID

__all__ = ["User", "Chat", "MessageEntity", "Message", "Update", "ResponseParameters", "ApiAnswer",
           "Command", "command_of"]


class _Telegram(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class User(_Telegram):
    id: int
    is_bot: bool = False
    first_name: str = ""
    username: str | None = None


class Chat(_Telegram):
    id: int  # negative for groups and channels
    type: str  # private, group, supergroup or channel


class MessageEntity(_Telegram):
    type: str  # bot_command, mention, url, …
    offset: int = Field(ge=0)  # in UTF-16 code units
    length: int = Field(ge=0)


class Message(_Telegram):
    message_id: int
    date: int
    chat: Chat
    # Absent in channels; a bot's own account in a group posted on behalf of a chat.
    sender: User | None = Field(default=None, alias="from")
    text: str | None = None
    entities: list[MessageEntity] = Field(default_factory=list)


class Update(_Telegram):
    # Sequential per bot; a redelivery carries the same id (the webhook's dedup key).
    update_id: int = Field(ge=0, le=MAX_ID)
    message: Message | None = None


class ResponseParameters(_Telegram):
    retry_after: int | None = None  # flood control: seconds to wait before repeating the request
    migrate_to_chat_id: int | None = None


class ApiAnswer(_Telegram):
    ok: bool
    result: Any = None
    description: str | None = None
    error_code: int | None = None
    parameters: ResponseParameters | None = None


@dataclass(frozen=True)
class Command:
    """`/name@addressee argument`: a bot command at the start of a message."""

    name: str  # lower-case, without the slash
    addressee: str | None  # lower-case bot username after "@", if any
    argument: str  # the rest of the text, stripped


def command_of(message: Message) -> Command | None:
    """The bot command the message starts with (a bot_command entity at offset 0), or None."""
    if message.text is None:
        return None
    entity = next((e for e in message.entities if e.type == "bot_command" and e.offset == 0), None)
    if entity is None:
        return None
    units = message.text.encode("utf-16-le", "surrogatepass")
    try:
        head = units[: 2 * entity.length].decode("utf-16-le")
        rest = units[2 * entity.length :].decode("utf-16-le", "surrogatepass")
    except UnicodeDecodeError:  # the entity's end splits a character: not a command we sent
        return None
    if not head.startswith("/") or len(head) < 2:
        return None
    name, _, addressee = head[1:].partition("@")
    return Command(name.lower(), addressee.lower() or None, rest.strip())
