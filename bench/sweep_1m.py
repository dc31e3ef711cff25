"""The 1 M-row sweep against DuckDB on the same data, in one run.

    .venv/bin/python bench/sweep_1m.py [--rows 1000000] [--repeat 3]

Writes a synthetic history (`audit.synthetic`: videos and their request log) as CSV and
Parquet, then times, median of ``--repeat`` runs:

- **whole run**: ``python -m audit sweep --videos … --requests …`` (a fresh process, as cron
  runs it, writing all three files) against DuckDB reading the same CSVs, keying the distinct
  prompts with `service.prompt_key` (as the issue measured it; and again with the audit's
  vectorised `audit.keys.prompt_keys`) and running the rule's SQL (`audit sql --dialect duckdb`)
  joined with each duplicate's request time;
- **detection alone**: `audit.detect.mark_duplicates` on the loaded frame against DuckDB running
  the rule's SQL on a table that already holds the keys.

Prints each time and the ratio to DuckDB (the issue's goals: ≤ 2× whole, ≤ 1.5× detection).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

from audit.detect import mark_duplicates
from audit.keys import prompt_keys
from audit.rule_sql import rule_sql
from audit.sources import load_files
from audit.synthetic import synthetic_requests, synthetic_videos, to_iso_text
from service.prompt_key import prompt_key


AS_OF = datetime(2025, 3, 15, tzinfo=UTC)


def write_history(rows: int, folder: Path) -> dict[str, Path]:
    videos = synthetic_videos(rows, seed=1)
    requests = synthetic_requests(videos, seed=2)
    paths = {name: folder / name for name in ("videos.csv", "requests.csv", "videos.parquet", "requests.parquet")}
    to_iso_text(videos).to_csv(paths["videos.csv"], index=False)
    to_iso_text(requests).to_csv(paths["requests.csv"], index=False)
    videos.to_parquet(paths["videos.parquet"], index=False)
    requests.to_parquet(paths["requests.parquet"], index=False)
    return paths


def timed(function, repeat: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def cli_sweep(videos: Path, requests: Path, out: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-m", "audit", "sweep", "--videos", str(videos), "--requests", str(requests),
         "--out", str(out), "--as-of", AS_OF.isoformat(), "--no-progress"],
        capture_output=True, text=True, check=True,
    )
    return int(done.stdout.split(":")[1].split()[0])  # "Scanned N videos: D duplicates"


def duckdb_whole(videos: Path, requests: Path, *, keying) -> int:
    with duckdb.connect() as conn:
        conn.execute(f"CREATE TABLE raw AS SELECT * FROM read_csv('{videos}', header = true)")
        conn.execute(f"CREATE TABLE log AS SELECT * FROM read_csv('{requests}', header = true)")
        prompts = conn.execute("SELECT DISTINCT prompt FROM raw").df()["prompt"]
        keys = pd.DataFrame({"prompt": prompts, "prompt_key": keying(prompts)})
        conn.register("keys", keys)
        conn.execute(
            "CREATE TABLE videos AS SELECT r.id, r.tg_user_id, k.prompt_key, r.status, r.created_at "
            "FROM raw r JOIN keys k USING (prompt)"
        )
        dups = rule_sql("duckdb").rstrip().rstrip(";")
        return conn.execute(
            f"WITH d AS ({dups}), asked AS (SELECT video_id, min(received_at) AS requested_at FROM log GROUP BY video_id) "
            "SELECT count(*), count(a.requested_at) FROM d LEFT JOIN asked a USING (video_id)"
        ).fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        folder = Path(tmp)
        paths = write_history(args.rows, folder)
        r = args.repeat
        csvs = (paths["videos.csv"], paths["requests.csv"])
        csv_s, csv_n = timed(lambda: cli_sweep(paths["videos.csv"], paths["requests.csv"], folder / "out-csv"), r)
        pq_s, pq_n = timed(lambda: cli_sweep(paths["videos.parquet"], paths["requests.parquet"], folder / "out-pq"), r)
        # Keys in Python either way (NFKC is Python's): per distinct prompt with the service's
        # function, as the issue measured it, and with the audit's vectorised keying.
        whole_s, whole_n = timed(lambda: duckdb_whole(*csvs, keying=lambda p: [prompt_key(x) for x in p]), r)
        fast_s, fast_n = timed(lambda: duckdb_whole(*csvs, keying=prompt_keys), r)

        frame = load_files(paths["videos.csv"]).videos
        detect_s, marked = timed(lambda: mark_duplicates(frame), r)
        with duckdb.connect() as conn:
            conn.register("frame", frame[["id", "tg_user_id", "prompt_key", "status", "created_at"]])
            conn.execute("CREATE TABLE videos AS SELECT * FROM frame")
            sql = rule_sql("duckdb")
            sql_s, sql_rows = timed(lambda: conn.execute(sql).df(), r)
        report = folder / "out-csv" / "report.html"
        size_mb = report.stat().st_size / 1e6

    found = int(marked["is_duplicate"].sum())
    assert found == csv_n == pq_n == whole_n == fast_n == len(sql_rows), (found, csv_n, pq_n, whole_n, len(sql_rows))
    print(f"{args.rows:,} videos with their request log, {found:,} duplicates; median of {r} runs")
    print(f"{'':38} {'audit':>8} {'DuckDB':>8} {'ratio':>6}")
    print(f"{'whole run, CSV (python -m audit sweep)':38} {csv_s:7.2f}s {whole_s:7.2f}s {csv_s / whole_s:5.2f}x")
    print(f"{'whole run, Parquet':38} {pq_s:7.2f}s {whole_s:7.2f}s {pq_s / whole_s:5.2f}x")
    print(f"{'  DuckDB keyed by audit.keys instead':38} {csv_s:7.2f}s {fast_s:7.2f}s {csv_s / fast_s:5.2f}x")
    print(f"{'detection alone (keys already there)':38} {detect_s:7.2f}s {sql_s:7.2f}s {detect_s / sql_s:5.2f}x")
    print(f"report.html: {size_mb:.1f} MB")


if __name__ == "__main__":
    main()
