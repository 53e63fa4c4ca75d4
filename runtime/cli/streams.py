"""stdout and stderr that a closed reader cannot turn into a failed command.

A nightly job's messages go to a log pipe, and the logger at its other end may be gone (`clsrun predict ...
2>&1 | head`, a crashed log collector): each write then fails with ``BrokenPipeError``. Raised from the
summary line printed after the output was published, that made a complete run exit 1 as an unexpected
error, and a refused input exit 1 instead of 2; a log file on a full disk did the same. The messages are a report on the work, not the work: once
a stream cannot be written, what is written to it is dropped, and the exit code stays the command's.

Wrapped only by the console command (``clsrun.__main__``): code that imports clsrun keeps its own streams.
"""

from __future__ import annotations

import errno
import os
from typing import Any, TextIO

# The reader went away (EPIPE), the descriptor was closed under us (EBADF, `2>&-`), or the file the messages
# go to cannot take more (`2>>job.log` on a full disk or over quota, a failing disk: ENOSPC, EDQUOT, EIO).
_GONE = (errno.EPIPE, errno.EBADF, errno.ENOSPC, errno.EDQUOT, errno.EIO)


class LossyStream:
    """A text stream that drops what it cannot write once its reader is gone; the rest is the stream's own.

    ``lost`` says why text was dropped (None while none was): for stdout, where some commands write their
    result (``eval``'s report), the console command turns it into exit 1 (:func:`lost_output`).
    """

    def __init__(self, stream: TextIO, closed: bool = False) -> None:
        self._stream = stream
        self.gone = closed
        self._why = "it was closed when clsrun started (>&-)" if closed else ""
        self.lost: str | None = None
        self.error: int | None = None  # the errno that made it gone (None: closed from the start)

    def _drop(self, e: OSError) -> None:
        if e.errno not in _GONE:
            raise e
        self.gone, self.error = True, e.errno
        self._why = os.strerror(e.errno or 0).lower()

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except OSError as e:
                self._drop(e)
        if text:
            self.lost = self._why
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except OSError as e:
                self._drop(e)
                self.lost = self._why  # what the buffer held is lost

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, ...: the wrapped stream's
        return getattr(self._stream, name)


def install() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` (once; call it before anything keeps a reference to them).

    A stream whose descriptor was closed before the process started (``2>&-``) is None in Python, which
    code that writes messages (ours, typer's, logging's) does not expect: it becomes one that drops
    everything, as if the reader were gone.
    """
    import sys

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, LossyStream):
            continue
        if stream is None:
            devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (the process's stream, never closed)
            setattr(sys, name, LossyStream(devnull, closed=True))
        else:
            setattr(sys, name, LossyStream(stream))


def lost_output() -> str | None:
    """Why text written to stdout was lost, unless its reader chose to stop reading (``| head``: EPIPE), or
    None. A command's result on stdout (``eval``'s report redirected to a file on a full disk, or to a closed
    descriptor) was dropped with exit 0, and a script went on with an empty file."""
    import sys

    stdout = sys.stdout
    if not isinstance(stdout, LossyStream) or stdout.lost is None or stdout.error == errno.EPIPE:
        return None
    return stdout.lost
