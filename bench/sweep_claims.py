"""Time the lease sweep at 1 M claims: with the partial index on live claims, and without it.

    .venv/bin/python bench/sweep_claims.py [--claims 1000000] [--live 1000] [--database-url URL]

Fills `video_claims` with finished claims and `--live` generating ones (leases in the
future: the usual case, nothing to expire), then runs each store's own sweep statement
(`SWEEP_SQL`, rolled back) on PostgreSQL (a throwaway pgserver unless --database-url) and
SQLite (a temporary file), first as migrated, then after dropping `ix_claims_generating_lease`.
Prints the median of each and the ratio without / with. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from service.settings import normalize_database_url
from service.stores.engine import make_engine, migrate
from service.stores import postgres, sqlite

REPEATS = 15
INDEX = "ix_claims_generating_lease"


def median_seconds(run: Callable[[], None]) -> float:
    run()  # warm the cache: the sweep runs every lease, its pages stay hot
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def migrated(url: str) -> None:
    engine = make_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()


def on_postgres(url: str, claims: int, live: int) -> tuple[float, float]:
    migrated(url)
    conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE video_claims")
        conn.execute("""
            INSERT INTO video_claims (tg_user_id, key_digest, attempt, status, claimed_at, lease_expires_at)
            SELECT n, sha256(n::text::bytea), 1, CASE WHEN n %% %(every)s = 0 THEN 'generating' ELSE 'ready' END,
                   clock_timestamp(), CASE WHEN n %% %(every)s = 0 THEN clock_timestamp() + interval '1 hour' END
              FROM generate_series(1, %(claims)s) AS n""", {"claims": claims, "every": claims // live})
        conn.execute("VACUUM ANALYZE video_claims")

        def sweep() -> None:
            with conn.transaction(force_rollback=True):
                conn.execute(postgres.SWEEP_SQL, {"error": "bench"}).fetchall()

        with_index = median_seconds(sweep)
        conn.execute(f"DROP INDEX {INDEX}")
        conn.execute("ANALYZE video_claims")
        return with_index, median_seconds(sweep)


def on_sqlite(path: Path, claims: int, live: int) -> tuple[float, float]:
    migrated(f"sqlite:///{path}")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"""
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {claims})
            INSERT INTO video_claims (tg_user_id, key_digest, attempt, status, claimed_at, lease_expires_at)
            SELECT i, randomblob(32), 1, CASE WHEN i % {claims // live} = 0 THEN 'generating' ELSE 'ready' END,
                   strftime('%Y-%m-%d %H:%M:%f000', 'now'),
                   CASE WHEN i % {claims // live} = 0 THEN strftime('%Y-%m-%d %H:%M:%f000', 'now', '+1 hour') END
              FROM n""")
        conn.execute("ANALYZE")

        def sweep() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(sqlite.SWEEP_SQL).fetchall()
            conn.execute("ROLLBACK")

        with_index = median_seconds(sweep)
        conn.execute(f"DROP INDEX {INDEX}")
        return with_index, median_seconds(sweep)
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--live", type=int, default=1_000)
    parser.add_argument("--database-url", help="a PostgreSQL database to use (its video_claims is emptied)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="claimfirst-bench-") as tmp:
        if args.database_url:
            pg = on_postgres(normalize_database_url(args.database_url), args.claims, args.live)
        else:
            import pgserver

            server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop")
            try:
                pg = on_postgres(normalize_database_url(server.get_uri()), args.claims, args.live)
            finally:
                server.cleanup()
        lite = on_sqlite(Path(tmp) / "claims.db", args.claims, args.live)
    print(f"sweep over {args.claims:,} claims, {args.live:,} live (median of {REPEATS}):")
    for name, (indexed, scanned) in (("postgresql", pg), ("sqlite", lite)):
        print(f"  {name:<10} with index {indexed * 1000:8.2f} ms, without {scanned * 1000:8.2f} ms,"
              f" ratio {scanned / indexed:6.1f}x")


if __name__ == "__main__":
    main()
