"""Progress bars with rate and ETA for every long-running command.

Rich draws them on stderr, so ``--json`` output on stdout stays machine-readable. On a non-terminal
(CI, pipes) rich prints nothing until the end, which keeps logs small. A description may name a
label, query or feature set that came from a source, so it is shown with its control characters
escaped (:func:`photocorpus.textsafety.terminal_safe`) and its rich markup escaped.

:data:`Progress` is the one type of every API function's ``progress=`` argument: ``False`` (silent),
``True`` (these bars, one per phase of the stage) or a callback that receives a
:class:`ProgressUpdate` at each step. :func:`progress_phase` turns any of the three into the handle
that the stages advance, so a stage never needs to know which one it was given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
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

    def __init__(self, bar: RichProgress | None = None, task: TaskID | None = None) -> None:
        self._bar, self._task = bar, task

    def __call__(self, n: int = 1) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)

    def set_total(self, total: int | None) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=total)


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    """One step of a running stage, as a ``progress`` callback receives it.

    A stage runs in phases (curate: ``hash``, ``captions``, ``quality``...); ``done`` counts from 0 in
    each phase, and ``total`` is ``None`` until the stage knows it.
    """

    phase: str
    done: int
    total: int | None
    unit: str


Progress: TypeAlias = bool | Callable[[ProgressUpdate], None]
"""What every API function takes as ``progress=``: False (silent), True (a progress bar per phase on
stderr) or a callback receiving a :class:`ProgressUpdate` at each step."""


class CallbackProgress(ProgressHandle):
    """A handle that reports each advance to a ``progress`` callback instead of drawing a bar."""

    def __init__(
        self, callback: Callable[[ProgressUpdate], None], phase: str, total: int | None, unit: str
    ) -> None:
        super().__init__()
        self.callback, self.phase, self.total, self.unit = callback, phase, total, unit
        self.done = 0

    def __call__(self, n: int = 1) -> None:
        self.done += n
        self.callback(ProgressUpdate(self.phase, self.done, self.total, self.unit))

    def set_total(self, total: int | None) -> None:
        self.total = total
        self.callback(ProgressUpdate(self.phase, self.done, total, self.unit))


@contextlib.contextmanager
def progress_phase(
    progress: Progress, description: str, total: int | None = None, unit: str = "photos"
) -> Iterator[ProgressHandle]:
    """One phase of a stage, shown the way ``progress`` asks: nothing, a bar, or callback updates."""
    if callable(progress):
        yield CallbackProgress(progress, description, total, unit)
        return
    with progress_bar(description, total, unit=unit, enabled=bool(progress)) as handle:
        yield handle


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
    with RichProgress(*columns, console=stderr_console, transient=False) as bar:
        # The column renders the description as markup: escape it so "[/]" in a label cannot break it.
        yield ProgressHandle(bar, bar.add_task(escape(terminal_safe(description)), total=total))
