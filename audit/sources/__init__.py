"""Loaders: each source yields the same canonical frames (`audit.frames`).

- `files`: ``videos.csv`` and the request log ``requests.csv``;
- `database`: any SQLAlchemy URL holding a ``videos`` table (the service's own, or a copy of an
  external store), read in chunks; on PostgreSQL the duplicate search runs as SQL;
- `supabase`: the user's Supabase, through supabase-py, page by page.

Every loader raises `SourceError` (an `audit.frames.AuditError`) with a one-line message for a
missing file, an unreachable server, or a refused request; `SchemaError` for bad columns.
"""

from __future__ import annotations

from audit.sources.base import Loaded, SourceError
from audit.sources.database import detect_duplicates_sql, load_database
from audit.sources.files import load_files
from audit.sources.supabase import load_supabase

__all__ = ["Loaded", "SourceError", "load_files", "load_database", "detect_duplicates_sql", "load_supabase"]
