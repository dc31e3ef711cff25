"""Loaders: each source yields the same canonical frames (`audit.frames`).

- `files`: ``videos.csv`` and the request log ``requests.csv``;
- `database`: any SQLAlchemy URL holding a ``videos`` table (the service's own, or a copy of an
  external store), read in chunks; on PostgreSQL the duplicate search runs as SQL;
- `supabase`: the user's Supabase, through supabase-py, page by page.

Every loader raises `SourceError` (an `audit.frames.AuditError`) with a one-line message for a
missing file, an unreachable server, or a refused request; `SchemaError` for bad columns.
"""

from __future__ import annotations

import importlib
from typing import Any

from audit.sources.base import Loaded, SourceError
from audit.sources.files import load_files

__all__ = ["Loaded", "SourceError", "load_files", "load_database", "detect_duplicates_sql", "load_supabase"]

# Imported on first use: SQLAlchemy's ORM with the service's models, and httpx, are 0.2 s of a
# file sweep's start-up that it never uses.
_LAZY = {"load_database": "database", "detect_duplicates_sql": "database", "load_supabase": "supabase"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"audit.sources.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
