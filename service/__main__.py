"""`python -m service [--host H] [--port P]`: serve the claim-first API with uvicorn."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn
from pydantic import ValidationError

from service.app import create_app
from service.errors import StorageUnavailable
from service.settings import Settings
from service.storage import make_engine, migrate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"service: error: bad setting: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plugin at start
    # Migrate before serving (the app does it again at start, finding nothing to do): a
    # database that is down or a table that is not the bot's gets one line, not a traceback.
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
    except (StorageUnavailable, RuntimeError) as exc:
        where = engine.url.render_as_string(hide_password=True)
        print(f"service: error: cannot prepare the database {where}: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
