"""Clean Ctrl-C: the first one asks the running stage to stop after its current batch.

A stage polls :attr:`StopFlag.requested` between batches, commits what it has and returns, so the next
run resumes exactly there. A second Ctrl-C aborts at once (still safe: the catalog only ever holds
whole transactions, and dangling files are cleaned by the next run).

:class:`StopFlag` is also the one type of every API function's ``stop=`` argument: a notebook or a
program that runs a stage in a thread sets it to ask for the same clean stop.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class StopFlag:
    """Set when the user asked to stop; stages check it between batches.

    Call :meth:`request` (from any thread, or a Ctrl-C handler) and the running stage stops after its
    current batch, commits what it has and returns a report with ``interrupted=True``.
    """

    def __init__(self) -> None:
        self.requested = False

    def request(self) -> None:
        """Ask the stage that polls this flag to stop after its current batch."""
        self.requested = True

    def __bool__(self) -> bool:
        return self.requested


@contextlib.contextmanager
def graceful_interrupt(
    on_first: str = "Stopping after the current batch (Ctrl-C again to abort)...",
    flag: StopFlag | None = None,
) -> Iterator[StopFlag]:
    """Install SIGINT/SIGTERM handlers for the duration of a stage (main thread only).

    The first signal sets ``flag`` (a new one when not given), so a caller's own flag and Ctrl-C (or a
    notebook's interrupt button, which sends SIGINT) stop the stage the same way.
    """
    flag = flag if flag is not None else StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if flag.requested:
            raise KeyboardInterrupt
        flag.request()
        from photocorpus.progress import stderr_console

        stderr_console.print(f"[yellow]{on_first}[/yellow]")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
