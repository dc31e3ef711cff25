"""The user's Supabase, read through supabase-py (PostgREST over HTTP), one page at a time.

The external store has only the incident's columns, so the rule runs in pandas after loading
(`prompt_key` is computed on the way in). Pages are ordered by ``id`` and fetched with
``range(a, b)`` until a short page: PostgREST caps a response at the project's
``max-rows`` (1000 by default), so asking for more per page only returns fewer rows.

Credentials come from ``SUPABASE_URL`` and ``SUPABASE_SERVICE_KEY`` (the service key: the
``videos`` table is behind row-level security for the anon key). Only reads are issued.
"""

from __future__ import annotations

import os

import httpx
import pandas as pd

from audit.frames import REQUIRED_VIDEO_COLUMNS, VIDEO_COLUMNS, SchemaError, normalise_videos
from audit.sources.base import Loaded, Period, SourceError, progress_bar

__all__ = ["PAGE_ROWS", "load_supabase", "credentials_from_env"]

# PostgREST's default max-rows on Supabase: larger pages are silently truncated to this.
PAGE_ROWS = 1000


def credentials_from_env(environ: dict[str, str] | None = None) -> tuple[str, str]:
    """``(SUPABASE_URL, SUPABASE_SERVICE_KEY)``, or `SourceError` naming what is missing."""
    environ = os.environ if environ is None else environ
    url, key = environ.get("SUPABASE_URL"), environ.get("SUPABASE_SERVICE_KEY")
    missing = [name for name, value in (("SUPABASE_URL", url), ("SUPABASE_SERVICE_KEY", key)) if not value]
    if missing:
        raise SourceError(f"--supabase needs {' and '.join(missing)} in the environment")
    return url, key  # type: ignore[return-value]


def _client(url: str, key: str, http_client: httpx.Client | None):
    from supabase import create_client
    from supabase.lib.client_options import SyncClientOptions

    # Retries are postgrest's (503/520 and network errors on GET); no retries in tests that
    # pass their own transport, so a recorded failure is seen once.
    options = SyncClientOptions(httpx_client=http_client, postgrest_client_retry=http_client is None)
    try:
        return create_client(url, key, options=options)
    except Exception as exc:  # supabase-py raises its own SupabaseException for a bad URL/key
        raise SourceError(f"cannot use Supabase at {url}: {exc}") from exc


def _all_pages(client, filters: list[tuple[str, str, str]], page_rows: int, advance) -> list[dict]:
    """Every row of ``videos`` matching ``filters`` (``column, operator, value``), page by page."""
    rows: list[dict] = []
    start = 0
    while True:
        query = client.table("videos").select("*")
        for column, op, value in filters:
            query = getattr(query, op)(column, value)
        page = query.order("id").range(start, start + page_rows - 1).execute().data
        rows.extend(page)
        advance(len(page))
        if len(page) < page_rows:
            return rows
        start += page_rows


def load_supabase(
    url: str,
    key: str,
    *,
    period: Period,
    page_rows: int = PAGE_ROWS,
    http_client: httpx.Client | None = None,
    progress: bool = False,
) -> Loaded:
    """Load the period's videos (and look-back) from Supabase's ``videos`` table.

    ``http_client`` replaces supabase-py's own (tests pass one with a stand-in transport).
    """
    from postgrest.exceptions import APIError

    client = _client(url, key, http_client)
    in_range = []
    if period.load_from is not None:
        in_range.append(("gte", period.load_from.isoformat()))
    if period.until is not None:
        in_range.append(("lte", period.until.isoformat()))
    try:
        with progress_bar("loading videos from Supabase", None, enabled=progress) as advance:
            rows = _all_pages(client, [("created_at", op, value) for op, value in in_range], page_rows, advance)
            if in_range:
                # Stuck claims are current state: generating rows whatever the period, as in
                # every source.
                seen = {row.get("id") for row in rows}
                generating = _all_pages(client, [("status", "eq", "generating")], page_rows, advance)
                rows.extend(row for row in generating if row.get("id") not in seen)
    except APIError as exc:
        detail = " ".join((exc.message or "request refused").split())
        code = f" ({exc.code})" if exc.code else ""
        raise SourceError(f"Supabase refused the request{code}: {detail}") from exc
    except httpx.HTTPError as exc:
        raise SourceError(f"cannot reach Supabase at {url}: {' '.join(str(exc).split())}") from exc
    if not rows:
        frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in REQUIRED_VIDEO_COLUMNS})
        frame["created_at"] = frame["created_at"].astype(str)
    else:
        frame = pd.DataFrame(rows)
        missing = [c for c in REQUIRED_VIDEO_COLUMNS if c not in frame.columns]
        if missing:
            raise SchemaError(f"Supabase table 'videos' is missing column(s) {', '.join(missing)}")
        wanted = VIDEO_COLUMNS + (["params"] if period.key_params else [])
        frame = frame[[c for c in wanted if c in frame.columns and c != "prompt_key"]]
    videos = normalise_videos(frame, source="Supabase videos", key_params=period.key_params)
    # Period counting happens in run_audit (look-back rows are context, not scanned).
    return Loaded(videos=videos, requests=None, description=f"Supabase {url}")
