"""The Supabase loader, through the real supabase-py client, with PostgREST stood in for at the
HTTP boundary: pages are answered by SQL on a real PostgreSQL (seeded with the incident's
columns only, like the user's store); refusals replay recorded PostgREST responses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
import sqlalchemy as sa

from audit.pipeline import run_audit
from audit.sources import SourceError, load_supabase
from audit.sources.base import Period
from audit.sources.supabase import credentials_from_env
from tests.audit.conftest import AS_OF, EXPECTED_DUPLICATES, seed_external_db

RECORDINGS = Path(__file__).parent / "recordings"
URL = "https://abcdefghijklmnop.supabase.co"
KEY = "service-role-key-for-tests"
_OPS = {"gte": ">=", "lte": "<=", "gt": ">", "lt": "<", "eq": "="}


class PostgrestOnPostgres:
    """Answers ``GET /rest/v1/videos`` like PostgREST: filters ``col=op.value``, ``order``,
    ``offset``/``limit``, ``Content-Range`` header, by running the SQL on PostgreSQL."""

    def __init__(self, url: str, max_rows: int = 1000):
        # NullPool: each page opens and closes its own connection, nothing outlives the test.
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.max_rows = max_rows
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.method == "GET" and request.url.path == "/rest/v1/videos"
        assert request.headers["apikey"] == KEY
        where, params, order, offset, limit = [], {}, "id", 0, self.max_rows
        for n, (name, value) in enumerate(parse_qsl(request.url.query.decode())):
            if name == "select":
                assert value == "*"
            elif name == "order":
                column, _, direction = value.partition(".")
                order = f"{column} {'DESC' if direction == 'desc' else 'ASC'}"
            elif name == "offset":
                offset = int(value)
            elif name == "limit":
                limit = min(int(value), self.max_rows)
            else:
                op, _, operand = value.partition(".")
                where.append(f"{name} {_OPS[op]} :p{n}")
                params[f"p{n}"] = operand
        sql = "SELECT * FROM videos" + (" WHERE " + " AND ".join(where) if where else "")
        sql += f" ORDER BY {order} OFFSET {offset} LIMIT {limit}"
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]
        for row in rows:  # PostgREST renders timestamptz as ISO 8601 with offset
            for key, value in row.items():
                if isinstance(value, datetime):
                    row[key] = value.isoformat()
        content_range = f"{offset}-{offset + len(rows) - 1}/*" if rows else "*/*"
        return httpx.Response(
            200,
            headers={"content-type": "application/json; charset=utf-8", "content-range": content_range},
            content=json.dumps(rows).encode(),
        )


def recorded(name: str):
    recording = json.loads((RECORDINGS / name).read_text())

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == recording["request"]["path"]
        response = recording["response"]
        return httpx.Response(response["status"], headers=response["headers"], content=json.dumps(response["body"]).encode())

    return handler


def client(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_pages_through_the_whole_table(pg_url, fixture_videos):
    seed_external_db(pg_url, fixture_videos)
    server = PostgrestOnPostgres(pg_url)
    loaded = load_supabase(URL, KEY, period=Period(), page_rows=20, http_client=client(server))
    # 56 rows in pages of 20: 20, 20, 16 (the short page ends it).
    assert [dict(parse_qsl(r.url.query.decode()))["offset"] for r in server.requests] == ["0", "20", "40"]
    assert sorted(loaded.videos["id"]) == list(range(1, 57))
    result = run_audit(loaded.videos, as_of=AS_OF)
    assert set(result.duplicates["video_id"]) == EXPECTED_DUPLICATES


def test_exact_multiple_of_the_page_ends_on_an_empty_page(pg_url, fixture_videos):
    seed_external_db(pg_url, fixture_videos)
    server = PostgrestOnPostgres(pg_url)
    loaded = load_supabase(URL, KEY, period=Period(), page_rows=28, http_client=client(server))
    assert len(server.requests) == 3 and len(loaded.videos) == 56


def test_server_max_rows_smaller_than_the_page_is_not_mistaken_for_the_end(pg_url, fixture_videos):
    # PostgREST silently caps at max-rows; asking for 1000 from a 1000-row cap is the default.
    seed_external_db(pg_url, fixture_videos)
    server = PostgrestOnPostgres(pg_url, max_rows=10)
    loaded = load_supabase(URL, KEY, period=Period(), page_rows=10, http_client=client(server))
    assert len(loaded.videos) == 56


def test_period_filters_are_sent_to_postgrest(pg_url, fixture_videos):
    seed_external_db(pg_url, fixture_videos)
    server = PostgrestOnPostgres(pg_url)
    since = datetime(2025, 10, 15, tzinfo=UTC)
    period = Period(since=since, until=datetime(2025, 10, 15, 23, 59, tzinfo=UTC))
    loaded = load_supabase(URL, KEY, period=period, http_client=client(server))
    filters = [v for k, v in parse_qsl(server.requests[0].url.query.decode()) if k == "created_at"]
    # One window of look-back before `since`, so originals just before the period are seen.
    assert filters == [f"gte.{period.load_from.isoformat()}", f"lte.{period.until.isoformat()}"]
    result = run_audit(loaded.videos, as_of=AS_OF, since=period.since, until=period.until)
    assert set(result.duplicates["video_id"]) == {55, 56}
    assert result.summary["videos_scanned"] == 3


def test_empty_table(pg_url):
    import pandas as pd

    seed_external_db(pg_url, pd.DataFrame(columns=["id", "tg_user_id", "prompt", "status", "created_at"]))
    loaded = load_supabase(URL, KEY, period=Period(), http_client=client(PostgrestOnPostgres(pg_url)))
    assert loaded.videos.empty
    result = run_audit(loaded.videos, as_of=AS_OF)
    assert result.summary["duplicate_count"] == 0 and result.summary["videos_scanned"] == 0


@pytest.mark.parametrize(
    ("recording", "message"),
    [
        ("invalid_api_key.json", "Supabase refused the request: Invalid API key"),
        ("jwt_expired.json", r"Supabase refused the request \(PGRST301\): JWT expired"),
        ("missing_table.json", r"\(PGRST205\): Could not find the table 'public.videos'"),
    ],
)
def test_refusals_are_one_line_source_errors(recording, message):
    with pytest.raises(SourceError, match=message) as caught:
        load_supabase(URL, KEY, period=Period(), http_client=client(recorded(recording)))
    assert "\n" not in str(caught.value)


def test_unreachable_supabase():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with pytest.raises(SourceError, match="cannot reach Supabase"):
        load_supabase(URL, KEY, period=Period(), http_client=client(refuse))


def test_credentials_come_from_the_environment():
    assert credentials_from_env({"SUPABASE_URL": URL, "SUPABASE_SERVICE_KEY": KEY}) == (URL, KEY)
    with pytest.raises(SourceError, match="SUPABASE_SERVICE_KEY"):
        credentials_from_env({"SUPABASE_URL": URL})
