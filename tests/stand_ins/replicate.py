"""A stand-in for Replicate's predictions API: a real HTTP server on loopback.

It answers with the shapes recorded from api.replicate.com (tests/service/recordings/replicate/),
checks the bearer token, counts every prediction created (each one would be billed), and lets
a test decide what happens:

    with StandInReplicate() as replicate:
        replicate.script(Fate(polls=2))                 # next creation: 2 polls "processing", then succeeded
        replicate.script(Fate(polls=None))              # next creation: runs until replicate.release(id)
        replicate.fault("create", status=503, times=2)  # the next two creates answered 503, nothing created
        replicate.fault("get", hang_seconds=1)          # the next poll answered a second late
        job_id = replicate.seed("processing")           # a prediction an earlier process created
        replicate.script(Fate(seconds=10))              # next creation: done 10 s after it was created
        replicate.creations, replicate.cancels, replicate.prediction(job_id)
        replicate.bill()                                # what the account would be charged

The service reaches it at `base_url` with `token` (as REPLICATE_API_TOKEN) and `model`; it runs
in the test's process, so a service started as a child process (`serve_subprocess`) can be
killed and restarted while the stand-in keeps its predictions. `python -m
tests.stand_ins.replicate --port P --seconds 10 --state bill.json` runs it as a process of its
own instead (tests/stand_ins/replicate_main.py), for a harness that must outlive whatever it kills.

Besides create/get/cancel it answers `GET /v1/predictions`, the account's predictions newest
first, as Replicate pages them (`{"previous", "next", "results"}`, `?cursor=`, 100 a page, and
`created_after` (inclusive) / `created_before` (exclusive) as in replicate-python's
`PredictionListParams`).

The bill. Every prediction created through the API is billed one full `price_usd`, whatever
becomes of it (succeeded, failed, canceled, or still running): the service records the full
price per video, so a checker compares `len(bill()) * price_usd` with the database's recorded
cost. The seconds each one ran are reported too (created -> completed, or -> now while
running), for reading, not for pricing. Seeded predictions were billed to a process before
this one and are not on the bill.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from tests.stand_ins.replicate_pages import list_page

__all__ = [
    "StandInReplicate", "Fate", "Fault", "Seen", "Charge", "RECORDINGS", "DEFAULT_TOKEN", "DEFAULT_MODEL",
    "DEFAULT_PRICE_USD", "PAGE_SIZE",
]

DEFAULT_TOKEN = "r8_stand_in_token"
DEFAULT_MODEL = "stand-in/video-model"
# The service's default cost per video (service.settings.DEFAULT_COST_PER_VIDEO_USD).
DEFAULT_PRICE_USD = 4.0
# Replicate's list endpoint: "It will return 100 records per page."
PAGE_SIZE = 100

RECORDINGS = Path(__file__).resolve().parents[1] / "service" / "recordings" / "replicate"
Route = Literal["create", "get", "cancel", "list"]
RUNNING = ("starting", "processing")


def recording(name: str) -> dict[str, Any]:
    return json.loads((RECORDINGS / f"{name}.json").read_text())


@dataclass
class Fate:
    """What a created prediction does: `polls` polls answer processing, the next one the outcome.

    With `seconds`, the poll count does not matter: the prediction is done once that long has
    passed since it was created, as any request that shows it (get, list) finds it."""

    polls: int | None = 1  # None: keeps processing until `release`
    seconds: float | None = None
    status: Literal["succeeded", "failed"] = "succeeded"
    output: str | list[str] | None = None  # None: one URL made from the prediction's id
    error: str = "CUDA out of memory. Tried to allocate 2.00 GiB"


@dataclass
class Fault:
    """How the next request on a route misbehaves."""

    status: int | None = None  # answered with Replicate's error for it; the request does nothing
    retry_after: str | None = None
    hang_seconds: float = 0.0  # the request takes effect, its answer is held this long


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    at: float  # time.monotonic()
    status: int


@dataclass(frozen=True)
class Charge:
    """One line of the bill: a prediction created through the API."""

    id: str
    prompt: str
    status: str
    created_at: str
    seconds: float  # how long it ran: to completed_at, or until now while running


@dataclass
class _Prediction:
    body: dict[str, Any]
    fate: Fate
    seq: int  # creation order, what the list's cursor counts in
    born: float  # the stand-in's clock at creation
    polls: int = 0
    released: bool = False
    ended: float | None = None


_ERRORS: dict[int, dict[str, Any]] = {
    401: recording("error_401_unauthenticated")["response"]["body"],
    422: recording("error_422_input_validation")["response"]["body"],
    429: recording("error_429_throttled")["response"]["body"],
}


def _error_body(status: int) -> dict[str, Any]:
    if status in _ERRORS:
        return _ERRORS[status]
    if status == 404:
        return {"title": "Not found", "detail": "The requested resource could not be found.", "status": 404}
    return {"title": "Internal error", "detail": f"stand-in answered {status} as told", "status": status}


class StandInReplicate:
    def __init__(
        self, *, token: str = DEFAULT_TOKEN, model: str = DEFAULT_MODEL, port: int = 0,
        default_fate: Fate | None = None, fail_every: int = 0, page_size: int = PAGE_SIZE,
        price_usd: float = DEFAULT_PRICE_USD, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.model = model
        self.default_fate = default_fate or Fate()  # for predictions created beyond the script
        self.fail_every = fail_every  # >0: every n-th unscripted prediction fails instead
        self.page_size = page_size
        self.price_usd = price_usd
        self.clock = clock  # what time fates and billed seconds are measured on; a test may pass its own
        self.creations = 0
        self.cancels: list[str] = []
        self.seen: list[Seen] = []
        self._predictions: dict[str, _Prediction] = {}
        self._fates: deque[Fate] = deque()
        self._faults: dict[str, deque[Fault]] = {route: deque() for route in ("create", "get", "cancel", "list")}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._port = port  # 0: any free one; a fixed one lets a test start it after a client

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> StandInReplicate:
        handler = type("Handler", (_Handler,), {"stand_in": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        self._server.daemon_threads = True  # a held answer must not keep the test process alive
        threading.Thread(target=self._server.serve_forever, args=(0.02,), name="stand-in-replicate", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()  # ends held answers at once
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "use the stand-in as a context manager"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # -- what a test decides -----------------------------------------------------------

    def script(self, *fates: Fate) -> None:
        """The fates of the next predictions created, in order (unscripted: `default_fate`)."""
        with self._lock:
            self._fates.extend(fates)

    def fault(self, route: Route, *, times: int = 1, **fault: Any) -> None:
        with self._lock:
            self._faults[route].extend(Fault(**fault) for _ in range(times))

    def seed(self, status: str, fate: Fate | None = None) -> str:
        """A prediction created earlier (by a process now gone): not counted as a creation."""
        with self._lock:
            prediction = self._new(f"seeded-{len(self._predictions)}", "seeded prompt", fate or Fate())
            if status not in RUNNING:
                self._finish(prediction, status)
            prediction.body["status"] = status
            return prediction.body["id"]

    def release(self, job_id: str | None = None) -> None:
        """Let a held prediction (Fate(polls=None)), or all of them, finish at its next poll."""
        with self._lock:
            for pid, prediction in self._predictions.items():
                if job_id in (None, pid):
                    prediction.released = True

    def prediction(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            prediction = self._predictions[job_id]
            self._advance(prediction)
            return copy.deepcopy(prediction.body)

    def bill(self) -> list[Charge]:
        """Every prediction created through the API, oldest first; each costs `price_usd`."""
        with self._lock:
            now = self.clock()
            charges = []
            for prediction in self._predictions.values():
                self._advance(prediction)
                body = prediction.body
                if body["id"].startswith("seeded-"):
                    continue
                ran = (prediction.ended if prediction.ended is not None else now) - prediction.born
                charges.append(Charge(body["id"], body["input"]["prompt"], body["status"], body["created_at"],
                                      round(ran, 3)))
            return charges

    def state(self) -> dict[str, Any]:
        """The bill and every prediction, as JSON-ready data (what `main` serves and saves)."""
        bill = self.bill()
        with self._lock:
            predictions = [copy.deepcopy(p.body) for p in self._predictions.values()]
        return {"price_usd": self.price_usd, "creations": self.creations, "cancels": list(self.cancels),
                "bill": [vars(charge) for charge in bill], "predictions": predictions}

    @property
    def created_ids(self) -> list[str]:
        with self._lock:
            return [pid for pid in self._predictions if not pid.startswith("seeded-")]

    # -- the API (called from the server's threads) -----------------------------------

    def handle(self, method: str, path: str, headers: Any, raw: bytes) -> tuple[int, dict[str, Any], Fault | None]:
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, _error_body(401), None
        route, job_id = _route(method, path, self.model)
        if route is None:
            return 404, _error_body(404), None
        with self._lock:
            fault = self._faults[route].popleft() if self._faults[route] else None
            if fault is not None and fault.status is not None:
                return fault.status, _error_body(fault.status), fault
            if route == "create":
                status, body = self._create(raw)
            elif route == "list":
                status, body = self._list(path)
            elif job_id not in self._predictions:
                status, body = 404, _error_body(404)
            elif route == "get":
                status, body = 200, self._poll(self._predictions[job_id])
            else:
                status, body = 200, self._cancel(self._predictions[job_id])
            return status, copy.deepcopy(body), fault

    def hold(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _create(self, raw: bytes) -> tuple[int, dict[str, Any]]:
        try:
            given = json.loads(raw)["input"]
            prompt = given["prompt"]
        except (ValueError, KeyError, TypeError):
            prompt = None
        if not isinstance(prompt, str) or not prompt:
            return 422, _error_body(422)
        self.creations += 1
        if self._fates:
            fate = self._fates.popleft()
        elif self.fail_every and self.creations % self.fail_every == 0:
            fate = dataclasses.replace(self.default_fate, status="failed")
        else:
            fate = self.default_fate
        # The whole input is kept, as Replicate echoes it on the prediction: params included.
        prediction = self._new(f"p{self.creations:04d}standin", prompt, fate, given)
        return 201, prediction.body

    def _poll(self, prediction: _Prediction) -> dict[str, Any]:
        body = prediction.body
        if body["status"] in RUNNING:
            prediction.polls += 1
            fate = prediction.fate
            if fate.seconds is not None:
                self._advance(prediction)
                return body
            done = prediction.released if fate.polls is None else prediction.polls > fate.polls
            if done:
                self._finish(prediction, fate.status)
            else:
                body["status"] = "processing"
                body.setdefault("started_at", _now())
        return body

    def _advance(self, prediction: _Prediction) -> None:
        """A time-fated prediction's status as of now (polls are what move the others)."""
        fate, body = prediction.fate, prediction.body
        if fate.seconds is None or body["status"] not in RUNNING:
            return
        if self.clock() - prediction.born >= fate.seconds:
            # Ended when its time was up, however late a request noticed.
            self._finish(prediction, fate.status, at=prediction.born + fate.seconds)
        else:
            body["status"] = "processing"
            body.setdefault("started_at", _now())

    def _list(self, path: str) -> tuple[int, dict[str, Any]]:
        entries = [(p.seq, p.body["created_at"], p) for p in self._predictions.values()]
        try:
            page = list_page(entries, path.partition("?")[2], self.page_size, f"{self.base_url}/predictions")
        except ValueError as exc:
            return 400, {"title": "Invalid query", "detail": str(exc), "status": 400}
        for prediction in page.items:
            self._advance(prediction)
        return 200, {"previous": page.previous, "next": page.next, "results": [p.body for p in page.items]}

    def _cancel(self, prediction: _Prediction) -> dict[str, Any]:
        self.cancels.append(prediction.body["id"])
        self._advance(prediction)
        if prediction.body["status"] in RUNNING:
            self._finish(prediction, "canceled")
        return prediction.body

    def _new(self, job_id: str, prompt: str, fate: Fate, given: dict[str, Any] | None = None) -> _Prediction:
        body = copy.deepcopy(recording("create_starting")["response"]["body"])
        url = f"{self.base_url}/predictions/{job_id}"
        body.update(id=job_id, model=self.model, input=dict(given or {"prompt": prompt}), created_at=_now(),
                    output=None, started_at=None, completed_at=None, metrics={}, source="api",
                    urls={"cancel": f"{url}/cancel", "get": url})
        self._predictions[job_id] = prediction = _Prediction(body, fate, len(self._predictions), self.clock())
        return prediction

    def _finish(self, prediction: _Prediction, status: str, at: float | None = None) -> None:
        body, fate = prediction.body, prediction.fate
        prediction.ended = self.clock() if at is None else at
        ran = round(prediction.ended - prediction.born, 6)
        completed = datetime.fromisoformat(body["created_at"]) + timedelta(seconds=ran)
        body.update(status=status, completed_at=_stamp(completed), metrics={"predict_time": ran, "total_time": ran})
        body["started_at"] = body["started_at"] or body["created_at"]
        if status == "succeeded":
            body["output"] = fate.output if fate.output is not None else f"https://replicate.delivery/stand-in/{body['id']}.mp4"
        elif status == "failed":
            body["error"] = fate.error


def _route(method: str, path: str, model: str) -> tuple[Route | None, str | None]:
    parts = path.split("?")[0].strip("/").split("/")
    if method == "POST" and parts == ["v1", "models", *model.split("/"), "predictions"]:
        return "create", None
    if method == "GET" and parts == ["v1", "predictions"]:
        return "list", None
    if method == "GET" and len(parts) == 3 and parts[:2] == ["v1", "predictions"]:
        return "get", parts[2]
    if method == "POST" and len(parts) == 4 and parts[:2] == ["v1", "predictions"] and parts[3] == "cancel":
        return "cancel", parts[2]
    return None, None


def _now() -> str:
    return _stamp(datetime.now(UTC))


def _stamp(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


class _Handler(BaseHTTPRequestHandler):
    stand_in: StandInReplicate

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/_standin/"):  # the harness's window into the stand-in, not Replicate's API
            status, body, fault = (200, self.stand_in.state(), None) if self.path == "/_standin/bill" else (
                404, _error_body(404), None)
        else:
            status, body, fault = self.stand_in.handle(method, self.path, self.headers, raw)
        with self.stand_in._lock:
            self.stand_in.seen.append(Seen(method, self.path, time.monotonic(), status))
        if fault is not None and fault.hang_seconds:
            self.stand_in.hold(fault.hang_seconds)
        payload = json.dumps(body).encode()
        try:
            self.send_response(status)
            kind = "application/json" if status < 400 or status == 429 else "application/problem+json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            if fault is not None and fault.retry_after is not None:
                self.send_header("Retry-After", fault.retry_after)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on a held answer: what a hang is for

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test's assertions read `seen`, not stderr


if __name__ == "__main__":  # the process form lives beside it, so this module stays the API
    from tests.stand_ins.replicate_main import main

    sys.exit(main())
