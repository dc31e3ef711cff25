"""What the `audit` subcommands share: times and periods on the command line, stdout that
survives a closed pipe, one-line errors. Below `audit.cli` and the subcommands it registers
(`audit.reconcile_cli`, `audit.tuning_cli`), so none of them imports the command it is part of.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, time, timedelta

from audit.frames import AuditError
from audit.oneline import positive as _positive
from audit.sources.base import Period
from service.redact import redact_text

__all__ = ["DEFAULT_DATABASE_PERIOD", "InternalError", "_add_key_params", "_add_period", "_moment", "_one_line", "_out", "_period",
           "_positive", "_until"]

# A database sweep without --since covers the last week: the sweep is weekly.
DEFAULT_DATABASE_PERIOD = timedelta(days=7)



def _out(*values: object, end: str = "\n") -> None:
    """Print to stdout; a reader that went away (``audit sweep | head``) does not stop the work.

    The first write that finds the pipe closed points stdout at /dev/null, so the sweep still
    writes its files and exits with its own code instead of 3 for a BrokenPipeError."""
    try:
        print(*values, end=end)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)

def _moment(text: str, *, end_of_day: bool = False) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or datetime: {text!r}") from None
    if len(text) == 10 and end_of_day:  # a bare date: through the end of that day
        value = datetime.combine(value.date(), time.max)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _until(text: str) -> datetime:
    return _moment(text, end_of_day=True)


def _key_params(text: str) -> tuple[str, ...]:
    if not text.strip():  # the default, parsed on every run: no names, as parse_key_params says
        return ()
    # Here, not at the top: service.settings loads pydantic and SQLAlchemy (0.25 s).
    from service.settings import parse_key_params

    try:
        return parse_key_params(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_key_params(parser: argparse.ArgumentParser) -> None:
    """--key-params, defaulting to the service's own CLAIMFIRST_KEY_PARAMS (read here, at the
    command line, like every other environment setting of the audit), so an audit run beside
    the service groups as its claim did."""
    parser.add_argument(
        "--key-params", type=_key_params, default=os.environ.get("CLAIMFIRST_KEY_PARAMS", ""), metavar="NAMES",
        help="comma-separated generation params that are part of the key, as the service's"
             " CLAIMFIRST_KEY_PARAMS (default: that variable, else none)")


def _add_period(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=_moment, help="first creation time counted (default: 7 days before --as-of for databases, everything for files)")
    parser.add_argument("--until", type=_until, help="last creation time counted (default: --as-of for databases)")
    parser.add_argument("--as-of", type=_moment, help="the audit's 'now' (default: the current time)")
    parser.add_argument("--window-hours", type=_positive, default=24.0, help="duplicate window (default 24)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _period(args: argparse.Namespace, *, is_database: bool) -> Period:
    window = timedelta(hours=args.window_hours)
    since, until = args.since, args.until
    if is_database:
        since = since if since is not None else args.as_of - DEFAULT_DATABASE_PERIOD
        until = until if until is not None else args.as_of
    if since is not None and until is not None and since > until:
        raise AuditError(f"--since {since.isoformat()} is after --until {until.isoformat()}")
    return Period(since=since, until=until, window=window, key_params=getattr(args, "key_params", ()))


class InternalError(Exception):
    """An unexpected failure, with a one-line message for stderr (exit 3)."""


def _one_line(exc: BaseException) -> str:
    text = redact_text(" ".join(str(exc).split()))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
