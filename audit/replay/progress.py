"""How far a replay is: a rich bar with an ETA on a terminal, one plain line otherwise.

The bar is the schedule's clock, not a count of requests: requests come in bursts, so a rate
of them would make an ETA that jumps with every burst, while the replay sends on schedule, so
the time left is what is left of the schedule (the last generation's end), drain included.
"""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.progress_bar import ProgressBar
from rich.text import Text

__all__ = ["ReplayProgress", "PlainProgress", "RichProgress", "progress_for"]


class ReplayProgress:
    """What `audit.replay.replay` reports to: the schedule once, then each send. Silent."""

    def begin(self, requests: int, seconds: float, max_gap: float | None) -> None:
        pass

    def sent(self, count: int, offset: float) -> None:
        pass

    def end(self) -> None:
        pass


class PlainProgress(ReplayProgress):
    """One line when the replay starts: how long it will take (a log file, a CI job)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def begin(self, requests: int, seconds: float, max_gap: float | None) -> None:
        skipped = "original timing" if max_gap is None else f"idle gaps over {max_gap:g} s skipped"
        print(f"replaying {requests} requests over {seconds:.1f} s ({skipped})", file=self.stream, flush=True)


def _schedule_done(task: Task) -> float:
    return min(task.total or 0.0, task.elapsed or 0.0)


class _ScheduleBar(BarColumn):
    """Filled by the time elapsed on the schedule, so it moves between sends and while draining."""

    def render(self, task: Task) -> ProgressBar:
        return ProgressBar(total=task.total, completed=_schedule_done(task), width=self.bar_width,
                           animation_time=task.get_time(), style=self.style,
                           complete_style=self.complete_style, finished_style=self.finished_style)


class _ScheduleLeft(ProgressColumn):
    def render(self, task: Task) -> Text:
        left = int(round((task.total or 0.0) - _schedule_done(task)))
        return Text(f"ETA {left // 60}:{left % 60:02d}", style="progress.remaining")


class RichProgress(ReplayProgress):
    def __init__(self, stream: TextIO) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"), _ScheduleBar(),
            TextColumn("{task.fields[sent]}/{task.fields[requests]} sent"), _ScheduleLeft(),
            console=Console(file=stream), transient=True,
        )
        self.task = None

    def begin(self, requests: int, seconds: float, max_gap: float | None) -> None:
        self.bar.start()
        self.task = self.bar.add_task("replay", total=max(seconds, 1e-3), sent=0, requests=requests)

    def sent(self, count: int, offset: float) -> None:
        self.bar.update(self.task, sent=count)

    def end(self) -> None:
        self.bar.stop()


def progress_for(enabled: bool, stream: TextIO | None = None) -> ReplayProgress:
    """The bar when ``enabled`` and ``stream`` (default: stderr) is a terminal, the plain line otherwise."""
    stream = sys.stderr if stream is None else stream
    return RichProgress(stream) if enabled and stream.isatty() else PlainProgress(stream)
