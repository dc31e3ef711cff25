"""What the claim's limits cost `/create`, and that they cost nothing when off: same run, same PostgreSQL.

Four servers, each against a fresh database on one throwaway PostgreSQL, driven by the same wrk
scripts as bench/create_throughput.py (32 connections; `duplicate`: one prompt already claimed,
`new`: distinct prompts over 97 users), servers alternating order per repetition; the ratio is
the median of each repetition's own ratio to `limits off`, with its range:
- `base (git REV)`: the service as it was at REV (default: the merge-base with main), extracted
  with `git archive` into a temporary directory and run from there: limits off must not be slower;
- `limits off`: this tree, no limit set (CLAIM_SQL alone, as before);
- `user limits`: daily and concurrent limits too high to refuse (per-user advisory lock);
- `+ budget`: the same plus a budget too high to refuse (one advisory lock for everyone).

    nice -n 19 .venv/bin/python bench/limits_cost.py [--seconds 5] [--repeats 3] [--base REV]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pgserver

from create_throughput import ROOT, SERVICE_ENV, Running, _wait_up, compare, fresh_database, table
from service.process import serve_subprocess
from service.settings import normalize_database_url

HUGE = {"CLAIMFIRST_USER_DAILY_LIMIT": "1000000000", "CLAIMFIRST_USER_CONCURRENT_LIMIT": "1000000000"}


def extract(rev: str, into: Path) -> Path:
    """The tree at `rev`, without touching any worktree (git archive reads the object store)."""
    data = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


@contextmanager
def service_at(cwd: Path, database_url: str, log_dir: Path, **extra: str) -> Iterator[Running]:
    # `python -m service` from `cwd`: its own `service` package comes first on sys.path.
    with serve_subprocess({**SERVICE_ENV, "DATABASE_URL": database_url, **extra}, log_dir, cwd=cwd) as handle:
        _wait_up(handle.url, handle.process)
        yield Running(handle.url, handle.process.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--base", default=None, help="git revision of the baseline (default: merge-base with main)")
    args = parser.parse_args()
    base = args.base or subprocess.run(["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True,
                                       text=True, check=True).stdout.strip()
    scripts = {"duplicate": "dup.lua", "new": "new.lua"}
    with tempfile.TemporaryDirectory() as tmp:
        old = extract(base, Path(tmp) / "base")
        server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        admin = server.get_uri()

        def at(cwd: Path, **extra: str):  # type: ignore[no-untyped-def]
            return lambda: service_at(cwd, normalize_database_url(fresh_database(admin, "service")), Path(tmp), **extra)

        print(f"wrk -t1 -c32 -d{args.seconds}s, medians of {args.repeats}, one PostgreSQL, same run; base {base[:10]}")
        runs = compare({"limits off": at(ROOT), f"base ({base[:10]})": at(old), "user limits": at(ROOT, **HUGE),
                        "+ budget": at(ROOT, **HUGE, CLAIMFIRST_DAILY_BUDGET_USD="1000000000")},
                       scripts, args.seconds, args.repeats)
        table("PostgreSQL: ratio to `limits off`", runs, "limits off", scripts)
        server.cleanup()


if __name__ == "__main__":
    main()
