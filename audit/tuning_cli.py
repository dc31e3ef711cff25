"""``python -m audit tune``: the duplicate window and key chosen from the history (`audit.tuning`).

Prints the table and writes ``tuning.csv``, ``tuning.json`` and ``tuning.html``. Exit 0 when
it ran, 2 for bad input (one line ``audit: error: …``), 3 for a bug. It finds nothing to fail
on: it is a question for a person, not a check for cron.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from audit.cli_args import _add_period, _out, _period, _positive
from audit.frames import AuditError
from audit.near import DEFAULT_SIMILARITY
from audit.pipeline import DEFAULT_COST_PER_VIDEO
from audit.tuning import DEFAULT_INTENDED_AFTER, DEFAULT_WINDOWS

__all__ = ["register"]


def _hours_list(text: str) -> tuple[timedelta, ...]:
    try:
        hours = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of hours: {text!r}") from None
    if not hours or any(not h > 0 for h in hours):
        raise argparse.ArgumentTypeError(f"hours must be positive: {text!r}")
    return tuple(timedelta(hours=h) for h in hours)


def _similarity(text: str) -> float:
    value = _positive(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"a similarity is 0-100: {text}")
    return value


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("tune", help="which duplicate window and key to run, from the history")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--videos", type=Path, help="videos file: CSV, or Parquet (.parquet, .pq)")
    source.add_argument("--database-url", help="SQLAlchemy URL of a database with a 'videos' table")
    parser.add_argument("--requests", type=Path, help="request log, CSV or Parquet (with --videos)")
    _add_period(parser)
    default_windows = ",".join(f"{w.total_seconds() / 3600:g}" for w in DEFAULT_WINDOWS)
    parser.add_argument("--windows", type=_hours_list, default=DEFAULT_WINDOWS,
                        help=f"windows to compare, in hours (default {default_windows})")
    parser.add_argument("--similarity", type=_similarity, default=DEFAULT_SIMILARITY,
                        help=f"near-duplicate key: rapidfuzz similarity (default {DEFAULT_SIMILARITY:g})")
    parser.add_argument("--intended-after-hours", type=_positive, default=DEFAULT_INTENDED_AFTER.total_seconds() / 3600,
                        help="a repeat requested this long after the earlier video was delivered looks intended (default 6)")
    parser.add_argument("--cost-per-video", type=float, default=DEFAULT_COST_PER_VIDEO, help="USD (default 4)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="output directory (default ./reports)")
    parser.set_defaults(handler=_tune)


def _tune(args: argparse.Namespace) -> int:
    from audit.sources import load_files
    from audit.tuning import tune
    from audit.tuning_page import tuning_text, write_tuning

    if args.requests is not None and args.videos is None:
        raise AuditError("--requests goes with --videos (databases have no request log)")
    # The longest window is the look-back: a repeat early in the period finds its earlier video.
    args.window_hours = max(w.total_seconds() for w in args.windows) / 3600
    period = _period(args, is_database=args.database_url is not None)
    if args.videos is not None:
        loaded = load_files(args.videos, args.requests, period=period)
    else:
        from audit.sources.database import load_database

        loaded = load_database(args.database_url, period=period, pushdown=False,
                               progress=not args.no_progress and sys.stderr.isatty())
    table = tune(loaded.videos, loaded.requests, windows=args.windows, similarity=args.similarity,
                 intended_after=timedelta(hours=args.intended_after_hours), cost_per_video=args.cost_per_video,
                 since=period.since, until=period.until)
    parameters = {"intended_after_hours": args.intended_after_hours, "similarity": args.similarity,
                  "cost_per_video": args.cost_per_video}
    try:
        paths = write_tuning(table, args.out, source=loaded.description, parameters=parameters)
    except OSError as exc:
        raise AuditError(f"cannot write reports to {args.out}: {exc.strerror or exc}") from exc
    _out(tuning_text(table))
    _out(f"Wrote {paths['csv']}, {paths['json']}, {paths['html']}.")
    return 0
