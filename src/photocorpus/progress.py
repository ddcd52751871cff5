"""Progress bars with rate and ETA for every long-running command.

Rich draws them on stderr, so ``--json`` output on stdout stays machine-readable. On a non-terminal
(CI, pipes) rich prints nothing until the end, which keeps logs small. A description may name a
label, query or feature set that came from a source, so it is shown with its control characters
escaped (:func:`photocorpus.textsafety.terminal_safe`) and its rich markup escaped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from photocorpus.textsafety import terminal_safe

stderr_console = Console(stderr=True)


class RateColumn(ProgressColumn):
    """Items per second, e.g. ``143.2 photos/s``."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text(f"- {self.unit}/s", style="progress.data.speed")
        return Text(f"{speed:,.1f} {self.unit}/s", style="progress.data.speed")


Advance = Callable[[int], None]


class ProgressHandle:
    """What ``progress_bar`` yields: call it to advance; ``set_total`` once the total becomes known."""

    def __init__(self, bar: Progress | None = None, task: TaskID | None = None) -> None:
        self._bar, self._task = bar, task

    def __call__(self, n: int = 1) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)

    def set_total(self, total: int | None) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=total)


@contextlib.contextmanager
def progress_bar(
    description: str, total: int | None, unit: str = "photos", enabled: bool = True
) -> Iterator[ProgressHandle]:
    """Show a bar while the block runs; yields a handle: ``advance(n)``. ``enabled=False`` is silent."""
    if not enabled:
        yield ProgressHandle()
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr_console, transient=False) as bar:
        # The column renders the description as markup: escape it so "[/]" in a label cannot break it.
        yield ProgressHandle(bar, bar.add_task(escape(terminal_safe(description)), total=total))
