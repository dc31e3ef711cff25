"""Generators: what turns a won claim into a video, behind one small interface.

The service only ever calls `Generator.generate`. `SimulatedGenerator` is the default: no
network, configurable duration and failure rate, seedable so a run can be repeated.
`service.generation.replicate.ReplicateGenerator` is the real provider; `service.generation.make_generator` picks one from
the settings.

A provider job costs money the moment it is created, so a job carries two hooks for not
paying twice across a crash: `on_job_started` hands the provider's job id to the runner to
make durable before any waiting, and `adopt_job_id` gives a later attempt of the same claim
the id to resume instead of creating a second job. The simulated generator has no provider
job and ignores both.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from service.errors import GenerationError
from service.records import GenerationResult

__all__ = [
    "GenerationJob", "GenerationResult", "Generator", "SimulatedGenerator", "SimHints", "usd",
]


# Enough for a test or a look in a console; bounded, so a long-running simulation does not grow.
SIM_INPUTS_KEPT = 256


def usd(amount: float) -> Decimal:
    """A configured price as the cents the database stores (floats from the environment)."""
    return Decimal(str(amount)).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class SimHints:
    """Per-request overrides for the simulated generator (incident replay only)."""

    seconds: float | None = None
    fail: bool | None = None


@dataclass(frozen=True)
class GenerationJob:
    video_id: int | None  # None under the replay-only policies that write the row at the end
    tg_user_id: int
    prompt: str
    category: str | None = None
    hints: SimHints | None = None
    # The provider job of an earlier attempt of this claim (its worker died): adopt it (poll
    # it and use its result) if it is still starting/processing or succeeded, instead of
    # paying for a new one.
    adopt_job_id: str | None = None
    # Called with the provider's job id as soon as the job is created (or adopted), BEFORE
    # waiting on it: the runner makes it durable on the claim.
    on_job_started: Callable[[str], Awaitable[None]] | None = None
    # Called just before a provider is asked for a new job: the runner commits a recovery point
    # (raises if the claim's lease is no longer live: then nothing is created).
    on_job_requested: Callable[[], Awaitable[None]] | None = None
    # An earlier attempt asked for a job at `search_since` (the database's clock) and never
    # recorded its id: look for it at the provider before creating one. `search_age_seconds`:
    # how long before this attempt's claim that was (the search waits until that request has
    # surely landed at the provider).
    search_since: datetime | None = None
    search_age_seconds: float = 0.0
    # Finish an earlier attempt's job for nobody's new request (the sweep): never create one.
    adopt_only: bool = False
    # Asked when the generation is interrupted or fails with a job running: may it be cancelled
    # at the provider? Only the attempt that holds the claim may stop a job (a successor may
    # have adopted it; a stopping service hands it over). None: yes.
    may_cancel: Callable[[], bool] | None = None
    # Generation parameters (service.params), passed to the provider beside the prompt. An
    # attempt handed an earlier attempt's job has that attempt's (`ClaimTicket.params`).
    params: Mapping[str, Any] | None = field(default=None, hash=False)

    @property
    def provider_input(self) -> dict[str, Any]:
        """What the provider is asked: the prompt and the params beside it (`prompt` is never a
        param: `service.params` refuses it, and it could not replace the prompt here anyway)."""
        return {"prompt": self.prompt, **{k: v for k, v in (self.params or {}).items() if k != "prompt"}}


class Generator(Protocol):
    # The price of one generation: what the runner records as spent when a started job is
    # cancelled or superseded and so never returns a result.
    cost_usd: Decimal

    async def generate(self, job: GenerationJob) -> GenerationResult:
        """Produce the video, or raise (any exception marks the video failed)."""
        ...


class SimulatedGenerator:
    def __init__(
        self,
        seconds: tuple[float, float] = (3.0, 8.0),
        failure_rate: float = 0.0,
        seed: int | None = None,
        cost_usd: float = 4.0,
    ) -> None:
        self.seconds = seconds
        self.failure_rate = failure_rate
        self.cost_usd = usd(cost_usd)
        self._random = random.Random(seed)
        # What a provider would have been asked, (video id, input), the latest `SIM_INPUTS_KEPT`:
        # the simulation ignores params but shows what a real generator would have sent.
        self.inputs: deque[tuple[int | None, dict[str, Any]]] = deque(maxlen=SIM_INPUTS_KEPT)

    async def generate(self, job: GenerationJob) -> GenerationResult:
        # Both draws happen up front, in submission order, so a seeded run is repeatable
        # however the generations interleave.
        self.inputs.append((job.video_id, job.provider_input))
        duration = self._random.uniform(*self.seconds)
        fails = self._random.random() < self.failure_rate
        if job.hints is not None:
            duration = duration if job.hints.seconds is None else job.hints.seconds
            fails = fails if job.hints.fail is None else job.hints.fail
        await asyncio.sleep(duration)
        if fails:
            raise GenerationError(f"simulated generation failure for video {job.video_id}")
        return GenerationResult(
            video_url=f"https://videos.example.invalid/sim/{job.video_id}.mp4",
            thumbnail_url=f"https://videos.example.invalid/sim/{job.video_id}.jpg",
            cost_usd=self.cost_usd,
        )
