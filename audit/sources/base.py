"""What every loader returns (`Loaded`), its error, the sweep's period, and the progress bar."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from audit.frames import AuditError

__all__ = ["Loaded", "SourceError", "Period", "in_period", "progress_bar"]


class SourceError(AuditError):
    """A source could not be read: missing file, unreachable server, refused request."""


@dataclass(frozen=True)
class Period:
    """The sweep's period ``[since, until]`` (either end open when None), its window, and the
    params in the key.

    ``load_from`` reaches one window before ``since``: a duplicate created just after
    ``since`` has its original just before it.
    """

    since: datetime | None = None
    until: datetime | None = None
    window: timedelta = timedelta(hours=24)
    # The service's CLAIMFIRST_KEY_PARAMS: the params that are part of a video's key (the audit's
    # --key-params); empty, the key is the prompt's alone.
    key_params: tuple[str, ...] = ()

    @property
    def load_from(self) -> datetime | None:
        return None if self.since is None else self.since - self.window


@dataclass
class Loaded:
    """Canonical frames from one source.

    ``videos`` holds the period plus its look-back, and every ``generating`` row (stuck
    claims are current state); a PostgreSQL source that searched in SQL holds only the
    groups with a duplicate, and says how many videos the period has in ``videos_scanned``.
    ``requests`` is None when the source has no request log. ``notes``: one-line remarks
    for the user (a fallback from SQL to pandas, an empty period with older rows).
    """

    videos: pd.DataFrame
    requests: pd.DataFrame | None
    description: str
    videos_scanned: int | None = None
    pushed_down: bool = False
    notes: list[str] = field(default_factory=list)  # what the user should know about the load


def in_period(times: pd.Series, start: datetime | None, end: datetime | None) -> pd.Series:
    """``start <= times <= end`` (either end open when None), as a boolean Series."""
    keep = pd.Series(True, index=times.index)
    if start is not None:
        keep &= times >= pd.Timestamp(start)
    if end is not None:
        keep &= times <= pd.Timestamp(end)
    return keep


@contextmanager
def progress_bar(description: str, total: int | None, *, enabled: bool, console=None) -> Iterator:
    """A rich progress bar on stderr (``advance(n)`` per chunk), or a no-op when disabled.
    ``console``: a `rich.console.Console` to draw on instead (a test's, forced to a terminal)."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console or Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
