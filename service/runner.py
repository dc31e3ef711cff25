"""The background runner: generates won claims with bounded concurrency, keeps their leases
alive, and sweeps claims whose workers died.

Each submitted claim gets a heartbeat from the moment it is submitted (not from when a
generation slot frees up), so a claim queued behind `max_concurrent_generations` others does
not expire while it waits. If a heartbeat finds the claim gone (taken over after a stall, or
swept), the generation is cancelled: nobody will accept its result, so stop paying for it.
Storage calls are blocking and run in threads; generation itself is async.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from service.errors import ClaimfirstError, StorageUnavailable
from service.generators import GenerationJob, Generator
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


class _LeaseLost(Exception):
    pass


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
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(), name="sweeper")

    async def stop(self) -> None:
        """Cancel in-flight generations (each marks its video failed) and the sweeper."""
        tasks = [*self._tasks, *([self._sweeper] if self._sweeper else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self) -> None:
        """Wait until every submitted generation has finished (tests and replay use it)."""
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
            async with self._slots:
                self.stats.started += 1
                generation = asyncio.create_task(
                    asyncio.wait_for(self.generator.generate(job), self.timeout_seconds)
                )
                await asyncio.wait({generation, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
                if not generation.done():
                    generation.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await generation
                    raise _LeaseLost()
                result = generation.result()
            won = await asyncio.to_thread(recorder.complete, result, self.clock())
            if won:
                self.stats.ready += 1
            else:
                self.stats.lost += 1
                log.warning("video %s: late result rejected, its claim was superseded", job.video_id)
        except _LeaseLost:
            self.stats.lost += 1
            log.warning("video %s: lease lost, generation cancelled", job.video_id)
            await self._fail(recorder, job, "lease lost while generating; generation cancelled")
        except asyncio.CancelledError:
            self.stats.failed += 1
            await asyncio.shield(self._fail(recorder, job, "service stopped during generation"))
            raise
        except TimeoutError:
            self.stats.failed += 1
            await self._fail(recorder, job, f"generation timed out after {self.timeout_seconds:g} s")
        except Exception as exc:  # any generator error marks the video failed, never leaks
            self.stats.failed += 1
            log.info("video %s failed: %s", job.video_id, exc)
            await self._fail(recorder, job, f"{type(exc).__name__}: {exc}")
        finally:
            heartbeat.cancel()

    async def _fail(self, recorder: Recorder, job: GenerationJob, error: str) -> None:
        try:
            await asyncio.to_thread(recorder.fail, error, self.clock())
        except ClaimfirstError as exc:
            # The database is down: the lease will run out and the sweep (or the next
            # request for this prompt) frees the key. Nothing else to do here.
            log.error("video %s: could not record failure (%s)", job.video_id, exc)

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

    async def _sweep_forever(self) -> None:
        while True:
            try:
                expired = await self.sweep_once()
                if expired:
                    log.warning("sweep: marked abandoned videos failed: %s", expired)
            except ClaimfirstError as exc:
                log.warning("sweep failed: %s", exc)
            await asyncio.sleep(self.sweep_seconds)
