"""SIGINT, SIGTERM and SIGHUP as requests to stop, answered where the code says a stop may land.

Python's default turns SIGINT into a ``KeyboardInterrupt`` raised wherever the main thread happens to be:
inside a lazy import (leaving a module half made, or the import lock held while a worker thread waits
for its first import), between starting a thread and entering the ``try`` that joins it, inside a
library's own clean-up. SIGTERM by default kills the process with no clean-up and no message. A run that
keeps a resumable partial output wants neither: it wants to stop between two windows, leave its journal
consistent, and exit 130 or 143 with one line saying how to resume.

So a signal is first only *noted* in the process's :class:`StopRequest`; code then says where it may land:

- :func:`install` (first thing in the console entry point, before the command line is imported): from
  then on a signal is noted and nothing is raised, so start-up imports always complete;
- :func:`raising` (every command but ``predict``'s local engine, through ``cli.app.reports_errors``): inside
  it a noted or arriving signal raises :class:`Stop` (a ``KeyboardInterrupt``, so libraries that clean up
  on Ctrl-C still do) in the main thread, and the command exits 128 + the signal number with one line;
- :func:`cooperative` (``clsrun predict``): inside it a signal only sets the request, which the scoring
  pipeline polls at its safe points (between windows and batches).

Inside :func:`raising`, :func:`shielded` marks a few steps that must all happen or none (moving a bundle
aside and marking its replacement; publishing one): a signal there is noted and raised as they end, or
not at all once the result is published. :func:`honour` is a safe point that raises a stop noted but never
raised: Python drops an exception raised in a garbage-collector callback or a ``__del__`` (printing
"Exception ignored in"), so a signal landing there would otherwise be lost; such a drop prints nothing.

Under either mode a second signal, while the first is being honoured, gets the signal's default action at
once (the process dies as under ``kill``): the user wants out now, and the partial output survives even
``kill -9``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from clsrun.runtime.sigaction import on_thread_stack

# SIGHUP too: a terminal or an ssh session that drops sends it, and a run should then stop as it does
# for SIGTERM (checkpoint kept, one line, exit 129) rather than die with its lock and no word. A job
# started under nohup has it ignored, and an ignored signal stays ignored (_handled).
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stop(KeyboardInterrupt):
    """A stop signal raised in the main thread inside :func:`raising`; ``signum`` says which.

    ``early``: the signal was noted before the section began (during start-up), so nothing was done yet.
    """

    def __init__(self, signum: int, early: bool = False) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum
        self.early = early


def signal_name(signum: int) -> str:
    """``SIGINT``, ``SIGTERM``, ..."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopRequest:
    """Set by a signal (or by code: a test, another thread); polled by the scoring pipeline."""

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

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process that signal killed (130, 143)."""
        return 128 + (self.signum if self.signum is not None else signal.SIGINT)


class _Mode:
    """The process-wide state the one signal handler reads (signals are only ever handled in the main thread)."""

    request = StopRequest()
    raising = False


def _handler(signum: int, frame: FrameType | None) -> None:
    request = _Mode.request
    if request.is_set():  # asked twice: the user wants out now; the journal is kill -9 safe
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    request.set(signum)
    if _Mode.raising:
        raise Stop(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handled() -> list[int]:
    """The stop signals to take over: not one the process was started with ignored (``SIG_IGN``), as a
    shell does for SIGINT in background jobs; Python keeps that too."""
    return [s for s in SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]


def _take(signum: int) -> None:
    """Our handler for ``signum``, run on the interrupted thread's own stack (``sigaction.py`` says why)."""
    signal.signal(signum, _handler)
    on_thread_stack(signum)


def _ours() -> bool:
    return any(signal.getsignal(s) is _handler for s in SIGNALS)


def install() -> StopRequest:
    """From now on SIGINT/SIGTERM are noted in the returned request, never raised (outside :func:`raising`).

    Call it in the main thread before importing anything a signal could interrupt; it stays for the life
    of the process. A launcher that blocked the signals until the handlers exist gets them now: any that
    arrived meanwhile are delivered, and noted, on unblocking.
    """
    if _in_main_thread():
        _Mode.request, _Mode.raising = StopRequest(), False
        for signum in _handled():
            _take(signum)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    return _Mode.request


def finish() -> None:
    """The command is done: SIGINT/SIGTERM are ignored for the rest of the process.

    Python puts back the default action of every signal it handled late in its own shutdown, and a pool
    of library threads can keep that shutdown going for seconds on a loaded machine: a SIGTERM landing
    then would kill a run whose output is already published, so the scheduler would see death by signal
    instead of exit 0 (``benchmarks/signal_stress.py`` caught it). Ignoring is process-wide, which
    blocking in one thread is not (any thread may take a process-directed signal), and Python's shutdown
    leaves an ignored signal ignored. Call it in the main thread, last.
    """
    if _in_main_thread():
        for signum in SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


def _leave_signals_to_us() -> None:
    """pyarrow answers SIGINT/SIGTERM itself during its long operations (a CSV read, a compute kernel),
    cancelling them with ``ArrowCancelled`` wherever they are; inside a section of ours only our handler may
    answer, so a stop lands at a safe point. Cheap, and pyarrow is loaded by then in every command."""
    import pyarrow

    pyarrow.enable_signal_handlers(False)


@contextmanager
def _mode(raising: bool) -> Iterator[StopRequest]:
    """Our handler with ``raising`` for the duration; what was there before is put back after.

    Outside :func:`install` (the Python API, tests) each outermost section starts with a fresh request, so
    a stop that one run honoured does not stop the next.
    """
    _leave_signals_to_us()
    sys.unraisablehook = _quiet_dropped_stops
    previous = {s: signal.getsignal(s) for s in _handled()}
    if not _ours():
        _Mode.request = StopRequest()
    was_raising, _Mode.raising = _Mode.raising, raising
    for signum in previous:
        _take(signum)
    try:
        yield _Mode.request
    finally:
        _Mode.raising = was_raising
        _put_back(previous)


def _put_back(previous: dict[int, Any]) -> None:
    """Set each signal's handler to what ``previous`` says it was (ours: with our stack flags again)."""
    for signum, old in previous.items():
        if old is _handler:  # an enclosing section's, or the entry point's
            _take(signum)
        else:
            signal.signal(signum, old if old is not None else signal.SIG_DFL)  # None: set outside Python


@contextmanager
def kept() -> Iterator[None]:
    """Inside, a library may set its own SIGINT/SIGTERM handlers; the ones there before come back after.

    ``ray.init`` sets SIGTERM to ``sys.exit(15)`` (and Ray's core its own native handler): a scheduler's
    SIGTERM then ended a Ray job with exit 15 or an abort instead of exit 143 and one line.
    """
    before: dict[int, Any] = {s: signal.getsignal(s) for s in SIGNALS} if _in_main_thread() else {}
    try:
        yield
    finally:
        _put_back(before)


def _quiet_dropped_stops(unraisable: Any) -> None:
    """``sys.unraisablehook``: a :class:`Stop` Python dropped (raised in a garbage-collector callback or a
    ``__del__``) is already noted in the request, and :func:`honour` raises it; anything else is printed
    as Python would."""
    if isinstance(unraisable.exc_value, Stop):
        return
    _python_unraisablehook(unraisable)


_python_unraisablehook = sys.unraisablehook


@contextmanager
def shielded(then_raise: bool = True) -> Iterator[None]:
    """Inside a :func:`raising` section, steps a signal must not split: one arriving meanwhile is only
    noted, then raised as the block ends (``then_raise``), or left noted when the block published the
    run's result (``then_raise=False``: the command completes, as ``predict`` does once its output is in
    place). Elsewhere (cooperative sections, other threads) it changes nothing."""
    if not (_in_main_thread() and _Mode.raising):
        yield
        return
    _Mode.raising = False
    try:
        yield
    finally:
        _Mode.raising = True
    if then_raise:
        honour()


def honour() -> None:
    """A safe point inside :func:`raising`: a stop noted and not raised (dropped by Python in a callback,
    or noted in a :func:`shielded` block) raises :class:`Stop` now. Elsewhere it does nothing."""
    request = _Mode.request
    if _in_main_thread() and _Mode.raising and request.is_set():
        raise Stop(request.signum or signal.SIGINT)


@contextmanager
def raising() -> Iterator[StopRequest]:
    """Inside, a stop raises :class:`Stop` in the main thread: at once if one was already noted."""
    if not _in_main_thread():
        yield StopRequest()
        return
    with _mode(raising=True) as request:
        if request.is_set():
            raise Stop(request.signum or signal.SIGINT, early=True)
        yield request


@contextmanager
def cooperative() -> Iterator[StopRequest]:
    """Inside, SIGINT/SIGTERM only set the yielded request (one noted before counts too); code polls it.

    Outside the main thread (the Python API called from a worker) signals cannot be handled there: a
    request is still yielded, and only code sets it.
    """
    if not _in_main_thread():
        yield StopRequest()
        return
    with _mode(raising=False) as request:
        yield request
