"""The ``clsrun`` console command (also ``python -m clsrun``).

The SIGINT/SIGTERM handlers go in before the command line and its libraries are imported: from then on a
signal is only noted (``stopping.install``), so no import is ever cut in half, and each command honours it
where it can (``cli.app.reports_errors``): one line and exit 130/143, never a traceback from inside an
import nor (SIGTERM's default) a silent death. A signal that lands before this module runs, while the
interpreter itself starts, still gets the operating system's default: the process dies by it, having
written nothing. Once the command returns, the signals are ignored (``stopping.finish``): the exit code is
the command's.

The process then ends without the interpreter's teardown (:func:`exit_now`): every command has closed and
published what it wrote by the time it returns, and tearing down the modules a scoring run loads (numpy,
pyarrow, onnxruntime) costs a noticeable share of a short job's wall time (README, the n-gram model's
scoring figures).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading


def main() -> None:
    """Install the stop handlers, run the typer application, and exit with its code."""
    from clsrun.runtime import stopping

    stopping.install()
    from clsrun.runtime.cli import streams

    streams.install()  # a closed log pipe drops messages, it does not fail the command
    from clsrun.runtime.cli import main as run_cli

    try:
        run_cli()
        code: object = 0
    except SystemExit as e:  # typer ends every command this way
        code = e.code
    finally:
        stopping.finish()  # a signal during interpreter shutdown must not undo a finished run
    exit_now(code)


def exit_now(code: object) -> None:
    """End the process with ``code`` as ``sys.exit`` would, skipping the interpreter's teardown.

    What the teardown would still do that matters is done here first: the ``atexit`` handlers (a Ray
    cluster's shutdown, logging's flush, ``weakref.finalize`` clean-ups) and flushing stdout and stderr.
    With another non-daemon thread alive (the teardown would wait for it) or a code that is not a number
    (``sys.exit`` prints it), the process exits the usual way.
    """
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if others or not (code is None or isinstance(code, int)):
        raise SystemExit(code)
    atexit._run_exitfuncs()  # the handlers the teardown would run (a documented module, a private call)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`clsrun ... | head`), a closed stream
            stream.flush()
    os._exit(_lost_output_fails(code or 0))


def _lost_output_fails(code: int) -> int:
    """``code``, or 1 with one line on stderr when a command that would exit 0 could not write its stdout
    (``streams.lost_output``): its result there is gone."""
    from clsrun.runtime.cli.streams import lost_output

    why = lost_output()
    if code != 0 or why is None:
        return code
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"error: stdout: {why}; the command's output was not written\n")
        sys.stderr.flush()
    return 1


if __name__ == "__main__":
    main()
