"""``python -m audit reconcile`` and Replicate's predictions list: the loader at the HTTP
boundary (httpx.MockTransport), then the command against a loopback server paging the
fixture's recorded list, and against the service's database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from audit.cli import main
from audit.sources.base import SourceError
from audit.sources.replicate import fetch_predictions
from service.stores.models import Base, Video
from service.prompt_key import prompt_key
from tests.audit.conftest import EXPECTED_DUPLICATES, FIXTURES

AS_OF = "2025-10-20T00:00:00+00:00"
RECORDED = json.loads((FIXTURES / "predictions.json").read_text())  # newest first, as the API lists
ATTEMPTS = pd.read_csv(FIXTURES / "attempts.csv", dtype=str, keep_default_na=False)
JOB_OF = dict(zip(ATTEMPTS["id"].astype(int), ATTEMPTS["provider_job_id"], strict=True))
UNAUTHENTICATED = {"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401}


def prediction(pid: str, created: str) -> dict:
    return {"id": pid, "created_at": created, "status": "succeeded", "metrics": {"predict_time": 1.0}}


def pages_of(results: list[dict], size: int, next_base: str) -> list[dict]:
    chunks = [results[i:i + size] for i in range(0, len(results), size)]
    return [{"previous": None if i == 0 else f"{next_base}?cursor=c{i - 1}",
             "next": f"{next_base}?cursor=c{i + 1}" if i + 1 < len(chunks) else None, "results": chunk}
            for i, chunk in enumerate(chunks)]


# --- the loader, at the HTTP boundary ------------------------------------------------------


def mock_client(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_pages_follow_the_cursor_against_our_base_url_never_the_host_in_next():
    pages = pages_of([prediction(f"p{i}", f"2025-10-{15 - i:02d}T00:00:00Z") for i in range(5)], 2,
                     "https://elsewhere.example/v1/predictions")
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.url.params.get("cursor"), request.headers["authorization"]))
        cursor = request.url.params.get("cursor")
        return httpx.Response(200, json=pages[0 if cursor is None else int(cursor[1:])])

    got = fetch_predictions("https://api.test/v1", "r8_secret", since=None, client=mock_client(handler))
    assert [p["id"] for p in got] == ["p0", "p1", "p2", "p3", "p4"]
    assert seen == [("api.test", None, "Bearer r8_secret"), ("api.test", "c1", "Bearer r8_secret"),
                    ("api.test", "c2", "Bearer r8_secret")]


def test_paging_stops_at_the_first_page_older_than_since():
    pages = pages_of([prediction(f"p{i}", f"2025-10-{20 - i:02d}T00:00:00Z") for i in range(10)], 3, "https://api.test/v1/predictions")
    asked = []

    def handler(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        asked.append(cursor)
        return httpx.Response(200, json=pages[0 if cursor is None else int(cursor[1:])])

    since = pd.Timestamp("2025-10-16T12:00:00Z").to_pydatetime()
    got = fetch_predictions("https://api.test/v1", "t", since=since, client=mock_client(handler))
    assert asked == [None, "c1"]  # page 2 reaches back to 10-15: pages 3 and 4 are older still
    assert [p["id"] for p in got] == [f"p{i}" for i in range(6)]


def test_a_refused_token_is_one_clear_error_and_no_retry():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(401, json=UNAUTHENTICATED, headers={"content-type": "application/problem+json"})

    with pytest.raises(SourceError) as caught:
        fetch_predictions("https://api.test/v1", "wrong", since=None, client=mock_client(handler))
    assert str(caught.value) == ("Replicate refused the token (401 Unauthenticated: You did not pass a valid "
                                 "authentication token): check REPLICATE_API_TOKEN")
    assert len(calls) == 1 and "wrong" not in str(caught.value)


def test_throttling_and_server_errors_are_retried_a_bounded_number_of_times():
    answers = iter([httpx.Response(429, json={"detail": "Request was throttled. Expected available in 1 second."},
                                   headers={"retry-after": "1"}),
                    httpx.Response(503, text="unavailable"),
                    httpx.Response(200, json={"previous": None, "next": None, "results": [prediction("p0", "2025-10-15T00:00:00Z")]})])
    slept: list[float] = []
    got = fetch_predictions("https://api.test/v1", "t", since=None, client=mock_client(lambda r: next(answers)), sleep=slept.append)
    assert [p["id"] for p in got] == ["p0"] and slept == [1.0, 1.0]  # Retry-After, then the backoff's second step
    slept.clear()
    with pytest.raises(SourceError, match=r"after 5 tries: 502"):
        fetch_predictions("https://api.test/v1", "t", since=None,
                          client=mock_client(lambda r: httpx.Response(502, text="bad gateway")), sleep=slept.append)
    assert slept == [0.5, 1.0, 2.0, 4.0]
    with pytest.raises(SourceError, match="Replicate answered 404"):
        fetch_predictions("https://api.test/v1", "t", since=None,
                          client=mock_client(lambda r: httpx.Response(404, json={"detail": "Not found."})), sleep=slept.append)


def test_a_list_that_never_ends_is_cut_at_max_pages():
    page = {"previous": None, "next": "https://api.test/v1/predictions?cursor=again",
            "results": [prediction("p", "2025-10-15T00:00:00Z")]}
    with pytest.raises(SourceError, match="more than 3 pages"):
        fetch_predictions("https://api.test/v1", "t", since=None, max_pages=3,
                          client=mock_client(lambda r: httpx.Response(200, json=page)))


# --- the command against a loopback Replicate ------------------------------------------------


@pytest.fixture
def replicate_list() -> Iterator[tuple[str, list]]:
    """A loopback ``GET /v1/predictions`` paging the fixture's recorded list 20 at a time, then
    a page of September predictions (before the period) and one more that must never be read."""
    requests: list[tuple[str | None, str | None]] = []
    state: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            url = urlsplit(self.path)
            cursor = parse_qs(url.query).get("cursor", [None])[0]
            requests.append((cursor, self.headers.get("Authorization")))
            if url.path != "/v1/predictions":
                self._send(404, {"detail": "Not found."})
            elif self.headers.get("Authorization") != "Bearer r8_test":
                self._send(401, UNAUTHENTICATED)
            else:
                self._send(200, state["pages"][0 if cursor is None else int(cursor[1:])])

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}/v1"
    older = [prediction(f"september{i}", f"2025-09-{20 - i:02d}T10:00:00.000000Z") for i in range(6)]
    state["pages"] = pages_of(RECORDED, 20, f"{base}/predictions") + pages_of(older, 3, "")
    # Stitch the September pages on: the recorded list's last page points at them.
    state["pages"][2]["next"] = f"{base}/predictions?cursor=c3"
    state["pages"][3]["next"] = f"{base}/predictions?cursor=c4"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base, requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def reconcile(*args: str) -> int:
    return main(["reconcile", "--as-of", AS_OF, "--no-progress", *args])


def test_reconcile_against_the_api_finds_every_planted_leak_and_double_and_nothing_else(replicate_list, tmp_path, monkeypatch, capsys):
    base, requests = replicate_list
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_test")
    out = tmp_path / "out"
    code = reconcile("--videos", str(FIXTURES / "attempts.csv"), "--replicate-base-url", base,
                     "--since", "2025-10-08", "--out", str(out))
    assert code == 1, capsys.readouterr().err
    assert [c for c, _ in requests] == [None, "c1", "c2", "c3"]  # the September page ends it
    assert {auth for _, auth in requests} == {"Bearer r8_test"}
    report = json.loads((out / "reconcile.json").read_text())
    assert {j["prompt"] for j in report["leak_jobs"]} == {"Mountain lake timelapse at dawn", "Glass city floating above the clouds"}
    assert not {j["job_id"] for j in report["leak_jobs"]} & set(JOB_OF.values())
    assert [a["video_id"] for a in report["unknown_job_attempts"]] == [21]
    assert {j["job_id"] for j in report["double_payment_jobs"]} == {JOB_OF[v] for v in EXPECTED_DUPLICATES}
    assert [j["video_ids"] for j in report["cost_mismatch_jobs"]] == [[8]]
    assert (report["billed_usd"], report["recorded_usd"], report["predictions"]) == (228.0, 220.0, 57)
    assert sum(day["double_usd"] for day in report["by_day"]) == 44.0
    printed = capsys.readouterr().out
    assert "Leaks (billed, no attempt): 2, $8.00" in printed and "Double payments: 11, $44.00" in printed
    page = (out / "reconcile.html").read_text()
    assert "2 billed job(s) no attempt knows: $8 paid with nothing in the books." in page
    assert '<script src="http' not in page


def test_a_wrong_token_exits_2_with_replicates_words(replicate_list, tmp_path, monkeypatch, capsys):
    base, requests = replicate_list
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_wrong")
    out = tmp_path / "out"
    assert reconcile("--videos", str(FIXTURES / "attempts.csv"), "--replicate-base-url", base, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err == ("audit: error: Replicate refused the token (401 Unauthenticated: You did not pass a valid "
                   "authentication token): check REPLICATE_API_TOKEN\n")
    assert len(requests) == 1 and not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--videos", str(FIXTURES / "videos.csv"), "--predictions", str(FIXTURES / "predictions.json")],
         "missing column(s) provider_job_id, cost_usd"),
        (["--videos", str(FIXTURES / "attempts.csv")], "REPLICATE_API_TOKEN is not set"),
        (["--videos", str(FIXTURES / "attempts.csv"), "--predictions", str(FIXTURES / "README.md")], "not a readable CSV"),
        (["--videos", str(FIXTURES / "attempts.csv"), "--predictions", "missing.json"], "predictions file not found"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    assert reconcile(*args, "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.startswith("audit: error: ") and message in err and err.count("\n") == 1


def test_books_that_match_the_bill_exit_0(tmp_path):
    books = ATTEMPTS[ATTEMPTS["id"].astype(int) <= 7]  # before the planted failure (8) and double payments
    books.to_csv(tmp_path / "attempts.csv", index=False)
    listed = [p for p in RECORDED if p["id"] in set(books["provider_job_id"])]
    (tmp_path / "predictions.json").write_text(json.dumps({"previous": None, "next": None, "results": listed}))
    assert reconcile("--videos", str(tmp_path / "attempts.csv"), "--predictions", str(tmp_path / "predictions.json"),
                     "--out", str(tmp_path / "out")) == 0


def test_reconcile_reads_the_services_database(db_url, tmp_path):
    rows = []
    for r in ATTEMPTS.itertuples(index=False):
        created = pd.Timestamp(r.created_at).to_pydatetime()
        rows.append({"id": int(r.id), "tg_user_id": int(r.tg_user_id), "prompt": r.prompt, "status": r.status,
                     "prompt_key": prompt_key(r.prompt), "attempt": 1, "created_at": created, "updated_at": created,
                     "provider_job_id": r.provider_job_id, "cost_usd": Decimal(r.cost_usd) if r.cost_usd else None})
    engine = sa.create_engine(db_url)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(Video), rows)
    engine.dispose()
    out = tmp_path / "out"
    assert reconcile("--database-url", db_url, "--predictions", str(FIXTURES / "predictions.json"),
                     "--since", "2025-10-13", "--out", str(out)) == 1
    report = json.loads((out / "reconcile.json").read_text())
    assert report["since"] == "2025-10-13T00:00:00+00:00"
    # From 13 October on: the 11 double payments; the leaks, video 21 and video 8 are older.
    assert {j["job_id"] for j in report["double_payment_jobs"]} == {JOB_OF[v] for v in EXPECTED_DUPLICATES}
    assert report["leak_jobs"] == report["unknown_job_attempts"] == report["cost_mismatch_jobs"] == []
    assert report["recorded_usd"] == report["billed_usd"] == 4.0 * 24  # videos 33-56
