"""A stand-in for the Telegram Bot API: a real HTTP server on loopback that records every call.

It serves `POST /bot<token>/<method>` with the answers recorded in
tests/service/recordings/telegram/, checks the token, and lets a test decide what goes wrong:

    with StandInTelegram() as telegram:                       # the service's TELEGRAM_API_BASE
        telegram.fault("sendMessage", status=429, retry_after=1)  # the next sendMessage: flood control
        telegram.fault("sendVideo", status=400)                   # the next sendVideo: URL refused
        telegram.calls, telegram.sent("sendMessage")              # every call: method and body (JSON or form)
        telegram.wait_for("sendVideo")                            # polls, with a deadline
        telegram.queue(update, …)                                 # what getUpdates hands out
        telegram.hold("sendMessage", after=2)                     # the 3rd sendMessage waits for release()

getUpdates is Telegram's: a call with `offset` confirms (forgets) every update below it and
answers the rest in order, waiting up to `timeout` seconds (capped) when there are none.

It runs in the test's process, so a service started as a child process reaches it too. Builders
make the updates Telegram would deliver (`message_update`, `recorded_update`).
"""

from __future__ import annotations

import copy
import email.policy
import itertools
import json
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from tests.service.live import wait_until

__all__ = ["StandInTelegram", "Call", "DEFAULT_TOKEN", "DEFAULT_SECRET", "BOT_USERNAME", "RECORDINGS",
           "recording", "recorded_update", "message_update"]

DEFAULT_TOKEN = "7000000001:AAE_stand-in_token_for_tests"
DEFAULT_SECRET = "stand-in-webhook-secret_0123456789"
BOT_USERNAME = "claimfirst_bot"
RECORDINGS = Path(__file__).resolve().parents[1] / "service" / "recordings" / "telegram"

_update_ids = itertools.count(900_000_001)


def recording(name: str) -> dict[str, Any]:
    return json.loads((RECORDINGS / f"{name}.json").read_text())


def recorded_update(name: str, *, update_id: int | None = None) -> dict[str, Any]:
    """A recorded update, with a fresh update_id unless one is given."""
    update = copy.deepcopy(recording(name)["update"])
    update["update_id"] = next(_update_ids) if update_id is None else update_id
    return update


def message_update(text: str, *, user_id: int = 5012345678, chat_id: int | None = None,
                   update_id: int | None = None) -> dict[str, Any]:
    """The recorded private /create with this text, its bot_command entity measured in UTF-16."""
    update = recorded_update("update_create_private", update_id=update_id)
    message = update["message"]
    message["text"] = text
    message["from"]["id"] = user_id
    message["chat"]["id"] = user_id if chat_id is None else chat_id
    head = text.split(maxsplit=1)[0] if text.strip() else ""
    message["entities"] = ([{"offset": 0, "length": len(head.encode("utf-16-le")) // 2, "type": "bot_command"}]
                           if head.startswith("/") else [])
    return update


@dataclass(frozen=True)
class Call:
    method: str
    body: dict[str, Any]
    at: float  # time.monotonic()
    status: int


@dataclass
class _Fault:
    status: int
    retry_after: int | None = None


_ERRORS = {
    400: "error_400_video_url", 401: "error_401_unauthorized", 403: "error_403_blocked", 429: "error_429_flood",
}


def _error(status: int, retry_after: int | None = None) -> dict[str, Any]:
    if status in _ERRORS:
        body = copy.deepcopy(recording(_ERRORS[status])["response"]["body"])
    else:
        body = {"ok": False, "error_code": status, "description": f"stand-in answered {status} as told"}
    if retry_after is not None:
        body["description"] = f"Too Many Requests: retry after {retry_after}"
        body["parameters"] = {"retry_after": retry_after}
    return body


class StandInTelegram:
    def __init__(self, *, token: str = DEFAULT_TOKEN) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.webhook: dict[str, Any] | None = None
        self._faults: dict[str, deque[_Fault]] = {}
        self._lock = threading.Lock()
        self._message_ids = itertools.count(1000)
        self._server: _Server | None = None
        self._pending: list[dict[str, Any]] = []  # getUpdates' queue, in update_id order
        self._arrived = threading.Condition()
        self._hold: tuple[str, int] | None = None  # (method, calls still let through)
        self.holding = threading.Event()  # set while a held call waits
        self._released = threading.Event()
        self.deliveries: list[int] = []  # every update_id getUpdates handed out, in order

    def __enter__(self) -> StandInTelegram:
        handler = type("Handler", (_Handler,), {"stand_in": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.02,), name="stand-in-telegram", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self.release()
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "use the stand-in as a context manager"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- what a test decides and reads ---------------------------------------------------

    def fault(self, method: str, *, status: int, retry_after: int | None = None, times: int = 1) -> None:
        with self._lock:
            self._faults.setdefault(method.lower(), deque()).extend(_Fault(status, retry_after) for _ in range(times))

    def sent(self, method: str, *, ok_only: bool = True) -> list[dict[str, Any]]:
        """The bodies of the calls of `method` (by default only those answered 200)."""
        with self._lock:
            return [c.body for c in self.calls if c.method.lower() == method.lower() and (c.status == 200 or not ok_only)]

    def methods(self) -> list[str]:
        with self._lock:
            return [c.method for c in self.calls]

    def wait_for(self, method: str, count: int = 1, *, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Poll until `count` calls of `method` were answered 200; fail after `timeout` s."""
        return wait_until(lambda: len(self.sent(method)) >= count and self.sent(method), timeout=timeout,
                          what=lambda: f"{count} {method} call(s); saw {dict(Counter(self.methods()))}", every=0.02)

    def queue(self, *updates: dict[str, Any]) -> None:
        """Updates for getUpdates (again, for one already confirmed: Telegram redelivering it)."""
        with self._arrived:
            self._pending = sorted([*self._pending, *updates], key=lambda u: u["update_id"])
            self._arrived.notify_all()

    def hold(self, method: str, *, after: int = 0) -> None:
        """Let `after` more calls of `method` through, then hold the next one until `release`."""
        self._released.clear()
        self._hold = (method.lower(), after)

    def release(self) -> None:
        self._hold = None
        self._released.set()

    # -- the API (called from the server's threads) -----------------------------------

    MAX_LONG_POLL_SECONDS = 5.0

    def _get_updates(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        offset = body.get("offset")
        deadline = time.monotonic() + min(float(body.get("timeout", 0)), self.MAX_LONG_POLL_SECONDS)
        with self._arrived:
            if offset is not None:
                self._pending = [u for u in self._pending if u["update_id"] >= offset]
            while not self._pending and (left := deadline - time.monotonic()) > 0:
                self._arrived.wait(left)
            batch = copy.deepcopy(self._pending[: int(body.get("limit", 100))])
        self.deliveries.extend(u["update_id"] for u in batch)
        return 200, {"ok": True, "result": batch}

    def _held(self, method: str) -> None:
        with self._lock:
            if self._hold is None or self._hold[0] != method:
                return
            if self._hold[1] > 0:
                self._hold = (method, self._hold[1] - 1)
                return
        self.holding.set()
        self._released.wait(30)  # bounded: a forgotten release does not hang the server

    def handle(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
        prefix, _, method = path.split("?")[0].lstrip("/").partition("/")
        if prefix != f"bot{self.token}":
            return 401, _error(401), method
        if method.lower() == "getupdates":
            return (*self._get_updates(body), method)
        self._held(method.lower())
        with self._lock:
            faults = self._faults.get(method.lower())
            if faults:
                fault = faults.popleft()
                return fault.status, _error(fault.status, fault.retry_after), method
            return (*self._answer(method.lower(), body), method)

    def _answer(self, method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if method == "getme":
            return 200, recording("getMe_ok")["response"]["body"]
        if method == "deletewebhook":
            self.webhook = None
            return 200, {"ok": True, "result": True, "description": "Webhook is already deleted"}
        if method == "setwebhook":
            if not str(body.get("url", "")).startswith("https://"):
                return 400, recording("error_400_bad_webhook")["response"]["body"]
            self.webhook = body
            return 200, recording("setWebhook_ok")["response"]["body"]
        if method in ("sendmessage", "sendvideo"):
            if "chat_id" not in body:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat_id is empty"}
            name = "sendMessage_ok" if method == "sendmessage" else "sendVideo_ok"
            result = copy.deepcopy(recording(name)["response"]["body"]["result"])
            result.update(message_id=next(self._message_ids), date=int(time.time()))
            result["chat"]["id"] = body["chat_id"]
            for field in ("text", "caption"):
                if field in result:
                    result[field] = body.get(field, "")
            return 200, {"ok": True, "result": result}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}


def _parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    """The call's parameters, as JSON (the built-in bot) or as a form (aiogram and
    python-telegram-bot send x-www-form-urlencoded, multipart when there is a file)."""
    if not raw:
        return {}
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return {key: _form_value(value) for key, value in parse_qsl(raw.decode(), keep_blank_values=True)}
    if kind == "multipart/form-data":
        message = BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        return {part.get_param("name", header="content-disposition"): _form_value(part.get_content())
                for part in message.iter_parts() if part.get_filename() is None}
    try:
        return json.loads(raw)
    except ValueError:
        return {"<not JSON>": raw.decode(errors="replace")}


def _form_value(value: str) -> Any:
    """A form field as Telegram reads it: integers, booleans and JSON objects decoded, so the
    bodies compare equal to the JSON ones (a text that is itself a number would be too: the
    tests send none)."""
    if re.fullmatch(r"-?\d+", value) or value in ("true", "false") or value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog of 5 resets connections when the service sends its
    # 16 parallel calls at once; the real Bot API does not.
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    stand_in: StandInTelegram

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = _parse_body(raw, self.headers.get("Content-Type") or "")
        status, answer, method = self.stand_in.handle(self.path, body)
        with self.stand_in._lock:
            self.stand_in.calls.append(Call(method, body, time.monotonic(), status))
        payload = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the service stopped waiting (its shutdown cancelled the call)

    do_GET = do_POST  # the Bot API takes GET too

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the tests read `calls`, not stderr
