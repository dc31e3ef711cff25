"""Random faults against the service's promises (issue 16): a Jepsen-style nemesis on loopback.

    .venv/bin/python bench/nemesis.py --seed 7 --minutes 2 [--topology workers2|two-hosts]
                                      [--focus mixed|kill] [--json out.json] [--keep DIR]

The promises checked: one paid provider job per (user, prompt key, window) whatever fails; a
provider job that was started always ends recorded (its result on a `ready` video, or its
cost on a failed one) without any user asking again; no job the database does not know
about; every request answers within its bound.

It starts a PostgreSQL of its own (pgserver), the stand-in Replicate as its own process
(every prediction runs `--prediction-seconds`, 10), a TCP proxy between the services and
PostgreSQL, and the services (`python -m service`): `workers2` is one service with
`--workers 2`, `two-hosts` two single-worker services on one database, the traffic spread
over both. Clients send `/create` for `--minutes` (bench/nemesis_traffic.py) while a seeded
schedule breaks things one after another (bench/nemesis_faults.py, printed as it runs). Then
the traffic stops, every fault is healed, the services are given lease x 3 + a prediction +
10 s to settle, and the checker (bench/nemesis_check.py) prints one table for the schedule.

Exit 0 when every violation column is zero, 1 otherwise, 2 on bad arguments. The seed is
printed first and last: the same seed replays the same schedule and the same requests (the
machine still decides what lands first). Not part of the suite's timing; tests/service/
test_nemesis.py runs a short one. Loopback only; every child process ends with this one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from nemesis_check import VIOLATIONS, Verdict, check, read_videos
from nemesis_cluster import Postgres, Service, StandIn
from nemesis_faults import Nemesis
from tests.stand_ins.faulty_proxy import FaultyProxy  # noqa: E402  (the tests use it too)
from nemesis_traffic import Traffic

LEASE_SECONDS = 4.0
BOUND_SECONDS = 3.0  # CLAIMFIRST_REQUEST_TIMEOUT_SECONDS
POLL_SECONDS = 0.5
SETTLE_MARGIN_SECONDS = 10.0
# --limits: low enough that a few minutes of traffic (30 users, ~25 % new prompts) reach them.
LIMITS = {"daily": 4, "concurrent": 2, "budget_usd": 400.0}


def service_env(proxy: FaultyProxy, stand_in: StandIn, metrics_dir: Path, limits: bool = False) -> dict[str, str]:
    limited = {"CLAIMFIRST_USER_DAILY_LIMIT": str(LIMITS["daily"]),
               "CLAIMFIRST_USER_CONCURRENT_LIMIT": str(LIMITS["concurrent"]),
               "CLAIMFIRST_DAILY_BUDGET_USD": str(LIMITS["budget_usd"])} if limits else {}
    return {**limited,
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres",
        "CLAIMFIRST_GENERATOR": "replicate",
        "CLAIMFIRST_REPLICATE_MODEL": stand_in.model,
        "REPLICATE_API_TOKEN": stand_in.token,
        "CLAIMFIRST_REPLICATE_BASE_URL": stand_in.base_url,
        "CLAIMFIRST_REPLICATE_POLL_SECONDS": str(POLL_SECONDS),
        "CLAIMFIRST_LEASE_SECONDS": str(LEASE_SECONDS),
        "CLAIMFIRST_REQUEST_TIMEOUT_SECONDS": str(BOUND_SECONDS),
        # Generations only poll the stand-in: 16 at once is cheap, and keeps the backlog that
        # must drain after the run short (the default 4 x 10 s jobs would queue for minutes).
        "CLAIMFIRST_MAX_CONCURRENT_GENERATIONS": "16",
        "CLAIMFIRST_MAX_QUEUED_GENERATIONS": "16",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/nemesis.py", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--minutes", type=float, required=True, help="how long faults and traffic run")
    parser.add_argument("--topology", choices=["workers2", "two-hosts"], default="workers2")
    parser.add_argument("--focus", choices=["mixed", "kill"], default="mixed")
    parser.add_argument("--rate", type=float, default=8.0, help="/create per second, all clients together")
    parser.add_argument("--prediction-seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="write the table (and the schedule) here")
    parser.add_argument("--keep", type=Path, help="copy the logs (services, stand-in) here")
    parser.add_argument("--limits", action="store_true",
                        help=f"run the services with the claim's limits on ({LIMITS}) and check them")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= 60 or not 0 < args.rate <= 50 or args.prediction_seconds <= 0:
        parser.error("--minutes in (0, 60], --rate in (0, 50], --prediction-seconds > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # SIGTERM (a test's or a CI runner's timeout) unwinds like Ctrl-C, so `finally` ends every child.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored (`cmd &`)
    print(f"nemesis seed={args.seed} topology={args.topology} focus={args.focus} minutes={args.minutes:g}"
          + (f" limits={LIMITS}" if args.limits else ""), flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="claimfirst-nemesis-"))
    pg = proxy = stand_in = None
    services: list[Service] = []
    try:
        pg = Postgres()
        proxy = FaultyProxy(pg.socket)
        proxy.start()
        stand_in = StandIn(workdir, seconds=args.prediction_seconds)
        names = ["svc"] if args.topology == "workers2" else ["a", "b"]
        for name in names:
            metrics = workdir / f"metrics-{name}"
            metrics.mkdir()
            services.append(Service(name, service_env(proxy, stand_in, metrics, args.limits), workdir / f"service-{name}.log",
                                    workers=2 if args.topology == "workers2" else 1))
        for service in services:
            service.start()
        verdict, nemesis = run(args, pg, proxy, stand_in, services)
        report(args, verdict, nemesis)
        return 0 if verdict.passed else 1
    finally:
        for service in services:
            service.close()
        if stand_in is not None:
            stand_in.close()
        if proxy is not None:
            proxy.stop()
        if pg is not None:
            pg.close()
        if args.keep is not None:
            shutil.copytree(workdir, args.keep, dirs_exist_ok=True, ignore=shutil.ignore_patterns("metrics-*"))
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"nemesis seed={args.seed} done", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace, pg: Postgres, proxy: FaultyProxy, stand_in: StandIn,
        services: list[Service]) -> tuple[Verdict, Nemesis]:
    nemesis = Nemesis(seed=args.seed, focus=args.focus, services=services, pg=pg, proxy=proxy, stand_in=stand_in,
                      lease_seconds=LEASE_SECONDS, print_fn=lambda line: print(line, flush=True))
    traffic = Traffic(hosts=[s.url for s in services], seed=args.seed, rate=args.rate)
    halt = threading.Event()  # an interrupted run: the schedule's thread returns at its next gap

    async def drive() -> None:
        stop = asyncio.Event()
        clients = asyncio.create_task(traffic.run(stop))
        try:
            await asyncio.to_thread(nemesis.run, args.minutes * 60, halt.is_set)
        except BaseException:
            halt.set()
            raise
        finally:
            stop.set()
            await clients

    asyncio.run(drive())
    nemesis.say(f"traffic stopped after {len(traffic.sent)} requests; healing every fault")
    nemesis.heal()
    settle(nemesis, pg, stand_in, LEASE_SECONDS * 3 + args.prediction_seconds + SETTLE_MARGIN_SECONDS)
    videos = read_videos(pg.conninfo)
    verdict = check(videos=videos, provider=stand_in.state(), sent=traffic.sent, windows=nemesis.windows,
                    host_names={s.url: s.name for s in services}, bound_seconds=BOUND_SECONDS,
                    limits=LIMITS if args.limits else None)
    return verdict, nemesis


def settle(nemesis: Nemesis, pg: Postgres, stand_in: StandIn, bound: float) -> None:
    """Wait, at most `bound` seconds, until no video is generating and no provider job runs."""
    nemesis.say(f"quiet period (at most {bound:g} s)")
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        generating = sum(1 for row in read_videos(pg.conninfo) if row["status"] == "generating")
        running = sum(1 for p in stand_in.state()["predictions"] if p["status"] in ("starting", "processing"))
        if not generating and not running:
            break
        time.sleep(1.0)
    nemesis.say("quiet")


def report(args: argparse.Namespace, verdict: Verdict, nemesis: Nemesis) -> None:
    faults = Counter(window.kind for window in nemesis.windows)
    print(f"\nschedule seed={args.seed}: {len(nemesis.windows)} faults: "
          + ", ".join(f"{kind} x{n}" for kind, n in sorted(faults.items())))
    width = max(len(name) for name in verdict.columns)
    for name, value in verdict.columns.items():
        mark = ("VIOLATION" if value else "ok") if name in VIOLATIONS else ""
        print(f"  {name:<{width}}  {value!s:<12} {mark}")
    for name, items in verdict.examples.items():
        if items:
            print(f"  e.g. {name}: {items[:3]}")
    print(f"verdict: {'PASS' if verdict.passed else 'FAIL'} (seed {args.seed})", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({
            "seed": args.seed, "topology": args.topology, "focus": args.focus, "minutes": args.minutes,
            "passed": verdict.passed, "violations": list(VIOLATIONS), "columns": verdict.columns,
            "examples": verdict.examples,
            "schedule": [{"kind": w.kind, "host": w.host, "at": round(w.start - nemesis.began, 2),
                          "seconds": round(w.end - w.start, 2), "detail": w.detail} for w in nemesis.windows],
        }, indent=1, default=str))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # every child already stopped by main's finally
        print("nemesis: interrupted; no verdict", file=sys.stderr)
        sys.exit(130)
