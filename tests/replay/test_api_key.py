"""`audit replay --url … --api-key`: the key goes out as a Bearer token on every request.

The service side of API keys is the service's business; here a loopback stand-in with the
service's request/response shapes records what the replay sends and refuses a wrong key.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from audit.replay import main
from audit.replay.cli import API_KEY_ENV

from .conftest import FIXTURES

KEY = "replay-test-key"


class _StandIn(BaseHTTPRequestHandler):
    """/healthz, /stats, /create as the service answers them, 401 without the right key."""

    seen: list[tuple[str, str | None]]
    created = 0

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization")
        self.server.seen.append((f"{self.command} {self.path}", header))
        if self.path != "/healthz" and header != f"Bearer {KEY}":
            self._answer(401, {"detail": "missing or wrong API key"})
            return False
        return True

    def do_GET(self) -> None:
        if not self._authorised():
            return
        if self.path == "/healthz":
            self._answer(200, {"status": "ok"})
        else:
            self._answer(200, {"policy": "claim", "in_flight": 0, "generations_started": 1})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if not self._authorised():
            return
        with self.server.lock:
            self.server.created += 1
            first = self.server.created == 1
        if first:
            self._answer(202, {"video_id": 1, "status": "generating"})
        else:
            self._answer(409, {"detail": "Duplicate video", "video_id": 1, "status": "generating"})


@pytest.fixture
def stand_in() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    server.seen, server.created, server.lock = [], 0, threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _args(server: ThreadingHTTPServer, out: Path, *extra: str) -> list[str]:
    incident = FIXTURES / "requests.csv"
    url = f"http://127.0.0.1:{server.server_address[1]}"
    return ["--requests", str(incident), "--policy", "claim", "--speedup", "100000", "--url", url,
            "--out", str(out), *extra]


def test_every_request_carries_the_key(tmp_path, stand_in, monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    assert main(_args(stand_in, tmp_path / "out", "--api-key", KEY)) == 0
    creates = [h for what, h in stand_in.seen if what == "POST /create"]
    assert len(creates) == 58
    assert {h for _, h in stand_in.seen} == {f"Bearer {KEY}"}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["accepted"], summary["duplicates_blocked"]) == (1, 57)


def test_the_key_defaults_to_the_environment(tmp_path, stand_in, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, KEY)
    assert main(_args(stand_in, tmp_path / "out")) == 0
    assert {h for _, h in stand_in.seen} == {f"Bearer {KEY}"}


@pytest.mark.parametrize(("key", "hint"), [(None, "pass --api-key"), ("wrong", "the key was refused")])
def test_a_refused_key_is_one_line_and_writes_nothing(tmp_path, stand_in, monkeypatch, capsys, key, hint):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    out = tmp_path / "out"
    assert main(_args(stand_in, out, *(["--api-key", key] if key else []))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("audit: error: ") and hint in err[0]
    assert not out.exists()
    assert not [what for what, _ in stand_in.seen if what == "POST /create"]


def test_api_key_without_url_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--requests", str(FIXTURES / "requests.csv"), "--policy", "claim", "--api-key", KEY, "--out", str(out)])
    assert code == 2
    assert capsys.readouterr().err.strip() == "audit: error: --api-key goes with --url (the service replay starts needs no key)"
    assert not out.exists()
