"""The records the claim speaks of: a video as the database holds it (`VideoRecord`), and
what a generation produced (`GenerationResult`), which the stores write and the runner hands on.

Plain data, no SQL and no HTTP: the claim, the errors and every layer above them may import
this module; it imports nothing of the service.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

__all__ = ["VideoRecord", "GenerationResult", "as_utc"]


def as_utc(value: datetime | str | None) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite hands back naive text, PostgreSQL aware)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class VideoRecord:
    id: int
    tg_user_id: int
    prompt: str
    prompt_key: str
    category: str | None
    status: str
    attempt: int
    video_url: str | None
    thumbnail_url: str | None
    error: str | None
    cost_usd: Decimal | None
    created_at: datetime
    updated_at: datetime
    # The generation parameters it was asked with (service.params); None without any.
    params: Mapping[str, Any] | None = field(default=None, hash=False)

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> VideoRecord:
        values = {name: row[name] for name in cls.__dataclass_fields__ if name != "params"}
        # PostgreSQL's jsonb comes back decoded, SQLite's text as it was stored.
        params = row["params"] if "params" in row.keys() else None
        values["params"] = json.loads(params) if isinstance(params, str) else params
        values["created_at"] = as_utc(values["created_at"])
        values["updated_at"] = as_utc(values["updated_at"])
        if values["cost_usd"] is not None and not isinstance(values["cost_usd"], Decimal):
            values["cost_usd"] = Decimal(str(values["cost_usd"])).quantize(Decimal("0.01"))
        return cls(**values)


@dataclass(frozen=True)
class GenerationResult:
    video_url: str
    thumbnail_url: str | None
    cost_usd: Decimal | None
