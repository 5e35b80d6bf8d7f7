"""Progress bars with rate and ETA, shown only when asked for (the CLI asks; the library stays quiet).

On a terminal the bar redraws in place; where stderr is a log file (``nohup``, CI, a batch queue) a live bar
would print nothing until the end, so a plain line with the same numbers is written every half minute instead.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _RateColumn(ProgressColumn):
    """Items per second in the task's own unit."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "it")
        return Text(f"{task.speed:,.1f} {unit}/s" if task.speed else f"? {unit}/s")


class ProgressBar:
    """A handle to advance a bar and show a short status (a loss, a p-value) beside it."""

    def __init__(self, progress: Progress | None = None, task_id: int | None = None) -> None:
        self._progress, self._task = progress, task_id

    def advance(self, amount: float = 1.0) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, amount)

    def status(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, info=text)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class LineProgress(ProgressBar):
    """Progress for a log: ``description: done/total unit (pct), rate, elapsed, ETA, status`` as one plain line
    at most every ``every`` seconds, and once more when the work ends. Why: a redrawing bar writes nothing
    readable to a file, and a user tailing the log of an hour-long training needs the rate and the ETA too."""

    def __init__(self, description: str, total: float, *, unit: str = "it", every: float = 30.0,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.description, self.total, self.unit, self.every = description, total, unit, every
        self._stream, self._clock = stream, clock
        self.done, self.info = 0.0, ""
        self._start = self._last = clock()

    def advance(self, amount: float = 1.0) -> None:
        self.done += amount
        if self._clock() - self._last >= self.every:
            self.write()

    def status(self, text: str) -> None:
        self.info = text

    def write(self) -> None:
        """Write the current line now (the bar calls it on its own every ``every`` seconds and at the end)."""
        now = self._clock()
        self._last, elapsed = now, now - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.done / self.total:.0f} %)" if self.total else ""
        eta = _clock((self.total - self.done) / rate) if rate > 0 and self.total else "?"
        line = (f"{self.description}: {self.done:,.0f}/{self.total:,.0f} {self.unit}{share}, {rate:,.1f} "
                f"{self.unit}/s, elapsed {_clock(elapsed)}, ETA {eta}" + (f", {self.info}" if self.info else ""))
        print(line, file=self._stream or sys.stderr, flush=True)


@contextlib.contextmanager
def progress_bar(description: str, total: float, *, enabled: bool, unit: str = "it") -> Iterator[ProgressBar]:
    """Yield a bar showing done/total, rate, elapsed time and ETA on stderr; a silent handle if not ``enabled``.
    Where stderr is not a terminal the same numbers come as a plain line every 30 s (:class:`LineProgress`)."""
    if not enabled:
        yield ProgressBar()
        return
    if not Console(stderr=True).is_terminal:
        bar = LineProgress(description, total, unit=unit)
        try:
            yield bar
        finally:
            bar.write()
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task_id = progress.add_task(description, total=total, info="", unit=unit)
        yield ProgressBar(progress, task_id)
