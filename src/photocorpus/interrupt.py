"""Clean Ctrl-C: the first one asks the running stage to stop after its current batch.

A stage polls :attr:`StopFlag.requested` between batches, commits what it has and returns, so the next
run resumes exactly there. A second Ctrl-C aborts at once (still safe: the catalog only ever holds
whole transactions, and dangling files are cleaned by the next run).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class StopFlag:
    """Set when the user asked to stop; stages check it between batches."""

    def __init__(self) -> None:
        self.requested = False

    def __bool__(self) -> bool:
        return self.requested


@contextlib.contextmanager
def graceful_interrupt(
    on_first: str = "Stopping after the current batch (Ctrl-C again to abort)...",
) -> Iterator[StopFlag]:
    """Install SIGINT/SIGTERM handlers for the duration of a stage (main thread only)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True
        from photocorpus.progress import stderr_console

        stderr_console.print(f"[yellow]{on_first}[/yellow]")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
