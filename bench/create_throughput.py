"""`/create` against the ceiling: the hand-written minimal claim endpoint, same database, same run.

The ceiling is `../shared/perf/minimal_app.py` (FastAPI, a psycopg async pool, one conditional
upsert per request, nothing else). Both servers run as real processes on one throwaway
PostgreSQL (the pgserver wheel), and `wrk` (Debian package `wrk`) drives each with the same
scripts (`../shared/perf/dup.lua`, `new.lua`): 32 connections, one thread. Servers alternate
order between repetitions (the machine is shared and noisy); the table shows medians and the
service's ratio to the ceiling measured in the same run:
- `duplicate`: POST /create of a prompt already claimed (the service answers 409 with its holder);
- `new`: POST /create of distinct prompts (claim + video row + background hand-off);
- `--workers 2` on the duplicate path, against one worker;
- SQLite (the embedded default) against a minimal SQLite endpoint (`bench/minimal_sqlite.py`).
Then the RSS of the service after `--queued` new claims with their generations queued.

    .venv/bin/python bench/create_throughput.py [--seconds 10] [--repeats 3] [--queued 100000]
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pgserver
import psycopg

from service.process import free_port, serve_subprocess
from service.settings import normalize_database_url

ROOT = Path(__file__).resolve().parents[1]
PERF = ROOT.parent / "shared" / "perf"
MINIMAL_SCHEMA = ("CREATE TABLE claims (id bigserial, user_id bigint, prompt_key text, status text, "
                  "created_at timestamptz default now(), PRIMARY KEY (user_id, prompt_key))")
# The service under load: generations that never finish within the run (they queue, as real
# 2-5 minute ones would), and a backlog limit out of the way so every new claim is admitted.
# Its pools are its defaults (8 request connections; the ceiling's pool allows 16).
SERVICE_ENV = {"CLAIMFIRST_SIM_SECONDS": "36000", "CLAIMFIRST_MAX_QUEUED_GENERATIONS": "10000000",
               "CLAIMFIRST_LIMIT_CONCURRENCY": "100000"}


def wrk(url: str, script: str, seconds: int, connections: int = 32) -> tuple[float, float]:
    """Requests/s and p99 latency (ms) of one wrk run."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(PERF / script), f"{url}/create"],
        capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"\n\s+99%\s+([\d.]+)(us|ms|s)\b", out).groups()
    return rate, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


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
def uvicorn_app(app: str, app_dir: Path, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--app-dir", str(app_dir), "--port", str(port),
         "--no-access-log", "--log-level", "warning"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def service(database_url: str, log_dir: Path, **extra: str) -> Iterator[str]:
    env = {**SERVICE_ENV, "DATABASE_URL": database_url, **extra}
    with serve_subprocess(env, log_dir, cwd=ROOT) as handle:
        _wait_up(handle.url, handle.process)
        yield handle.url


def fresh_database(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return admin.replace("/postgres?", f"/{name}?")


def compare(servers: dict[str, object], scripts: dict[str, str], seconds: int, repeats: int) -> dict:
    """Medians of (rate, p99) per (server, kind), servers alternating order per repetition."""
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    names = list(servers)
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            with servers[name]() as url:  # type: ignore[operator]
                for kind, script in scripts.items():
                    runs.setdefault((name, kind), []).append(wrk(url, script, seconds))
    return {key: (statistics.median(r for r, _ in values), statistics.median(p for _, p in values))
            for key, values in runs.items()}


def table(title: str, results: dict, baseline: str, scripts: dict[str, str]) -> None:
    print(f"\n{title}")
    print(f"{'server':<22} {'kind':<10} {'req/s':>8} {'p99 ms':>8} {'vs ' + baseline:>14}")
    for (name, kind), (rate, p99) in results.items():
        ratio = rate / results[(baseline, kind)][0]
        print(f"{name:<22} {kind:<10} {rate:>8.0f} {p99:>8.1f} {ratio:>13.2f}x")


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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queued", type=int, default=100_000, help="new claims for the RSS figure (0: skip)")
    args = parser.parse_args()
    scripts = {"duplicate": "dup.lua", "new": "new.lua"}
    with tempfile.TemporaryDirectory() as tmp:
        server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        admin = server.get_uri()

        def minimal():  # type: ignore[no-untyped-def]
            dsn = fresh_database(admin, "minimal")
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(MINIMAL_SCHEMA)
            return uvicorn_app("minimal_app:app", PERF, {"MINIMAL_DSN": dsn})

        def ours(**extra: str):  # type: ignore[no-untyped-def]
            return lambda: service(normalize_database_url(fresh_database(admin, "service")), Path(tmp), **extra)

        print(f"wrk -t1 -c32 -d{args.seconds}s, medians of {args.repeats}, one PostgreSQL, same run")
        pg = compare({"minimal (ceiling)": minimal, "python -m service": ours()}, scripts, args.seconds, args.repeats)
        table("PostgreSQL", pg, "minimal (ceiling)", scripts)
        workers = compare({"service, 1 worker": ours(), "service, --workers 2": ours(CLAIMFIRST_WORKERS="2")},
                          {"duplicate": "dup.lua"}, args.seconds, args.repeats)
        table("PostgreSQL, duplicate path by workers", workers, "service, 1 worker", {"duplicate": "dup.lua"})

        def sqlite_minimal():  # type: ignore[no-untyped-def]
            path = Path(tmp) / f"minimal-{time.monotonic_ns()}.db"
            return uvicorn_app("minimal_sqlite:app", ROOT / "bench", {"MINIMAL_SQLITE": str(path)})

        def sqlite_ours():  # type: ignore[no-untyped-def]
            return service(f"sqlite:///{tmp}/service-{time.monotonic_ns()}.db", Path(tmp))

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
