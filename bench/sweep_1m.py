"""The sweep against DuckDB on the same files, in one run: wall time and peak memory.

    nice -n 19 .venv/bin/python bench/sweep_1m.py [--rows 1000000] [--repeat 1] [--no-reference] [--no-duckdb]

Writes a synthetic history (`audit.synthetic`: videos and their request log; see
`write_history` for sizes past 1 M) as CSV, then runs, each in a fresh process as cron
runs it, measuring its wall time and its peak memory (the resident set of the process and its
workers together, sampled every 50 ms with psutil):

- **sweep**: ``python -m audit sweep --videos … --requests …`` (user shard by user shard,
  `audit.stream`), writing all three files;
- **in memory** (the reference, unless ``--no-reference``): the same with ``--in-memory``,
  the sweep as it was before it streamed; its ``summary.json`` and ``duplicates.csv`` must be
  byte-identical to the sweep's (the bench stops if not);
- **DuckDB** (unless ``--no-duckdb``): DuckDB reading the same CSVs, keying the distinct
  prompts with the audit's vectorised `audit.keys.prompt_keys` (NFKC is Python's), running
  the rule's SQL (`audit sql --dialect duckdb`) and joining each duplicate's request time; its
  count of duplicates must be the sweep's.

Prints one table row per run and the sweep's ratio to DuckDB (the issue's goals at 10 M rows:
≤ 1.5× DuckDB's wall time, ≤ 2 GB peak). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from audit.synthetic import synthetic_requests, synthetic_videos, to_iso_text

AS_OF = datetime(2025, 3, 15, tzinfo=UTC)
CHUNK_ROWS = 1_000_000


def write_history(rows: int, folder: Path) -> dict[str, Path]:
    """``videos.csv`` and ``requests.csv`` of ``rows`` videos: one `synthetic_videos` history
    of up to `CHUNK_ROWS` rows (``rows / 50`` users over 60 days, the proportions of the 1 M
    bench), written again for as many new sets of users as it takes, ids and user ids moved
    past the previous copy's. Every size then has the same per-user history and duplicate rate,
    and 100 M rows are written in minutes (the text is made once, only integers change)."""
    paths = {"videos": folder / "videos.csv", "requests": folder / "requests.csv"}
    chunk_rows = min(rows, CHUNK_ROWS)
    videos = synthetic_videos(chunk_rows, seed=1)
    requests = synthetic_requests(videos, seed=2)
    tables = {name: pa.Table.from_pandas(to_iso_text(frame), preserve_index=False)
              for name, frame in (("videos", videos), ("requests", requests))}
    user_span = int(videos["tg_user_id"].max() - videos["tg_user_id"].min() + 1)
    writers = {name: pacsv.CSVWriter(paths[name], table.schema, write_options=pacsv.WriteOptions(quoting_style="needed"))
               for name, table in tables.items()}
    written = 0
    copy = 0
    while written < rows:
        n = min(chunk_rows, rows - written)
        for name, table in tables.items():
            part = table.slice(0, n)
            shifted = {"id": written, "video_id": written, "tg_user_id": copy * user_span}
            for column, by in shifted.items():
                if column in part.column_names and by:
                    index = part.column_names.index(column)
                    part = part.set_column(index, column, pc.add(part[column], by))
            if name == "requests" and copy:
                index = part.column_names.index("request_id")
                part = part.set_column(index, "request_id", pc.binary_join_element_wise(pa.scalar(f"c{copy}-", part["request_id"].type), part["request_id"], pa.scalar("", part["request_id"].type)))
            writers[name].write_table(part)
        written += n
        copy += 1
    for writer in writers.values():
        writer.close()
    return paths


def measured(command: list[str], folder: Path) -> tuple[float, float, str]:
    """Run ``command``; ``(wall seconds, peak MB of the process tree, stdout)``. (Not
    ``wait4``'s ``ru_maxrss``: it keeps the high-water mark of the forked bench across ``exec``.)"""
    out_path, err_path = folder / "stdout.txt", folder / "stderr.txt"
    start = time.perf_counter()
    with out_path.open("w") as out, err_path.open("w") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        try:
            root = psutil.Process(child.pid)
        except psutil.Error:
            return
        while not done.is_set():
            total = 0
            try:
                for process in [root, *root.children(recursive=True)]:
                    try:
                        total += process.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                return
            peak[0] = max(peak[0], total)
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status = os.waitpid(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join(timeout=5)
    if child.returncode != 0:
        raise SystemExit(f"{command[:4]} failed ({child.returncode}): {err_path.read_text().strip().splitlines()[-1:]}")
    return wall, peak[0] / 1e6, out_path.read_text()


def sweep_command(paths: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "audit", "sweep", "--videos", str(paths["videos"]), "--requests",
            str(paths["requests"]), "--out", str(out), "--as-of", AS_OF.isoformat(), "--no-progress", *extra]


def duckdb_child(videos: str, requests: str) -> None:
    """DuckDB's run (in its own process, so its memory is measured alone)."""
    import duckdb

    from audit.keys import prompt_keys
    from audit.rule_sql import rule_sql

    with duckdb.connect() as conn:
        conn.execute(f"CREATE TABLE raw AS SELECT * FROM read_csv('{videos}', header = true)")
        conn.execute(f"CREATE TABLE log AS SELECT * FROM read_csv('{requests}', header = true)")
        prompts = conn.execute("SELECT DISTINCT prompt FROM raw").df()["prompt"]
        keys = pd.DataFrame({"prompt": prompts, "prompt_key": prompt_keys(prompts)})
        conn.register("keys", keys)
        conn.execute(
            "CREATE TABLE videos AS SELECT r.id, r.tg_user_id, k.prompt_key, r.status, r.created_at "
            "FROM raw r JOIN keys k USING (prompt)"
        )
        dups = rule_sql("duckdb").rstrip().rstrip(";")
        count = conn.execute(
            f"WITH d AS ({dups}), asked AS (SELECT video_id, min(received_at) AS requested_at FROM log GROUP BY video_id) "
            "SELECT count(*), count(a.requested_at) FROM d LEFT JOIN asked a USING (video_id)"
        ).fetchone()[0]
    print(count)


def same_outputs(a: Path, b: Path) -> bool:
    """summary.json apart from its as-of line, and duplicates.csv, byte for byte."""
    def summary(folder: Path) -> list[bytes]:
        return [line for line in (folder / "summary.json").read_bytes().split(b"\n") if not line.startswith(b'  "as_of"')]

    return summary(a) == summary(b) and (a / "duplicates.csv").read_bytes() == (b / "duplicates.csv").read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-reference", action="store_true", help="skip the in-memory sweep (100 M rows: it would not fit)")
    parser.add_argument("--no-duckdb", action="store_true")
    parser.add_argument("--dir", type=Path, help="where the history goes (default: a temporary directory)")
    parser.add_argument("--duckdb-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.duckdb_child:
        duckdb_child(*args.duckdb_child)
        return
    folder = Path(tempfile.mkdtemp(prefix="sweep-bench-", dir=args.dir))
    try:
        start = time.perf_counter()
        paths = write_history(args.rows, folder)
        size = sum(p.stat().st_size for p in paths.values()) / 1e9
        print(f"{args.rows:,} videos and their request log: {size:.1f} GB of CSV, written in "
              f"{timedelta(seconds=round(time.perf_counter() - start))}", flush=True)
        runs: dict[str, list[tuple[float, float]]] = {}
        found: dict[str, int] = {}
        plan = [("sweep", sweep_command(paths, folder / "out-stream"))]
        if not args.no_reference:
            plan.append(("in memory", sweep_command(paths, folder / "out-memory", "--in-memory")))
        if not args.no_duckdb:
            plan.append(("DuckDB", [sys.executable, __file__, "--duckdb-child", str(paths["videos"]), str(paths["requests"])]))
        for _ in range(args.repeat):  # interleaved, so a colleague's load falls on all of them alike
            for name, command in plan:
                wall, peak, out = measured(command, folder)
                runs.setdefault(name, []).append((wall, peak))
                found[name] = int(out.split(":")[1].split()[0]) if name != "DuckDB" else int(out.strip())
                print(f"  {name}: {wall:.1f} s, peak {peak / 1e3:.2f} GB", flush=True)
        if "in memory" in runs:
            assert same_outputs(folder / "out-stream", folder / "out-memory"), "the sweep's files differ from the in-memory sweep's"
            print("summary.json and duplicates.csv: byte-identical to the in-memory sweep's")
        assert len(set(found.values())) == 1, found
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(f"\n{args.rows:,} rows, {found['sweep']:,} duplicates; median of {args.repeat} run(s); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'':12} {'wall':>8} {'peak RSS':>9} {'ratio to DuckDB':>16}")
    duck = statistics.median(w for w, _ in runs["DuckDB"]) if "DuckDB" in runs else None
    for name, measured_runs in runs.items():
        wall = statistics.median(w for w, _ in measured_runs)
        peak = statistics.median(p for _, p in measured_runs)
        ratio = f"{wall / duck:15.2f}x" if duck else ""
        print(f"{name:12} {wall:7.1f}s {peak / 1e3:7.2f}GB {ratio}")


if __name__ == "__main__":
    main()
