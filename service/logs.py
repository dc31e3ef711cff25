"""Log lines: text (the default) or JSON (`CLAIMFIRST_LOG_FORMAT=json`), with the request's ids.

- The request id (`service.http.edge` takes the request's `X-Request-ID` when `usable_request_id`,
  or makes one) is kept in a context variable by `request_context` for every line logged while
  the request runs, and echoed in the answer. asyncio tasks copy the context they are created
  in, so a generation started by a request logs that request's id; `bind` adds the video id
  and attempt once they are known.
- `JsonFormatter`: one object per line: time (UTC, ISO 8601), level, logger, message, then
  request_id, video_id, attempt, outcome where known (from the context or a call's `extra`).
- `RedactSecrets`: a filter on every handler that masks the API keys, the provider token and
  the database password, should any code ever put one in a message. The service logs no
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
from service.settings import Settings

__all__ = ["request_context", "usable_request_id", "JsonFormatter", "RedactSecrets", "bind", "log_config", "CONTEXT_FIELDS"]

CONTEXT_FIELDS = ("request_id", "caller", "video_id", "attempt", "outcome")
_context: ContextVar[dict[str, Any]] = ContextVar("claimfirst_log_context", default={})

# A client's X-Request-ID is kept when it looks like an id (a UUID is 36 characters, most
# tracing ids fewer than 64); anything longer or unprintable is replaced, never refused.
MAX_REQUEST_ID_CHARS = 128
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"


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


class JsonFormatter(logging.Formatter):
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
        return json.dumps(line, ensure_ascii=False, default=str)


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets or [] if s}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        masked = message
        for secret in self.secrets:
            masked = masked.replace(secret, REDACTED)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def secrets_of(settings: Settings) -> list[str]:
    found = [key.get_secret_value() for key in settings.api_keys]
    if settings.replicate_api_token is not None:
        found.append(settings.replicate_api_token.get_secret_value())
    password = make_url(settings.database_url).password
    if password and len(password) >= 4:  # a one-letter password would mask every such letter
        found.append(str(password))
    return found


def log_config(settings: Settings, level: str) -> dict[str, Any]:
    """dictConfig for every logger, uvicorn's included, in the settings' format."""
    formatter = {"()": JsonFormatter} if settings.log_format == "json" else {"format": TEXT_FORMAT}
    handler = {"class": "logging.StreamHandler", "formatter": "main", "filters": ["redact"],
               "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactSecrets, "secrets": secrets_of(settings)}},
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
