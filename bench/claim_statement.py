"""The PostgreSQL claim statement against an earlier revision of itself, same server, same run.

Each of `--claims` rounds runs one new claim (a distinct prompt) with every variant, in
alternating order, timing only the statement; a repetition's figure is its mean per claim, the
table the median over `--repeats` (the machine is shared and noisy: interleaving statement by
statement cancels its drift, blocks of one variant did not). Variants:
- `baseline`: CLAIM_SQL as it was at `--baseline-rev` (read with `git show`);
- `now`: CLAIM_SQL now, without a callback_url;
- `now+callback`: CLAIM_SQL now, with a callback_url (the outbox row written in the claim).

    .venv/bin/python bench/claim_statement.py [--baseline-rev 23b3d67] [--claims 1500] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
import types
from datetime import timedelta
from pathlib import Path

import pgserver
import psycopg

from service.settings import normalize_database_url
from service.stores import postgres
from service.stores.base import SUPERSEDED_ERROR, key_digest
from service.stores.engine import make_engine, migrate

ROOT = Path(__file__).resolve().parents[1]


def claim_sql_at(revision: str) -> str:
    source = subprocess.run(["git", "show", f"{revision}:service/stores/postgres.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType("baseline_postgres")
    exec(compile(source, f"{revision}:service/stores/postgres.py", "exec"), module.__dict__)  # noqa: S102
    return str(module.CLAIM_SQL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-rev", default="23b3d67")
    parser.add_argument("--claims", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    variants = {"baseline": (claim_sql_at(args.baseline_rev), None), "now": (postgres.CLAIM_SQL, None),
                "now+callback": (postgres.CLAIM_SQL, "https://hooks.example.com/done")}
    times: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="claimfirst-bench-") as pgdata:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        try:
            url = normalize_database_url(server.get_uri())
            engine = make_engine(url)
            migrate(engine)
            engine.dispose()
            with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
                seq = conn.execute("SELECT pg_get_serial_sequence('videos', 'id')").fetchone()[0]  # type: ignore[index]
                n = 0
                for _ in range(args.repeats):
                    sums = dict.fromkeys(variants, 0.0)
                    for i in range(args.claims):
                        for name in (list(variants) if i % 2 == 0 else list(reversed(variants))):
                            sql, callback_url = variants[name]
                            n += 1
                            key = f"bench prompt {n}"
                            params = {"user": 7, "digest": key_digest(key), "key": key, "prompt": key,
                                      "category": None, "lease": timedelta(seconds=30), "window": timedelta(hours=24),
                                      "seq": seq, "superseded": SUPERSEDED_ERROR, "until": None,
                                      "callback_url": callback_url}
                            started = time.perf_counter()
                            conn.execute(sql, params)
                            sums[name] += time.perf_counter() - started
                    for name in variants:
                        times[name].append(sums[name] / args.claims * 1e6)
        finally:
            server.cleanup()
    base = statistics.median(times["baseline"])
    print(f"{'variant':14s} {'us/claim':>9s} {'ratio':>6s}  repetitions")
    for name, values in times.items():
        print(f"{name:14s} {statistics.median(values):9.1f} {statistics.median(values) / base:6.3f}  "
              f"{[round(v) for v in values]}")


if __name__ == "__main__":
    main()
