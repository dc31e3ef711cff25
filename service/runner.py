"""The background runner: generates admitted requests with bounded concurrency, keeps their
leases alive, and sweeps claims whose workers died.

Each submitted generation gets a heartbeat from the moment it is submitted (not from when a
generation slot frees up), so a claim queued behind `max_concurrent_generations` others does
not expire while it waits. If a heartbeat finds the claim gone (taken over after a stall, or
swept), the generation is cancelled: nobody will accept its result, so stop paying for it.

Only the generation itself is ever cancelled, never the database write that records how it
ended: a write interrupted half-way would leave its thread holding a connection after the
service has closed its pool. So `stop` cancels the generations and the sweeper's sleep, then
waits for every outcome to be recorded. Storage calls block and run in threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from service.errors import ClaimfirstError, StorageUnavailable
from service.generators import GenerationJob, GenerationResult, Generator
from service.policies import Recorder
from service.storage import SqlStore

__all__ = ["GenerationRunner", "RunnerStats"]

log = logging.getLogger("claimfirst.runner")


@dataclass
class RunnerStats:
    submitted: int = 0
    started: int = 0
    ready: int = 0
    failed: int = 0
    lost: int = 0

    @property
    def in_flight(self) -> int:
        return self.submitted - self.ready - self.failed - self.lost


class GenerationRunner:
    def __init__(
        self,
        store: SqlStore,
        generator: Generator,
        clock: Callable[[], datetime],
        *,
        max_concurrent: int,
        heartbeat_seconds: float,
        sweep_seconds: float,
        timeout_seconds: float,
    ) -> None:
        self.store = store
        self.generator = generator
        self.clock = clock
        self.heartbeat_seconds = heartbeat_seconds
        self.sweep_seconds = sweep_seconds
        self.timeout_seconds = timeout_seconds
        self.stats = RunnerStats()
        self._slots = asyncio.Semaphore(max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()
        self._generations: set[asyncio.Task[GenerationResult]] = set()
        self._stopping = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_until_stopped(), name="sweeper")

    async def stop(self) -> None:
        """Cancel in-flight generations, wait until each has marked its video failed."""
        self._stopping.set()
        for generation in list(self._generations):
            generation.cancel()
        await self.drain()
        if self._sweeper is not None:
            await self._sweeper

    async def drain(self) -> None:
        """Wait until every submitted generation has finished and been recorded."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- generation --------------------------------------------------------------------

    def submit(self, recorder: Recorder, job: GenerationJob) -> None:
        task = asyncio.get_running_loop().create_task(self._run(recorder, job), name=f"video-{job.video_id}")
        self.stats.submitted += 1
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, recorder: Recorder, job: GenerationJob) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(recorder, job))
        try:
            result, failure = await self._generate(job, heartbeat)
        finally:
            heartbeat.cancel()
        try:
            if result is not None:
                if await asyncio.to_thread(recorder.complete, result, self.clock()):
                    self.stats.ready += 1
                    return
                log.warning("video %s: late result rejected, its claim was superseded", job.video_id)
                self.stats.lost += 1
            elif failure == _LEASE_LOST:
                log.warning("video %s: lease lost, generation cancelled", job.video_id)
                self.stats.lost += 1
                await asyncio.to_thread(recorder.fail, failure, self.clock())
            else:
                log.info("video %s failed: %s", job.video_id, failure)
                self.stats.failed += 1
                await asyncio.to_thread(recorder.fail, failure, self.clock())
        except ClaimfirstError as exc:
            # The database is down: the lease will run out and the sweep (or the next
            # request for this prompt) frees the key. Nothing else to do here.
            log.error("video %s: could not record its outcome (%s)", job.video_id, exc)

    async def _generate(self, job: GenerationJob, heartbeat: asyncio.Task[None]) -> tuple[GenerationResult | None, str]:
        """Run the generator in a slot; return (result, "") or (None, why it failed)."""
        async with self._slots:
            if self._stopping.is_set():
                return None, _STOPPED
            self.stats.started += 1
            generation = asyncio.create_task(asyncio.wait_for(self.generator.generate(job), self.timeout_seconds))
            self._generations.add(generation)
            try:
                await asyncio.wait({generation, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
                if not generation.done():
                    generation.cancel()
                    await asyncio.wait({generation})
                    if not heartbeat.cancelled() and heartbeat.exception() is not None:
                        log.error("video %s: heartbeat crashed", job.video_id, exc_info=heartbeat.exception())
                    return None, _LEASE_LOST
            finally:
                self._generations.discard(generation)
        if generation.cancelled():
            return None, _STOPPED
        exc = generation.exception()
        if isinstance(exc, TimeoutError):
            return None, f"generation timed out after {self.timeout_seconds:g} s"
        if exc is not None:  # any generator error marks the video failed, never leaks
            return None, f"{type(exc).__name__}: {exc}"
        return generation.result(), ""

    async def _heartbeat(self, recorder: Recorder, job: GenerationJob) -> None:
        """Renew the lease until cancelled; return when the claim is no longer ours."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                still_ours = await asyncio.to_thread(recorder.renew, self.clock())
            except StorageUnavailable as exc:
                # The lease may still be valid; try again next beat rather than give up.
                log.warning("video %s: heartbeat failed (%s)", job.video_id, exc)
                continue
            if not still_ours:
                return

    # -- the sweep ---------------------------------------------------------------------

    async def sweep_once(self) -> list[int]:
        return await asyncio.to_thread(self.store.expire_abandoned, now=self.clock())

    async def _sweep_until_stopped(self) -> None:
        while not self._stopping.is_set():
            try:
                expired = await self.sweep_once()
                if expired:
                    log.warning("sweep: marked abandoned videos failed: %s", expired)
            except ClaimfirstError as exc:
                log.warning("sweep failed: %s", exc)
            try:
                await asyncio.wait_for(self._stopping.wait(), self.sweep_seconds)
            except TimeoutError:
                pass


_STOPPED = "service stopped during generation"
_LEASE_LOST = "lease lost while generating; generation cancelled"
