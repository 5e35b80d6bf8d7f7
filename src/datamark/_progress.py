"""Progress bars with rate and ETA, shown only when asked for (the CLI asks; the library stays quiet)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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


@contextlib.contextmanager
def progress_bar(description: str, total: float, *, enabled: bool, unit: str = "it") -> Iterator[ProgressBar]:
    """Yield a bar showing done/total, rate, elapsed time and ETA on stderr; a silent handle if not ``enabled``."""
    if not enabled:
        yield ProgressBar()
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task_id = progress.add_task(description, total=total, info="", unit=unit)
        yield ProgressBar(progress, task_id)
