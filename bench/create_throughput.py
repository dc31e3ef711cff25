"""`/create` against the ceiling: the hand-written minimal claim endpoint, same database, same run.

The ceiling is `bench/ceiling/minimal_app.py` (FastAPI, a psycopg async pool, one conditional
upsert per request, nothing else). Both servers run as real processes on one throwaway
PostgreSQL (the pgserver wheel), and `wrk` (Debian package `wrk`) drives each with the same
scripts (`bench/ceiling/dup.lua`, `new.lua`): 32 connections, one thread. Servers alternate
order between repetitions (the machine is shared and noisy); the table shows medians, and the
service's ratio to the ceiling as the median of each repetition's own ratio (its two runs are
seconds apart) with the range of those ratios:
- `duplicate`: POST /create of a prompt already claimed (the service answers 409 with its holder);
- `new`: POST /create of distinct prompts (claim + video row + background hand-off);
- `--workers 2` on the duplicate path, against one worker, for the ceiling and the service alike,
  with the CPU each request cost (server, PostgreSQL, wrk) and the rate that CPU allows on this
  machine's cores: on a small machine the database and wrk share the cores with the workers, and
  that bound, not the service, caps what a second worker can add;
- SQLite (the embedded default) against a minimal SQLite endpoint (`bench/minimal_sqlite.py`).
Then the RSS of the service after `--queued` new claims with their generations queued.

    .venv/bin/python bench/create_throughput.py [--seconds 10] [--repeats 5] [--queued 100000] [--only pg]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import httpx
import pgserver
import psutil
import psycopg

from service.process import free_port, serve_subprocess
from service.settings import normalize_database_url

ROOT = Path(__file__).resolve().parents[1]
PERF = ROOT / "bench" / "ceiling"  # the ceiling app and the wrk scripts, copied from the perf baseline
MINIMAL_SCHEMA = ("CREATE TABLE claims (id bigserial, user_id bigint, prompt_key text, status text, "
                  "created_at timestamptz default now(), PRIMARY KEY (user_id, prompt_key))")
# The service under load: generations that never finish within the run (they queue, as real
# 2-5 minute ones would), and a backlog limit out of the way so every new claim is admitted.
# Its pools are its defaults (8 request connections; the ceiling's pool allows 16).
SERVICE_ENV = {"CLAIMFIRST_SIM_SECONDS": "36000", "CLAIMFIRST_MAX_QUEUED_GENERATIONS": "10000000",
               "CLAIMFIRST_LIMIT_CONCURRENCY": "100000"}


class Running(NamedTuple):
    url: str
    pid: int  # the server's first process; its workers are its children


class Run(NamedTuple):
    rate: float  # requests/s
    p99: float  # ms
    cpu_us: dict[str, float]  # CPU µs per request: the server's processes, PostgreSQL's, wrk's


def wrk(url: str, script: str, seconds: int, connections: int = 32) -> tuple[float, float]:
    """Requests/s and p99 latency (ms) of one wrk run."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(PERF / script), f"{url}/create"],
        capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"\n\s+99%\s+([\d.]+)(us|ms|s)\b", out).groups()
    return rate, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def measured(server: Running, script: str, seconds: int) -> Run:
    """One wrk run, with the CPU time each side spent on it, per request."""
    before, wall, children = _cpu_seconds(server.pid), time.monotonic(), _children_cpu()
    rate, p99 = wrk(server.url, script, seconds)
    after, wall, children = _cpu_seconds(server.pid), time.monotonic() - wall, _children_cpu() - children
    requests = rate * wall
    return Run(rate, p99, {"server": 1e6 * (after[0] - before[0]) / requests,
                           "postgres": 1e6 * (after[1] - before[1]) / requests,
                           "wrk": 1e6 * children / requests})


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds so far of the server's process tree, and of every PostgreSQL process."""
    def spent(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:  # a backend that ended between listing and reading
            return 0.0
        return times.user + times.system

    root = psutil.Process(pid)
    server = sum(spent(p) for p in [root, *root.children(recursive=True)])
    postgres = sum(spent(p) for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres")
    return server, postgres


def _children_cpu() -> float:
    # wrk is this process's waited-for child: its CPU time is in ours once it has exited.
    times = os.times()
    return times.children_user + times.children_system


def _wait_for(ready: Callable[[], bool], process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not up within 30 s")
        time.sleep(0.1)


def _wait_up(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.args}")
        try:
            httpx.post(f"{url}/create", json={"tg_user_id": 1, "prompt": "warm up"}, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not start: {process.args}")


@contextmanager
def uvicorn_app(app: str, app_dir: Path, env: dict[str, str], workers: int = 1) -> Iterator[Running]:
    port = free_port()
    # At info, uvicorn says "Application startup complete." once per worker and nothing per
    # request (no access log): the log is how a multi-worker ceiling is known to be all up.
    with tempfile.NamedTemporaryFile("w", suffix=".log") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--app-dir", str(app_dir), "--port", str(port),
             "--no-access-log", "--log-level", "info", "--workers", str(workers)],
            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log)
        url = f"http://127.0.0.1:{port}"

        def started() -> int:
            # Read through its name: seeking the shared descriptor would move the child's writes.
            return Path(log.name).read_text().count("Application startup complete.")

        try:
            _wait_up(url, process)
            _wait_for(lambda: started() >= workers, process, f"{workers} workers of {app}")
            yield Running(url, process.pid)
        finally:
            process.terminate()
            process.wait(10)


@contextmanager
def service(database_url: str, log_dir: Path, **extra: str) -> Iterator[Running]:
    env = {**SERVICE_ENV, "DATABASE_URL": database_url, **extra}
    workers = int(extra.get("CLAIMFIRST_WORKERS", "1"))
    with serve_subprocess(env, log_dir, cwd=ROOT) as handle:
        _wait_up(handle.url, handle.process)
        pids: set[int] = set()

        def answered() -> bool:
            # A new connection each time: the kernel hands each to whichever worker accepts.
            pids.add(httpx.get(f"{handle.url}/stats", timeout=5).json()["pid"])
            return len(pids) >= workers

        _wait_for(answered, handle.process, f"{workers} service workers")
        yield Running(handle.url, handle.process.pid)


def fresh_database(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return admin.replace("/postgres?", f"/{name}?")


def compare(servers: dict[str, object], scripts: dict[str, str], seconds: int,
            repeats: int) -> dict[tuple[str, str], list[Run]]:
    """Every run per (server, kind), in repetition order; servers alternate order per repetition,
    so in each repetition a server's run and its baseline's are close in time."""
    runs: dict[tuple[str, str], list[Run]] = {}
    names = list(servers)
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            with servers[name]() as running:  # type: ignore[operator]
                for kind, script in scripts.items():
                    runs.setdefault((name, kind), []).append(measured(running, script, seconds))
    return runs


def median_run(runs: list[Run]) -> Run:
    return Run(statistics.median(r.rate for r in runs), statistics.median(r.p99 for r in runs),
               {side: statistics.median(r.cpu_us[side] for r in runs) for side in runs[0].cpu_us})


def table(title: str, results: dict[tuple[str, str], list[Run]], baseline: str | dict[str, str],
          scripts: dict[str, str]) -> None:
    """One row per (server, kind): medians, and the ratio to `baseline` (a server, or a map from
    server to its baseline) as the median of the repetitions' own ratios, with their range.

    The machine's speed drifts by tens of percent over minutes (a shared VM): a ratio taken
    within one repetition, where the two runs are seconds apart, is steadier than the ratio
    of two medians taken minutes apart."""
    print(f"\n{title}")
    print(f"{'server':<22} {'kind':<10} {'req/s':>8} {'p99 ms':>8} {'ratio':>7}  {'range of repetitions':<20}")
    for (name, kind), runs in results.items():
        base = results[(baseline if isinstance(baseline, str) else baseline[name], kind)]
        ratios = [run.rate / paired.rate for run, paired in zip(runs, base, strict=True)]
        run = median_run(runs)
        print(f"{name:<22} {kind:<10} {run.rate:>8.0f} {run.p99:>8.1f} {statistics.median(ratios):>6.2f}x  "
              f"{min(ratios):.2f}-{max(ratios):.2f}")


def cpu_table(results: dict[tuple[str, str], list[Run]], cores: int) -> None:
    """Where each request's CPU went, and the rate that much CPU per request allows on `cores`.

    One worker is bound by its own core (`server cores` near 1.0); a run near its bound is
    limited by the machine, not by the server: a second worker can only add what the cores
    left over by the first worker, PostgreSQL and wrk allow.
    """
    print(f"\nCPU per request (µs), and the rate that allows on {cores} cores")
    print(f"{'server':<22} {'server':>7} {'postgres':>9} {'wrk':>5} {'total':>6} {'server cores':>13} "
          f"{'bound req/s':>12} {'of bound':>9}")
    for (name, _), runs in results.items():
        run = median_run(runs)
        total = sum(run.cpu_us.values())
        bound = cores * 1e6 / total
        print(f"{name:<22} {run.cpu_us['server']:>7.0f} {run.cpu_us['postgres']:>9.0f} {run.cpu_us['wrk']:>5.0f} "
              f"{total:>6.0f} {run.rate * run.cpu_us['server'] / 1e6:>13.2f} {bound:>12.0f} {run.rate / bound:>8.0%}")


def rss_after_new_claims(url: str, pid: int, n: int) -> tuple[float, float]:
    before = _rss_mb(pid)
    with httpx.Client(timeout=30) as client:
        for i in range(n):
            client.post(f"{url}/create", json={"tg_user_id": 5000 + i % 1000, "prompt": f"queued {i}"})
    return before, _rss_mb(pid)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--queued", type=int, default=100_000, help="new claims for the RSS figure (0: skip)")
    parser.add_argument("--only", choices=("pg", "workers", "sqlite"), action="append",
                        help="run only these tables (repeatable; default all): a short run for one question")
    args = parser.parse_args()
    scripts = {"duplicate": "dup.lua", "new": "new.lua"}
    with tempfile.TemporaryDirectory() as tmp:
        server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        admin = server.get_uri()

        def minimal(workers: int = 1):  # type: ignore[no-untyped-def]
            dsn = fresh_database(admin, "minimal")
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(MINIMAL_SCHEMA)
            return uvicorn_app("minimal_app:app", PERF, {"MINIMAL_DSN": dsn}, workers)

        def ours(**extra: str):  # type: ignore[no-untyped-def]
            return lambda: service(normalize_database_url(fresh_database(admin, "service")), Path(tmp), **extra)

        print(f"wrk -t1 -c32 -d{args.seconds}s, medians of {args.repeats}, one PostgreSQL, same run")
        parts = set(args.only or ("pg", "workers", "sqlite"))
        if "pg" in parts:
            pg = compare({"minimal (ceiling)": minimal, "python -m service": ours()}, scripts, args.seconds,
                         args.repeats)
            table("PostgreSQL", pg, "minimal (ceiling)", scripts)
        dup = {"duplicate": "dup.lua"}
        if "workers" in parts:
            workers = compare({"minimal, 1 worker": minimal, "minimal, 2 workers": lambda: minimal(workers=2),
                               "service, 1 worker": ours(), "service, --workers 2": ours(CLAIMFIRST_WORKERS="2")},
                              dup, args.seconds, args.repeats)
            table("PostgreSQL, duplicate path by workers (ratio to the same server's 1 worker)", workers,
                  {name: name.split(",")[0] + ", 1 worker" for name, _ in workers}, dup)
            cpu_table(workers, len(os.sched_getaffinity(0)))

        def sqlite_minimal():  # type: ignore[no-untyped-def]
            path = Path(tmp) / f"minimal-{time.monotonic_ns()}.db"
            return uvicorn_app("minimal_sqlite:app", ROOT / "bench", {"MINIMAL_SQLITE": str(path)})

        def sqlite_ours():  # type: ignore[no-untyped-def]
            return service(f"sqlite:///{tmp}/service-{time.monotonic_ns()}.db", Path(tmp))

        if "sqlite" in parts:
            lite = compare({"minimal sqlite": sqlite_minimal, "python -m service": sqlite_ours}, scripts,
                           args.seconds, args.repeats)
            table("SQLite (no goal yet)", lite, "minimal sqlite", scripts)

        if args.queued:
            database_url = normalize_database_url(fresh_database(admin, "service"))
            with serve_subprocess({**SERVICE_ENV, "DATABASE_URL": database_url}, Path(tmp), cwd=ROOT) as handle:
                before, after = rss_after_new_claims(handle.url, handle.process.pid, args.queued)
            print(f"\nRSS of one service process: {before:.0f} MB at start, {after:.0f} MB after "
                  f"{args.queued} new claims with their generations queued")
        server.cleanup()


if __name__ == "__main__":
    main()
