"""Generators: what turns a won claim into a video, behind one small interface.

The service only ever calls `Generator.generate`; a real provider client would be one more
class here. `SimulatedGenerator` is the default: no network, configurable duration and
failure rate, seedable so a run can be repeated.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from service.errors import GenerationError

__all__ = ["GenerationJob", "GenerationResult", "Generator", "SimulatedGenerator", "SimHints"]


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
    # The provider job of an earlier attempt of this claim (its worker died): adopt it — poll it and
    # use its result — if it is still starting/processing or succeeded, instead of paying for a new one.
    adopt_job_id: str | None = None
    # Called with the provider's job id as soon as the job is created (or adopted), BEFORE waiting on
    # it: the runner makes it durable on the claim. If it raises, cancel the provider job and re-raise.
    on_job_started: Callable[[str], Awaitable[None]] | None = None


@dataclass(frozen=True)
class GenerationResult:
    video_url: str
    thumbnail_url: str | None
    cost_usd: Decimal | None


class Generator(Protocol):
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
        self.cost_usd = Decimal(str(cost_usd)).quantize(Decimal("0.01"))
        self._random = random.Random(seed)

    async def generate(self, job: GenerationJob) -> GenerationResult:
        # Both draws happen up front, in submission order, so a seeded run is repeatable
        # however the generations interleave.
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
