"""The nemesis's clients: concurrent `/create` over many users, as the bot's users send them.

Each request is one of:
- `same`: a prompt this user already sent, byte for byte (the double tap);
- `variant`: one of their prompts respelled with the same prompt key (case, trailing
  punctuation, whitespace: `service.prompt_key`);
- `new`: a prompt this user never sent;
- `idem`: a prompt sent with an Idempotency-Key, and the same key (and body) sent again
  after a timeout, a connection error or a 503, as a careful client retries.

Every prompt names its user ("u7012 ..."), so a prompt maps to one user without the database:
a prediction the database does not know can still be put on its (user, key). Choices come
from `random.Random(seed)`; which request lands first is up to the machine.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import httpx

from service.prompt_key import prompt_key

__all__ = ["Sent", "Traffic", "SUBJECTS"]

SUBJECTS = (
    "a fox crossing a frozen river at dawn", "smart wallets as digital assistants", "a lighthouse in a storm",
    "bees building a city of wax", "a tram through Lisbon in the rain", "origami cranes taking flight",
    "a robot learning to paint", "the northern lights over a fjord", "a chess game between two cats",
    "a paper boat in a gutter river", "a street market in Marrakesh", "whales singing under ice",
)
# A careful client's retries of one Idempotency-Key after a timeout or a 503.
IDEM_ATTEMPTS = 3
IDEM_RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class Sent:
    """One /create as the client saw it."""

    kind: str
    host: str
    user: int
    prompt: str
    key: str
    idempotency_key: str | None
    start: float  # time.monotonic()
    end: float
    status: int | None  # None: no HTTP answer
    error: str | None  # the transport error's class when no answer

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Traffic:
    hosts: list[str]
    seed: int
    rate: float = 8.0  # requests per second, all clients together
    clients: int = 6
    users: int = 30
    timeout: float = 13.0  # the client gives up after this long (the service's bound is 3 s)
    sent: list[Sent] = field(default_factory=list)
    _prompts: dict[int, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"traffic-{self.seed}")
        self._users = [7001 + n for n in range(self.users)]

    async def run(self, stop: asyncio.Event) -> None:
        limits = httpx.Limits(max_connections=self.clients * 2, max_keepalive_connections=self.clients)
        async with httpx.AsyncClient(timeout=self.timeout, limits=limits) as client:
            await asyncio.gather(*(self._client(client, stop) for _ in range(self.clients)))

    async def _client(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        interval = self.clients / self.rate
        while not stop.is_set():  # bounded by the run: `stop` is set when the schedule ends
            began = time.monotonic()
            await self._one(client)
            pause = interval - (time.monotonic() - began)
            if pause > 0:
                try:
                    await asyncio.wait_for(stop.wait(), pause)
                except TimeoutError:
                    pass

    async def _one(self, client: httpx.AsyncClient) -> None:
        rng = self._rng
        user = rng.choice(self._users)
        host = rng.choice(self.hosts)
        own = self._prompts.setdefault(user, [])
        kind = rng.choices(["same", "variant", "new", "idem"], weights=[30, 25, 25, 20])[0]
        if kind in ("same", "variant") and not own:
            kind = "new"
        if kind == "new" or (kind == "idem" and (not own or rng.random() < 0.5)):
            prompt = f"u{user} {rng.choice(SUBJECTS)} #{len(own) + 1}"
            own.append(prompt)
        else:
            prompt = rng.choice(own)
            if kind == "variant":
                prompt = respell(prompt, rng)
        idem = f"nemesis-{self.seed}-{rng.getrandbits(64):016x}" if kind == "idem" else None
        for _ in range(IDEM_ATTEMPTS if idem else 1):
            sent = await self._send(client, kind, host, user, prompt, idem)
            if idem is None or (sent.status is not None and sent.status != 503):
                return
            await asyncio.sleep(IDEM_RETRY_SECONDS)

    async def _send(self, client: httpx.AsyncClient, kind: str, host: str, user: int, prompt: str,
                    idem: str | None) -> Sent:
        headers = {"Idempotency-Key": idem} if idem else {}
        start = time.monotonic()
        status, error = None, None
        try:
            response = await client.post(f"{host}/create", json={"tg_user_id": user, "prompt": prompt},
                                         headers=headers)
            status = response.status_code
        except httpx.TimeoutException as exc:
            error = f"timeout:{type(exc).__name__}"
        except httpx.TransportError as exc:
            error = type(exc).__name__
        sent = Sent(kind, host, user, prompt, prompt_key(prompt), idem, start, time.monotonic(), status, error)
        self.sent.append(sent)
        return sent


def respell(prompt: str, rng: random.Random) -> str:
    """The same request as the user might retype it: same prompt key, other bytes."""
    words = prompt.split(" ")
    choice = rng.randrange(5)
    if choice == 0:
        text = prompt.upper()
    elif choice == 1:
        text = prompt + rng.choice(["!", "...", "?!", " .", "…"])
    elif choice == 2:
        text = "  ".join(words)
    elif choice == 3:
        text = f" {prompt.title()}\t"
    else:
        text = prompt.capitalize() + "!!"
    assert prompt_key(text) == prompt_key(prompt), (prompt, text)
    return text
