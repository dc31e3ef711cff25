"""`python -m service [--host H] [--port P] [--workers N]`: serve the claim-first API with uvicorn.

`python -m service telegram set-webhook --url …` registers the Telegram bot's webhook instead
(`service.telegram.cli`); `python -m service migrate [--sql | --check | --downgrade REV]` manages
the schema as a step of a deploy (`migrate_command`).

Anything wrong before serving (a bad setting, no API key or the simulated generator left to its
default on a public address, a database URL
that is not SQLite or PostgreSQL, a file that is not a database) stops it with one line
`service: error: ...` and exit 2; a database that does not answer, with exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import logging.config
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import uvicorn
from alembic.util import CommandError
from pydantic import ValidationError
from sqlalchemy import create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from service.http.auth import anonymous_refusal, simulated_refusal, webhook_refusal
from service.errors import StorageUnavailable
from service.http.limits import uvicorn_options
from service.logs import log_config
from service.redact import redact_text, redact_url
from service.metrics import MULTIPROC_ENV
from service.settings import Settings, describe_settings_error
from service.stores.engine import (
    current_revision, downgrade, head_revision, make_engine, migrate, upgrade_sql,
)

# Every SQLite database file starts with these 16 bytes (sqlite.org/fileformat.html).
SQLITE_HEADER = b"SQLite format 3\x00"


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Masked here, once for every error line: a message may quote a database URL.
        self.exit(2, redact_text(f"service: error: {message}") + "\n")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def not_a_database(database_url: str) -> str | None:
    """Why a SQLite URL's existing file cannot be the database, or None."""
    parsed = make_url(database_url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    if path.is_dir():
        return f"{path} is a directory, not a SQLite database file"
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as file:
            if file.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                return f"{path} is not a SQLite database"
    return None


def _no_such_sqlite_file(database_url: str) -> bool:
    parsed = make_url(database_url)
    return (parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
            and not Path(parsed.database).exists())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["telegram"]:  # a subcommand word, so `python -m service --port …` stays as it was
        from service.telegram.cli import main as telegram_main

        return telegram_main(argv[1:])
    if argv[:1] == ["migrate"]:
        return migrate_command(argv[1:])
    parser = _OneLineParser(prog="python -m service", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=_positive, default=None,
                        help="worker processes on one socket (default CLAIMFIRST_WORKERS, 1)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        parser.error(f"bad setting: {describe_settings_error(exc)}")
    if refusal := (anonymous_refusal(args.host, settings) or simulated_refusal(args.host, settings)
                   or webhook_refusal(settings)):
        parser.error(refusal)
    if problem := not_a_database(settings.database_url):
        parser.error(f"DATABASE_URL: {problem}")
    logging_config = log_config(settings, args.log_level)
    logging.config.dictConfig(logging_config)
    # Migrate before serving (the app does it again at start, finding nothing to do): a
    # database that is down or a table that is not the bot's gets one line, not a traceback.
    engine = make_engine(settings.connect_url, prepare=settings.db_prepare)
    where = redact_url(settings.database_url)
    try:
        if settings.migrate_on_start:
            migrate(engine)
        elif (current := current_revision(engine)) != (head := head_revision()):
            # The operator migrates as a deploy step: serving an older schema would fail later,
            # request by request, so it stops here.
            parser.error(f"the database {where} is at revision {current or 'none'}, not {head}, and "
                         "CLAIMFIRST_MIGRATE_ON_START is false: run `python -m service migrate` first")
    except (StorageUnavailable, RuntimeError) as exc:
        print(redact_text(f"service: error: cannot prepare the database {where}: {exc}"), file=sys.stderr)
        return 1
    except sa_exc.DatabaseError as exc:  # answered, but not as a database we can use
        parser.error(f"DATABASE_URL {where} is not a usable database: {str(exc.orig).splitlines()[0]}")
    finally:
        engine.dispose()
    # An import string and a factory, so that each worker process builds its own app (and
    # its own pools and runner) from the same environment; the claim lives in the database.
    workers = args.workers or settings.workers
    # Migrated just now: the workers must not need the database to start (see Settings).
    os.environ["CLAIMFIRST_MIGRATE_ON_START"] = "false"
    with _metrics_shared_by(workers):
        uvicorn.run(
            "service.app:serving_app", factory=True, host=args.host, port=args.port, workers=workers,
            log_level=args.log_level, log_config=logging_config, **uvicorn_options(settings),
        )
    return 0


def migrate_command(argv: list[str]) -> int:
    """`python -m service migrate`: 0 done (or at head, for --check), 1 behind head (--check) or
    the database did not answer, 2 a bad flag or setting."""
    parser = _OneLineParser(prog="python -m service migrate",
                            description="Apply the service's migrations to DATABASE_URL (Alembic).")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--sql", action="store_true",
                        help="print the SQL the upgrade would run, for review; change nothing")
    action.add_argument("--check", action="store_true", help="exit 0 when the database is at head, 1 when behind")
    action.add_argument("--downgrade", metavar="REV",
                        help="take the schema back to REV (`base`: the adopted table as it was before)")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        parser.error(f"bad setting: {describe_settings_error(exc)}")
    if problem := not_a_database(settings.database_url):
        parser.error(f"DATABASE_URL: {problem}")
    if (args.sql or args.check) and _no_such_sqlite_file(settings.database_url):
        # They only read, and opening a SQLite file creates it (make_engine its folder too):
        # a file that is not there is read as the empty database it would be.
        engine = create_engine("sqlite://")
    else:
        engine = make_engine(settings.connect_url, prepare=settings.db_prepare)
    where = make_url(settings.connect_url).render_as_string(hide_password=True)
    head = head_revision()
    try:
        if args.sql:
            if current_revision(engine) == head:
                print(f"-- {where} is at head ({head}): nothing to run")
            else:
                sys.stdout.write(upgrade_sql(engine, schema=settings.db_schema))
            return 0
        if args.check:
            current = current_revision(engine)
            print(f"{where}: revision {current or 'none'}, head {head}: "
                  + ("up to date" if current == head else "behind"))
            return 0 if current == head else 1
        if args.downgrade:
            downgrade(engine, args.downgrade)
            print(f"{where}: downgraded to {args.downgrade}")
            return 0
        before = current_revision(engine)
        migrate(engine)
        print(f"{where}: migrated from {before or 'none'} to {head}")
        return 0
    except (StorageUnavailable, RuntimeError) as exc:
        print(f"service: error: cannot migrate the database {where}: {exc}", file=sys.stderr)
        return 1
    except CommandError as exc:  # an unknown revision given to --downgrade
        parser.error(f"--downgrade: {str(exc).splitlines()[0]}")
    except sa_exc.DatabaseError as exc:
        parser.error(f"DATABASE_URL {where} is not a usable database: {str(exc.orig).splitlines()[0]}")
    finally:
        engine.dispose()


CONSOLE_USAGE = "usage: claimfirst {serve | migrate | telegram | audit} [options]"


def console(argv: list[str] | None = None) -> int:
    """The `claimfirst` console script: `serve` (python -m service), `migrate`, `telegram`, `audit`
    (python -m audit, which needs the [audit] extra)."""
    argv = sys.argv[1:] if argv is None else argv
    word, rest = (argv[0], argv[1:]) if argv else ("", [])
    if word == "serve":
        return main(rest)
    if word in ("migrate", "telegram"):
        return main(argv)
    if word == "audit":
        # Run as a module, not imported here: the service's layers never import the audit, and
        # a lean install (no [audit] extra) still has every other command.
        import runpy

        sys.argv = ["claimfirst audit", *rest]
        try:
            runpy.run_module("audit", run_name="__main__", alter_sys=True)
        except ModuleNotFoundError as exc:
            print(f"claimfirst: error: the audit needs its extra (pip install 'claimfirst[audit]'): {exc}",
                  file=sys.stderr)
            return 2
        return 0
    if word in ("-h", "--help"):
        print(CONSOLE_USAGE)
        return 0
    print(f"claimfirst: error: expected a command: {CONSOLE_USAGE.removeprefix('usage: claimfirst ')}", file=sys.stderr)
    return 2


@contextlib.contextmanager
def _metrics_shared_by(workers: int) -> Iterator[None]:
    """With several workers, a fresh PROMETHEUS_MULTIPROC_DIR for this run (prometheus-client
    needs it empty at start, and set before any worker imports it), removed at exit. One
    already set is used as it is: whoever set it empties it between runs."""
    if workers == 1 or os.environ.get(MULTIPROC_ENV):
        yield
        return
    path = tempfile.mkdtemp(prefix="claimfirst-metrics-")
    os.environ[MULTIPROC_ENV] = path  # the workers are spawned after this, with this environment
    try:
        yield
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
