"""A webhook receiver for the callback tests: uvicorn on loopback, in a thread of the test.

Every delivery is verified as a receiver would, with the Standard Webhooks reference package
(`Webhook.verify`: the HMAC of id.timestamp.body, the timestamp within five minutes). It can
be down (not listening: connection refused), answer errors for a number of deliveries, and be
started again on the same port.
"""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks import Webhook

from service.process import free_port


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass
class Delivery:
    webhook_id: str
    status: int  # what the receiver answered
    body: dict[str, Any] | None  # None when the signature did not verify


@dataclass
class Receiver:
    secret: str
    port: int = field(default_factory=free_port)
    fail_next: int = 0  # answer 503 to this many deliveries first
    deliveries: list[Delivery] = field(default_factory=list)
    hold: threading.Event | None = None  # when set: every delivery waits (the answer hangs)
    in_flight: int = 0  # deliveries being answered now

    def __post_init__(self) -> None:
        self._webhook = Webhook(self.secret)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/video"

    def accepted(self) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.status == 204]

    def ids(self) -> list[str]:
        with self._lock:
            return [d.webhook_id for d in self.deliveries]

    async def _app(self, scope: dict, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            parsed = self._webhook.verify(body, headers)
        except Exception:  # the package's WebhookVerificationError, or a body that is not JSON
            parsed = None
        if self.hold is not None:
            self.in_flight += 1
            try:
                while self.hold.is_set():  # the test that set it clears it
                    await asyncio.sleep(0.02)  # polls the event; not synchronisation by time
            finally:
                self.in_flight -= 1
        with self._lock:
            if parsed is None:
                status = 401
            elif self.fail_next > 0:
                self.fail_next -= 1
                status = 503
            else:
                status = 204
            self.deliveries.append(Delivery(headers.get("webhook-id", ""), status, parsed))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def start(self) -> Receiver:
        config = uvicorn.Config(self._app, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning",
                                interface="asgi3")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the receiver did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
