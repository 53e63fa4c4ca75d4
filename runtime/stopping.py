"""SIGINT and SIGTERM as requests to stop, answered at the next safe point instead of wherever they land.

Python's default turns SIGINT into a ``KeyboardInterrupt`` raised wherever the main thread happens to be:
inside a lazy import (leaving the import lock held, so a worker thread's first import hangs forever),
between starting a thread and entering the ``try`` that joins it, inside a library's own clean-up. SIGTERM
by default kills the process with no clean-up and no message. A run that keeps a resumable partial output
wants neither: it wants to stop between two windows, leave its journal consistent, and exit 130 or 143
with one line saying how to resume.

- :func:`install` (first thing in the console entry point) makes both signals raise :class:`Stop` (a
  ``KeyboardInterrupt``, so libraries that clean up on Ctrl-C still do) in the main thread: every command
  exits with 128 + the signal number and one line, never a traceback or a silent death.
- Inside :func:`cooperative` (scoring) the handlers only set a :class:`StopRequest` that the pipeline polls.
  A second signal while the first is being honoured gets the signal's default action at once (the process
  dies as under ``kill``), which stays safe: the partial output survives even ``kill -9``.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop(KeyboardInterrupt):
    """A stop signal raised in the main thread outside a cooperative section; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int) -> str:
    """``SIGINT``, ``SIGTERM``, ..."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install() -> None:
    """Make SIGINT and SIGTERM raise :class:`Stop` in the main thread (a no-op in other threads)."""
    if _in_main_thread():
        for signum in SIGNALS:
            signal.signal(signum, _raise_stop)


class StopRequest:
    """Set by a signal (or by code, e.g. a test); polled by the scoring pipeline at its safe points."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    def set(self, signum: int = signal.SIGINT) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    @property
    def name(self) -> str:
        return signal_name(self.signum if self.signum is not None else signal.SIGINT)


@contextmanager
def cooperative(request: StopRequest | None = None) -> Iterator[StopRequest]:
    """While inside, SIGINT/SIGTERM set the yielded request instead of raising; handlers restored after.

    Outside the main thread (the Python API called from a worker) signals cannot be handled there: the
    request is still yielded, and only code sets it.
    """
    request = request or StopRequest()
    if not _in_main_thread():
        yield request
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if request.is_set():  # asked twice: the user wants out now; the journal is kill -9 safe
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        request.set(signum)

    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    for signum in SIGNALS:
        signal.signal(signum, handler)
    try:
        yield request
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
