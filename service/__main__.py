"""`python -m service [--host H] [--port P] [--workers N]`: serve the claim-first API with uvicorn.

`python -m service telegram set-webhook --url …` registers the Telegram bot's webhook instead
(`service.telegram.cli`).

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
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from service.http.auth import anonymous_refusal, simulated_refusal
from service.errors import StorageUnavailable
from service.http.limits import uvicorn_options
from service.logs import log_config
from service.redact import redact_text, redact_url
from service.metrics import MULTIPROC_ENV
from service.settings import Settings, describe_settings_error
from service.stores.engine import make_engine, migrate

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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["telegram"]:  # a subcommand word, so `python -m service --port …` stays as it was
        from service.telegram.cli import main as telegram_main

        return telegram_main(argv[1:])
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
    if refusal := anonymous_refusal(args.host, settings) or simulated_refusal(args.host, settings):
        parser.error(refusal)
    if problem := not_a_database(settings.database_url):
        parser.error(f"DATABASE_URL: {problem}")
    logging_config = log_config(settings, args.log_level)
    logging.config.dictConfig(logging_config)
    # Migrate before serving (the app does it again at start, finding nothing to do): a
    # database that is down or a table that is not the bot's gets one line, not a traceback.
    engine = make_engine(settings.database_url)
    where = redact_url(settings.database_url)
    try:
        migrate(engine)
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
