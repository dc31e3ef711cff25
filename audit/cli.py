"""``python -m audit``: the weekly sweep, the cleanup, the rule as SQL (``audit sql``), and (from
`audit.replay`) the replay, the rule as a dbt package (``audit dbt``, `audit.dbt_package`), (from `audit.reconcile_cli`) the reconciliation with the provider's bill, and
(from `audit.tuning_cli`) the choice of window and key from the history.

Exit codes:

- **0** the command ran;
- **1** ``sweep --fail-on-duplicates`` found duplicates (a cron job reads 1 as "duplicates
  found"), or ``reconcile`` found a difference between the books and the bill;
- **2** it could not run (missing file, bad column, unreachable database, bad argument), with
  one line ``audit: error: …`` (``audit <command>: error: …`` for a bad argument) on stderr and no
  output files written;
- **3** an unexpected error (a bug), with one line ``audit: internal error: …`` on stderr. The
  sweep writes ``summary.json`` and ``duplicates.csv`` before it renders ``report.html``, so
  a failure in rendering still leaves the findings on disk, and the line says so.

Times on the command line: ``--since``/``--until``/``--as-of`` take ISO dates or datetimes.
Without an offset they are read as UTC (a convenience for typing; files must carry offsets).
A bare date for ``--until`` means the end of that day.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from audit.frames import AuditError
from audit.near import DEFAULT_SIMILARITY
from audit.cli_args import InternalError, _add_key_params, _add_period, _one_line, _out, _period, _positive
from audit.oneline import OneLineParser, one_line
from audit.oneline import positive_int as _positive_int
from audit.pipeline import DEFAULT_COST_PER_VIDEO, run_audit
from audit.rule_sql import DIALECTS, rule_sql
from audit.sources.base import Period

__all__ = ["main", "build_parser", "OneLineParser", "one_line"]

def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="audit", description="Find duplicate video generations and what they cost.")
    commands = parser.add_subparsers(dest="command", required=True)

    sweep = commands.add_parser("sweep", help="the weekly duplicate sweep (read-only)")
    source = sweep.add_mutually_exclusive_group(required=True)
    source.add_argument("--videos", type=Path, help="videos file: CSV, or Parquet (.parquet, .pq)")
    source.add_argument("--database-url", help="SQLAlchemy URL of a database with a 'videos' table")
    source.add_argument("--supabase", action="store_true", help="read Supabase (SUPABASE_URL, SUPABASE_SERVICE_KEY)")
    sweep.add_argument("--requests", type=Path, help="request log, CSV or Parquet (with --videos)")
    _add_period(sweep)
    sweep.add_argument("--cost-per-video", type=float, default=DEFAULT_COST_PER_VIDEO, help="USD (default 4)")
    sweep.add_argument("--lease-seconds", type=_positive, default=30.0, help="stuck-claim lease (default 30)")
    sweep.add_argument(
        "--near-duplicates", nargs="?", type=float, const=DEFAULT_SIMILARITY, default=None, metavar="THRESHOLD",
        help=f"also list near-duplicates (rapidfuzz similarity, default {DEFAULT_SIMILARITY:g}); loads the whole period",
    )
    sweep.add_argument("--out", type=Path, default=Path("reports"), help="output directory (default ./reports)")
    sweep.add_argument("--fail-on-duplicates", action="store_true", help="exit 1 when duplicates were found")
    _add_key_params(sweep)
    sweep.add_argument("--in-memory", action="store_true",
                       help="load the whole period and sweep it at once, as before streaming (same output)")
    sweep.add_argument("--jobs", type=_positive_int, default=None,
                       help="user shards swept at once, each in its own process (default: cores, at most 2)")
    sweep.set_defaults(handler=_sweep)

    cleanup = commands.add_parser("cleanup", help="mark duplicates (duplicate_of); dry run unless --apply")
    cleanup.add_argument("--database-url", required=True, help="SQLAlchemy URL of the database to mark")
    _add_period(cleanup)
    cleanup.add_argument("--apply", action="store_true", help="really mark (after writing a backup)")
    cleanup.add_argument("--backup-dir", type=Path, default=Path("cleanup-backups"), help="where backups go (default ./cleanup-backups)")
    _add_key_params(cleanup)
    cleanup.set_defaults(handler=_cleanup)

    sql = commands.add_parser("sql", help="print the duplicate rule as SQL, for a warehouse or a dbt test")
    sql.add_argument("--dialect", required=True, choices=DIALECTS, help="SQL dialect")
    sql.add_argument("--window-hours", type=_positive, default=24.0, help="duplicate window (default 24)")
    sql.add_argument("--table", default="videos", help="table with id, tg_user_id, prompt_key, status, created_at (default videos)")
    _add_key_params(sql)
    sql.set_defaults(handler=_sql)

    dbt = commands.add_parser("dbt", help="write the rule as a dbt package (models duplicates, race_windows, waste)")
    dbt.add_argument("--out", type=Path, required=True, help="directory to write claimfirst_rule/ into")
    dbt.set_defaults(handler=_dbt)

    _register_replay(commands)
    from audit.reconcile_cli import register as register_reconcile  # its own module: cli.py stays small

    register_reconcile(commands)
    from audit.tuning_cli import register as register_tune

    register_tune(commands)
    return parser


def _sql(args: argparse.Namespace) -> int:
    try:
        _out(rule_sql(args.dialect, window=timedelta(hours=args.window_hours), table=args.table,
                      key_params=args.key_params), end="")
    except ValueError as exc:
        raise AuditError(str(exc)) from exc
    return 0


def _dbt(args: argparse.Namespace) -> int:
    from audit.dbt_package import write_package

    try:
        root = write_package(args.out)
    except OSError as exc:
        raise AuditError(f"cannot write the dbt package: {exc}") from exc
    _out(f"wrote {root}")
    return 0


def _register_replay(commands: argparse._SubParsersAction) -> None:
    from audit.replay.cli import register  # the replay package owns its subcommand's flags

    register(commands)


def _sweep(args: argparse.Namespace) -> int:
    from audit.report import summary_text, write_data, write_page
    from audit.sources import load_files

    progress = not args.no_progress and sys.stderr.isatty()
    if args.requests is not None and args.videos is None:
        raise AuditError("--requests goes with --videos (databases have no request log)")
    # Streamed unless asked otherwise, or near-duplicates or key params are asked for: those
    # sweep in memory (the shards do not carry params yet).
    stream = args.near_duplicates is None and not args.in_memory and not args.key_params
    if args.videos is not None and stream:
        return _sweep_streaming(args, progress)
    if args.videos is not None:
        period = _period(args, is_database=False)
        loaded = load_files(args.videos, args.requests, period=period)
    elif args.database_url:
        from audit.sources.database import load_database

        period = _period(args, is_database=True)
        if stream:
            from audit.stream.database import sweep_database

            try:
                streamed = sweep_database(args.database_url, args.out, period=period, **_stream_options(args, progress))
            except OSError as exc:
                raise AuditError(f"cannot write reports to {args.out}: {exc.strerror or exc}") from exc
            if streamed is not None:
                result, paths, source = streamed
                return _report(args, result, paths, source=source, notes=result.summary["notes"])
        loaded = load_database(
            args.database_url, period=period, pushdown=args.near_duplicates is None, progress=progress
        )
    else:
        from audit.sources.supabase import credentials_from_env, load_supabase

        period = _period(args, is_database=True)
        url, key = credentials_from_env()
        loaded = load_supabase(url, key, period=period, progress=progress)
    result = run_audit(
        loaded.videos,
        loaded.requests,
        as_of=args.as_of,
        window=period.window,
        cost_per_video=args.cost_per_video,
        lease=timedelta(seconds=args.lease_seconds),
        since=period.since,
        until=period.until,
        near_duplicates=args.near_duplicates is not None,
        similarity_threshold=DEFAULT_SIMILARITY if args.near_duplicates is None else args.near_duplicates,
        videos_scanned=loaded.videos_scanned,
    )
    result.summary["notes"] = list(loaded.notes)
    try:
        paths = write_data(result, args.out, source=loaded.description)
    except OSError as exc:
        raise AuditError(f"cannot write reports to {args.out}: {exc.strerror or exc}") from exc
    return _report(args, result, paths, source=loaded.description, notes=loaded.notes)


def _sweep_streaming(args: argparse.Namespace, progress: bool) -> int:
    """Files without --near-duplicates: user shard by user shard (`audit.stream`), the same
    summary.json and duplicates.csv in bounded memory."""
    from audit.stream import sweep_files

    period = _period(args, is_database=False)
    source = f"{args.videos}" + (f" + {args.requests}" if args.requests else " (no request log)")
    page = _Page(args.out, source)
    try:
        result, paths = sweep_files(args.videos, args.requests, args.out, period=period, source=source,
                                    meanwhile=page.draw, **_stream_options(args, progress))
    except OSError as exc:
        raise AuditError(f"cannot write reports to {args.out}: {exc.strerror or exc}") from exc
    return _report(args, result, paths, source=source, notes=[], page=page)


def _stream_options(args: argparse.Namespace, progress: bool) -> dict:
    return dict(as_of=args.as_of, cost_per_video=args.cost_per_video, lease=timedelta(seconds=args.lease_seconds),
                jobs=args.jobs, progress=progress, initializer=_tune_allocators, parent=_lean_allocators)


class _Page:
    """report.html, drawn by the streaming sweep while its data files are written (see
    `audit.stream`); what drawing it raised is kept, to be reported once the files are on
    disk."""

    def __init__(self, out: Path, source: str) -> None:
        self.out, self.source = out, source
        self.path: Path | None = None
        self.error: Exception | None = None

    def draw(self, result) -> None:
        from audit.report import write_page

        try:
            self.path = write_page(result, self.out, source=self.source)
        except Exception as exc:  # noqa: BLE001 -- reported by `_report`, after the files
            self.error = exc


def _report(args: argparse.Namespace, result, paths: dict, *, source: str, notes: list[str],
            page: _Page | None = None) -> int:
    from audit.report import summary_text, write_page

    _out(summary_text(result))
    for note in notes:
        _out(f"Note: {note}")
    try:
        if page is None or (page.path is None and page.error is None):  # not drawn during the sweep
            paths["report"] = write_page(result, args.out, source=source)
        elif page.error is not None:
            raise page.error
        else:
            paths["report"] = page.path
    except Exception as exc:
        raise InternalError(
            f"report.html not written ({_one_line(exc)}); {paths['summary']} and {paths['duplicates']} were written"
        ) from exc
    _out(f"Wrote {paths['summary']}, {paths['duplicates']}, {paths['report']}.")
    return 1 if args.fail_on_duplicates and result.summary["duplicate_count"] else 0


def _cleanup(args: argparse.Namespace) -> int:
    from audit.cleanup import apply_cleanup, plan_cleanup

    if args.apply and args.backup_dir.exists() and not args.backup_dir.is_dir():
        raise AuditError(f"--backup-dir {args.backup_dir} is not a directory")
    period = Period(since=args.since, until=args.until, window=timedelta(hours=args.window_hours),
                    key_params=args.key_params)
    plan = plan_cleanup(args.database_url, period=period, progress=not args.no_progress and sys.stderr.isatty())
    marks = plan.marks
    _out(f"{len(marks)} duplicate(s) to mark, {plan.already_marked} already marked.")
    for row in marks.itertuples(index=False):
        _out(f"  video {row.video_id}: duplicate_of = {row.original_id}")
    if not args.apply:
        _out("Dry run: nothing changed. Pass --apply to mark them (a backup is written first).")
        return 0
    backup = apply_cleanup(plan, backup_dir=args.backup_dir, as_of=args.as_of)
    if backup is not None:
        _out(f"Backed up {len(marks)} row(s) to {backup}; marked them.")
    return 0


# glibc's mallopt parameters (malloc.h) and the values the sweep sets: arrays up to 32 MB (the
# largest threshold glibc picks by itself) come from the heap, and freed memory stays there.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 2**31 - 1


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # not a GNU system
        return False


def _tune_allocators() -> None:
    """The sweep's memory: Arrow allocates with the C library's malloc, as numpy and pandas do,
    and malloc keeps what it freed for the next array. Set here, not at import: the
    allocators are the process's, the CLI's to choose and not a library's.

    A 1 M-row sweep allocates and frees a few hundred arrays of 1-30 MB. Arrow's default pool
    (mimalloc) faulted its segments in a huge page at a time (transparent huge pages on
    ``madvise``, the usual Linux default): 4-7 s of system time, against under 1 s with
    malloc. And malloc's default maps each array of more than 128 KB afresh and unmaps it
    when freed, so every new one is zero-filled page by page again: half the page faults of
    ``run_audit``. ``ARROW_DEFAULT_MEMORY_POOL`` in the environment still chooses Arrow's pool;
    off glibc ``mallopt`` is left alone."""
    import pyarrow as pa

    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        pa.set_memory_pool(pa.system_memory_pool())
    if _glibc():
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


# glibc's defaults, and few arenas: the streaming sweep's parent only reads, spills and merges.
_M_ARENA_MAX = -8
_DEFAULT_THRESHOLD = 128 * 1024


def _lean_allocators() -> None:
    """The streaming sweep's parent process: it reads a Parquet file's or a database's frames
    (a CSV's are read by the workers) with Arrow's threads and hands them on, and glibc kept
    what each thread's arena had freed (0.97 GB resident while reading 100 M rows, for 0.1 GB
    of live frames). Its workers keep `_tune_allocators`: the speed is
    theirs to gain, and their memory is one shard's."""
    if _glibc():
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_ARENA_MAX, 2)
        libc.mallopt(_M_MMAP_THRESHOLD, _DEFAULT_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_THRESHOLD)
        libc.malloc_trim(0)


def main(argv: Sequence[str] | None = None) -> int:
    _tune_allocators()
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "as_of", None) is None and hasattr(args, "as_of"):
        args.as_of = datetime.now(UTC)  # the CLI is the one place that reads the clock
    try:
        return args.handler(args)
    except AuditError as exc:
        print(f"audit: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except InternalError as exc:
        print(f"audit: internal error: {one_line(exc)}", file=sys.stderr)
        return 3
    except Exception as exc:  # a bug: one line and exit 3, never a traceback read as exit 1
        print(f"audit: internal error: {_one_line(exc)}", file=sys.stderr)
        return 3
