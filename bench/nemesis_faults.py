"""The nemesis's faults, one after another on a seeded schedule, each ending healed.

A fault is drawn from `random.Random(seed)`, applied (blocking: process waits, pg_ctl, sleeps
of the fault's own length, so the caller runs it in a thread while the traffic goes on),
printed as it starts and as it heals, and kept as a `Window`: when it began and ended, and
which service it struck (None: PostgreSQL or the network, which every service shares).

`--focus kill` waits for the stand-in to accept a new prediction, lets it run a moment, then
kills -9 a worker or a whole service: most kills land while a provider job is in flight.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from nemesis_cluster import Postgres, Service, StandIn, wait_for
from tests.stand_ins.faulty_proxy import FaultyProxy  # noqa: E402  (the tests use it too)

__all__ = ["Window", "Nemesis", "FAULTS"]

FAULTS = ("kill_worker", "kill_service", "freeze_service", "term_restart", "skew_restart",
          "pg_stop", "pg_freeze", "proxy_latency", "proxy_blackhole", "proxy_reset")
KILL_FOCUS_WEIGHTS = {"kill_worker": 45, "kill_service": 35, "freeze_service": 5, "term_restart": 5,
                      "pg_stop": 5, "proxy_reset": 5}
# How long the kill focus waits for the provider to accept a new job before killing anyway.
FRESH_JOB_WAIT_SECONDS = 15.0
RESPAWN_DEADLINE_SECONDS = 40.0


@dataclass(frozen=True)
class Window:
    kind: str
    host: str | None  # the service's name, None for a fault every service shares
    start: float  # time.monotonic()
    end: float
    detail: str


class Nemesis:
    def __init__(self, *, seed: int, focus: str, services: list[Service], pg: Postgres, proxy: FaultyProxy,
                 stand_in: StandIn, lease_seconds: float, print_fn: Callable[[str], None] = print) -> None:
        self.rng = random.Random(f"schedule-{seed}")
        self.focus = focus
        self.services = services
        self.pg, self.proxy, self.stand_in = pg, proxy, stand_in
        self.lease = lease_seconds
        self.windows: list[Window] = []
        self.began = time.monotonic()
        self._print = print_fn

    def say(self, text: str) -> None:
        self._print(f"[t+{time.monotonic() - self.began:6.1f}s] {text}")

    # -- the schedule ------------------------------------------------------------------------

    def run(self, seconds: float, stopping: Callable[[], bool]) -> None:
        """Faults until `seconds` have passed (the last one is let finish and heal)."""
        deadline = self.began + seconds
        for _ in range(1000):  # far more than fit in any run; a bound all the same
            gap = self.rng.uniform(1.0, 3.0) if self.focus == "kill" else self.rng.uniform(2.0, 5.0)
            if time.monotonic() + gap >= deadline or stopping():
                return
            time.sleep(gap)
            if self.focus == "kill":
                kind = self.rng.choices(list(KILL_FOCUS_WEIGHTS), weights=list(KILL_FOCUS_WEIGHTS.values()))[0]
            else:
                kind = self.rng.choice(FAULTS)
            host = self.rng.choice(self.services)
            if self.focus == "kill" and kind.startswith("kill"):
                self._await_fresh_job()
            getattr(self, kind)(host)

    def _await_fresh_job(self) -> None:
        before = len(self.stand_in.state()["bill"])
        wait_for(lambda: len(self.stand_in.state()["bill"]) > before, timeout=FRESH_JOB_WAIT_SECONDS, every=0.1)
        time.sleep(self.rng.uniform(0.1, 3.0))  # into the provider call: created, being polled
        running = [c["id"] for c in self.stand_in.state()["bill"] if c["status"] in ("starting", "processing")]
        self.say(f"provider jobs running: {len(running)} (newest {running[-1] if running else 'none'})")

    def _window(self, kind: str, host: Service | None, start: float, detail: str) -> None:
        self.windows.append(Window(kind, host.name if host else None, start, time.monotonic(), detail))
        self.say(f"healed {kind}{' ' + host.name if host else ''}")

    # -- service faults ----------------------------------------------------------------------

    def kill_worker(self, host: Service) -> None:
        pids = host.workers_pids()
        if host.workers == 1 or not pids:
            return self.kill_service(host)
        pid = self.rng.choice(pids)
        start = time.monotonic()
        self.say(f"kill -9 worker {pid} of {host.name}")
        signal_pid(pid, signal.SIGKILL)
        # uvicorn's supervisor notices within its 0.5 s check and starts another worker.
        respawned = wait_for(lambda: pid not in host.workers_pids() and len(host.workers_pids()) == host.workers,
                             timeout=RESPAWN_DEADLINE_SECONDS, every=0.2)
        if not respawned or not host.wait_healthy(RESPAWN_DEADLINE_SECONDS):
            self.say(f"{host.name}: no worker came back; restarting it")
            host.kill()
            host.start()
        self._window("kill_worker", host, start, f"pid {pid}")

    def kill_service(self, host: Service) -> None:
        start = time.monotonic()
        self.say(f"kill -9 {host.name} (all its processes)")
        host.kill()
        time.sleep(self.rng.uniform(0.5, 3.0))
        host.start()
        self._window("kill_service", host, start, "restarted")

    def freeze_service(self, host: Service) -> None:
        seconds = self.rng.uniform(self.lease + 1, self.lease + 4)  # past the lease
        start = time.monotonic()
        self.say(f"SIGSTOP {host.name} for {seconds:.1f} s (lease {self.lease:g} s)")
        host.signal_group(signal.SIGSTOP)
        host.frozen = True
        time.sleep(seconds)
        host.signal_group(signal.SIGCONT)
        host.frozen = False
        if not host.wait_healthy(RESPAWN_DEADLINE_SECONDS):
            self.say(f"{host.name}: not healthy after SIGCONT; restarting it")
            host.kill()
            host.start()
        self._window("freeze_service", host, start, f"{seconds:.1f} s")

    def term_restart(self, host: Service, skew: str | None = None) -> None:
        start = time.monotonic()
        self.say(f"SIGTERM {host.name}, restart" + (f" with FAKETIME={skew}" if skew else ""))
        graceful = host.terminate()
        host.start(skew=skew)
        self._window("skew_restart" if skew else "term_restart", host, start,
                     f"{'graceful' if graceful else 'killed after the grace'}{', skew ' + skew if skew else ''}")

    def skew_restart(self, host: Service) -> None:
        seconds = self.rng.randint(30, 90) * self.rng.choice((1, -1))
        self.term_restart(host, skew=f"{seconds:+d}s")

    # -- shared faults -----------------------------------------------------------------------

    def pg_stop(self, _host: Service) -> None:
        seconds = self.rng.uniform(2.0, 6.0)
        start = time.monotonic()
        self.say(f"PostgreSQL stop -m immediate for {seconds:.1f} s")
        self.pg.stop_immediate()
        time.sleep(seconds)
        self.pg.start()
        self.proxy.retarget(self.pg.socket)
        self._window("pg_stop", None, start, f"{seconds:.1f} s")

    def pg_freeze(self, _host: Service) -> None:
        seconds = self.rng.uniform(3.0, 8.0)
        start = time.monotonic()
        self.say(f"PostgreSQL SIGSTOP (all processes) for {seconds:.1f} s")
        self.pg.freeze()
        time.sleep(seconds)
        self.pg.thaw()
        self._window("pg_freeze", None, start, f"{seconds:.1f} s")

    def proxy_latency(self, _host: Service) -> None:
        added, seconds = self.rng.uniform(1.0, 6.0), self.rng.uniform(5.0, 12.0)
        start = time.monotonic()
        self.say(f"proxy: +{added:.1f} s per round trip for {seconds:.1f} s")
        self.proxy.latency(added)
        time.sleep(seconds)
        self.proxy.pass_through()
        self._window("proxy_latency", None, start, f"+{added:.1f} s for {seconds:.1f} s")

    def proxy_blackhole(self, _host: Service) -> None:
        seconds = self.rng.uniform(3.0, 8.0)
        start = time.monotonic()
        self.say(f"proxy: blackhole for {seconds:.1f} s")
        self.proxy.blackhole()
        time.sleep(seconds)
        self.proxy.pass_through()
        self._window("proxy_blackhole", None, start, f"{seconds:.1f} s")

    def proxy_reset(self, _host: Service) -> None:
        start = time.monotonic()
        self.say(f"proxy: reset all {self.proxy.connections} connections")
        self.proxy.reset()
        self._window("proxy_reset", None, start, "")

    # -- the end -------------------------------------------------------------------------------

    def heal(self) -> None:
        """Every fault undone: the network passes, PostgreSQL runs, every service runs on a true clock."""
        self.proxy.pass_through()
        self.pg.heal()
        self.proxy.retarget(self.pg.socket)
        for host in self.services:
            if host.frozen:
                host.signal_group(signal.SIGCONT)
                host.frozen = False
            if host.process is None or host.process.poll() is not None:
                self.say(f"heal: {host.name} was not running; starting it")
                host.start()
            elif host.skew is not None:
                self.term_restart(host)


def signal_pid(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
