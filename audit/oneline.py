"""What every `audit` command line shares: errors on one line (`prog: error: …`, exit 2).

Below `audit.cli` and `audit.replay.cli` alike, so the replay's subcommand does not import the
command it is registered in.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from service.redact import redact_text

__all__ = ["OneLineParser", "one_line"]


def one_line(message: object) -> str:
    """A message on one line: cron mails and log scrapers read errors line by line. Any
    database URL's password or secret parameter in it is masked (`service.redact`)."""
    return redact_text(" ".join(str(message).split()))


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (``prog: error: …``, exit 2), not usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")
