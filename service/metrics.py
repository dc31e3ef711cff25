"""Prometheus metrics (`GET /metrics`, prometheus-client), correct under `--workers N`.

    claimfirst_create_total{outcome}        every POST /create answered, by what it did
    claimfirst_create_seconds               how long /create took (histogram)
    claimfirst_generations_total{outcome}   every generation that ended, by how
    claimfirst_generation_cost_usd_total    what ended generations cost (paid, whether or not used)
    claimfirst_lease_takeovers_total        claims won with attempt > 1
    claimfirst_limit_reached_total{limit}   /create refused by a limit (user_daily, user_concurrent, daily_budget)
    claimfirst_in_flight                    generations admitted here and not ended (gauge)
    claimfirst_callback_deliveries_total{result}  callback attempts: delivered, retrying, given_up, replaced

One process: each app has its own registry (tests build many apps in one process). Several
workers: `python -m service` sets PROMETHEUS_MULTIPROC_DIR to a fresh directory before the
workers start; prometheus-client then keeps every value in a per-process file there and a
scrape, answered by any worker, sums the files of all of them (counters and histograms of a
worker that died still count; the in-flight gauge counts live processes only).
"""

from __future__ import annotations

import glob
import os
from decimal import Decimal

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

__all__ = ["Metrics", "CONTENT_TYPE_LATEST", "MULTIPROC_ENV", "create_outcome", "CLIENT_GONE"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

CREATE_OUTCOMES = ("accepted", "duplicate", "rejected", "unavailable", "throttled", "client_gone")
# The status a request whose client went away before it was answered is logged and counted
# with (nginx's name for it); no client ever receives it.
CLIENT_GONE = 499
LIMITS = ("user_daily", "user_concurrent", "daily_budget")  # service.errors.LimitReached.KINDS
GENERATION_OUTCOMES = ("ready", "adopted", "failed", "superseded", "handed_over")
# What a callback delivery attempt ended as (service.callbacks): the receiver took it; it is
# due again later; it was given up (past CLAIMFIRST_CALLBACK_GIVE_UP_HOURS); or the video's
# event changed while it was sent (the new one goes next).
CALLBACK_RESULTS = ("delivered", "retrying", "given_up", "replaced")
# A won claim takes milliseconds, a duplicate less; a request that waits on a locked or
# unreachable database ends at request_timeout_seconds (5 s by default). The buckets span
# both, so the histogram tells a slow database from a healthy one and shows the timeouts.
CREATE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def create_outcome(status: int, replayed: bool) -> str:
    """What a /create answer did. A replayed answer (Idempotency-Key) repeats a request that
    was already answered and starts nothing: a duplicate, whatever its status."""
    if replayed or status == 409:
        return "duplicate"
    if 200 <= status < 300:
        return "accepted"
    if status == 429:
        return "throttled"
    if status == CLIENT_GONE:
        return "client_gone"
    if status >= 500:
        return "unavailable"
    return "rejected"  # 400, 401, 413, 422: refused before anything was written


class Metrics:
    """The service's metrics, registered in `registry` (None in multiprocess mode, where a
    scrape reads every process's files instead of a registry)."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = None if self.multiprocess else CollectorRegistry()
        reg = self.registry
        self.creates = Counter("claimfirst_create", "POST /create answers, by what the request did",
                               ["outcome"], registry=reg)
        self.create_seconds = Histogram("claimfirst_create_seconds", "POST /create latency",
                                        buckets=CREATE_BUCKETS, registry=reg)
        self.generations = Counter("claimfirst_generations", "generations that ended, by how", ["outcome"],
                                   registry=reg)
        self.cost = Counter("claimfirst_generation_cost_usd", "what ended generations cost (USD)", registry=reg)
        self.takeovers = Counter("claimfirst_lease_takeovers", "claims won with attempt > 1", registry=reg)
        self.limits = Counter("claimfirst_limit_reached", "/create refused (429) by a limit the claim enforces",
                              ["limit"], registry=reg)
        # livesum: the sum over live processes; a dead worker's generations are not in flight.
        self.in_flight = Gauge("claimfirst_in_flight", "generations admitted and not ended", registry=reg,
                               multiprocess_mode="livesum")
        # Every labelled series exists from the start (at 0), so rate() sees the first event;
        # kept, so counting an answer does not look its series up again.
        self._created = {outcome: self.creates.labels(outcome) for outcome in CREATE_OUTCOMES}
        for outcome in GENERATION_OUTCOMES:
            self.generations.labels(outcome)
        self.callbacks = Counter("claimfirst_callback_deliveries", "callback delivery attempts, by result",
                                 ["result"], registry=reg)
        for result in CALLBACK_RESULTS:
            self.callbacks.labels(result)
        for limit in LIMITS:
            self.limits.labels(limit)

    def create_answered(self, status: int, replayed: bool, seconds: float) -> str:
        """Count and time one POST /create answer (`service.http.edge`); returns its outcome."""
        outcome = create_outcome(status, replayed)
        self.create_seconds.observe(seconds)
        self._created[outcome].inc()
        return outcome

    def limit_reached(self, limit: str) -> None:
        self.limits.labels(limit).inc()

    def generation_ended(self, outcome: str | None, cost_usd: Decimal | None) -> None:
        if outcome is not None:
            self.generations.labels(outcome).inc()
        if cost_usd:
            self.cost.inc(float(cost_usd))

    def callback_delivered(self, result: str) -> None:
        self.callbacks.labels(result).inc()

    def exposition(self) -> bytes:
        """The text format of every metric, summed over all workers in multiprocess mode."""
        if self.registry is not None:
            return generate_latest(self.registry)
        path = os.environ[MULTIPROC_ENV]
        _forget_dead_processes(path)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        return generate_latest(registry)


def _forget_dead_processes(path: str) -> None:
    """uvicorn has no worker-exit hook to call `mark_process_dead` from, so each scrape does
    it for live-gauge files whose process is gone (a killed or restarted worker)."""
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        pid = int(os.path.basename(name).rsplit("_", 1)[1].removesuffix(".db"))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, path)
        except PermissionError:
            pass  # alive, another user's
