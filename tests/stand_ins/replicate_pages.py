"""The stand-in Replicate's `GET /v1/predictions` paging, apart from the predictions themselves.

Replicate lists an account's predictions newest first, 100 a page, as
`{"previous": url | null, "next": url | null, "results": [...]}`; a page's `next` and `previous`
carry an opaque `cursor`. `created_after` (inclusive) and `created_before` (exclusive) filter
on `created_at`, ISO 8601, as replicate-python's `PredictionListParams` documents them.

The cursor here is a creation sequence number and a direction, so a page boundary stays put
while predictions are created between two requests (new ones are newer than every mark).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar
from urllib.parse import parse_qs, urlencode

__all__ = ["Page", "list_page", "instant"]

T = TypeVar("T")
_FILTERS = ("created_after", "created_before")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]  # newest first
    previous: str | None
    next: str | None


def list_page(entries: Sequence[tuple[int, str, T]], query_string: str, page_size: int, url: str) -> Page[T]:
    """The page a query asks for out of `entries` (sequence number, created_at, item), in
    creation order. A bad `created_*` or `cursor` raises ValueError (an HTTP 400)."""
    query = {key: values[-1] for key, values in parse_qs(query_string).items()}
    after, before = instant(query.get("created_after")), instant(query.get("created_before"))
    direction, mark = _read_cursor(query.get("cursor"))
    newest_first = [
        (seq, item) for seq, created_at, item in reversed(entries)
        if (after is None or instant(created_at) >= after) and (before is None or instant(created_at) < before)
    ]
    if direction == "next":  # the newest page_size strictly older than the mark
        page = [entry for entry in newest_first if entry[0] < mark][:page_size]
    else:  # "previous": the page_size just newer than the mark
        page = [entry for entry in newest_first if entry[0] > mark][-page_size:]
    kept = {key: value for key, value in query.items() if key in _FILTERS}

    def link(direction: str, seq: int) -> str:
        cursor = base64.urlsafe_b64encode(f"{direction}:{seq}".encode()).decode()
        return f"{url}?{urlencode({**kept, 'cursor': cursor})}"

    newest, oldest = (page[0][0], page[-1][0]) if page else (None, None)
    return Page(
        items=[item for _, item in page],
        previous=link("previous", newest) if page and any(seq > newest for seq, _ in newest_first) else None,
        next=link("next", oldest) if page and any(seq < oldest for seq, _ in newest_first) else None,
    )


def instant(text: str | None) -> datetime | None:
    """An ISO 8601 date-time (a naive one is UTC); None stays None; anything else: ValueError."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date-time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _read_cursor(cursor: str | None) -> tuple[str, float]:
    if cursor is None:
        return "next", float("inf")
    try:
        direction, _, mark = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if direction in ("next", "previous"):
            return direction, int(mark)
    except ValueError:  # bad base64, bad UTF-8 and a non-number are all ValueErrors
        pass
    raise ValueError(f"not a cursor this API gave out: {cursor!r}")
