"""Log lines: text (the default) or JSON (`CLAIMFIRST_LOG_FORMAT=json`), with the request's ids.

- The request id (`service.http.edge` takes the request's `X-Request-ID` when `usable_request_id`,
  or makes one) is kept in a context variable by `request_context` for every line logged while
  the request runs, and echoed in the answer. asyncio tasks copy the context they are created
  in, so a generation started by a request logs that request's id; `bind` adds the video id
  and attempt once they are known.
- `JsonFormatter`: one object per line: time (UTC, ISO 8601), level, logger, message, then
  request_id, caller, video_id, attempt, outcome where known (from the context or a call's `extra`).
- Both formatters mask secrets in *every* field of a record, the formatted traceback
  included (`service.redact.Redactor`): the API keys, the provider and bot tokens, the
  webhook secret and the database password as values, and any URL's password or `password=`,
  `sslpassword=`, `token=` parameter. A request id equal to a key, a URL in an exception's
  message, an access-log line with `?token=`: all come out masked. The service logs no
  prompt text at INFO (prompts are user data); nothing here can tell a prompt from a message.
- `log_config(settings, level)`: the `logging.config.dictConfig` that `python -m service`
  hands to uvicorn, which applies it in each worker process (a spawned worker inherits no
  logging set up in the parent).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import make_url

from service.redact import SECRET_PARAMETERS, Redactor
from service.settings import Settings

__all__ = ["request_context", "usable_request_id", "JsonFormatter", "TextFormatter", "bind", "log_config",
           "secrets_of", "CONTEXT_FIELDS"]

CONTEXT_FIELDS = ("request_id", "caller", "video_id", "attempt", "outcome")
_context: ContextVar[dict[str, Any]] = ContextVar("claimfirst_log_context", default={})

# A client's X-Request-ID is kept when it looks like an id (a UUID is 36 characters, most
# tracing ids fewer than 64); anything longer or unprintable is replaced, never refused.
MAX_REQUEST_ID_CHARS = 128
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# A shorter password would mask every occurrence of its letters in every line.
MIN_MASKED_PASSWORD_CHARS = 4


def bind(**fields: Any) -> None:
    """Add fields to every line logged from here on in this context (this request, its tasks)."""
    _context.set({**_context.get(), **fields})


def usable_request_id(given: bytes | None) -> str | None:
    """A client's X-Request-ID (raw header bytes) if it is one we can keep, else None."""
    if given and len(given) <= MAX_REQUEST_ID_CHARS and given.isascii():
        text = given.decode("ascii")
        if text.isprintable():
            return text
    return None


@contextmanager
def request_context(request_id: str) -> Iterator[None]:
    """Log lines within carry `request_id` (and whatever `bind` adds), none after."""
    token = _context.set({"request_id": request_id})
    try:
        yield
    finally:
        _context.reset(token)


class TextFormatter(logging.Formatter):
    def __init__(self, fmt: str = TEXT_FORMAT, secrets: list[str] | None = None) -> None:
        super().__init__(fmt)
        self.redact = Redactor(secrets or ())

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.redact = Redactor(secrets or ())

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = _context.get()
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, context.get(name))
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        # Field by field, before encoding: a secret with a quote or backslash in it is
        # written escaped, and would not be found in the encoded line.
        for name, value in line.items():
            if not isinstance(value, (int, float)):  # ids and attempts stay numbers
                line[name] = self.redact(str(value))
        return json.dumps(line, ensure_ascii=False, default=str)


def secrets_of(settings: Settings) -> list[str]:
    """Every secret the settings hold, as the values a log line must never show."""
    found = [key.get_secret_value() for key in settings.api_keys]
    for token in (settings.replicate_api_token, settings.telegram_bot_token, settings.telegram_webhook_secret):
        if token is not None:
            found.append(token.get_secret_value())
    if settings.callback_secret is not None:  # with and without its `whsec_` prefix
        found += [settings.callback_secret.get_secret_value(),
                  settings.callback_secret.get_secret_value().removeprefix("whsec_")]
    url = make_url(settings.database_url)
    passwords = [url.password, *(url.query.get(name) for name in SECRET_PARAMETERS)]
    for password in passwords:
        for value in (password,) if isinstance(password, str) or password is None else password:
            if value and len(str(value)) >= MIN_MASKED_PASSWORD_CHARS:
                found.append(str(value))
    return found


def log_config(settings: Settings, level: str) -> dict[str, Any]:
    """dictConfig for every logger, uvicorn's included, in the settings' format."""
    secrets = secrets_of(settings)
    formatter = ({"()": JsonFormatter, "secrets": secrets} if settings.log_format == "json"
                 else {"()": TextFormatter, "fmt": TEXT_FORMAT, "secrets": secrets})
    handler = {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {"main": handler},
        "root": {"handlers": ["main"], "level": level.upper()},
        "loggers": {
            # uvicorn's own loggers propagate to the root instead of their handlers.
            "uvicorn": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True},
            "alembic.runtime.plugins": {"level": "WARNING"},  # a line per plugin at start
        },
    }
