"""What every `audit` command line shares: errors on one line (`prog: error: …`, exit 2).

Below `audit.cli` and `audit.replay.cli` alike, so the replay's subcommand does not import the
command it is registered in.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from service.redact import redact_text

__all__ = ["OneLineParser", "one_line", "positive", "non_negative", "positive_int"]


def one_line(message: object) -> str:
    """A message on one line: cron mails and log scrapers read errors line by line. Any
    database URL's password or secret parameter in it is masked (`service.redact`)."""
    return redact_text(" ".join(str(message).split()))


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (``prog: error: …``, exit 2), not usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def positive(text: str) -> float:
    """An argparse type: a number above 0 (a window, a speed-up, a price per video)."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def non_negative(text: str) -> float:
    """An argparse type: a number of 0 or more (a latency, a price that may be free)."""
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number above 0 (a count of processes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value
