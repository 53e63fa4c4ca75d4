"""The ``clsrun`` console command (also ``python -m clsrun``).

The SIGINT/SIGTERM handlers go in before the command line and its libraries are imported: from then on a
signal is only noted (``stopping.install``), so no import is ever cut in half, and each command honours it
where it can (``cli.app.reports_errors``): one line and exit 130/143, never a traceback from inside an
import nor (SIGTERM's default) a silent death. A signal that lands before this module runs, while the
interpreter itself starts, still gets the operating system's default: the process dies by it, having
written nothing. Once the command returns, the signals are ignored (``stopping.finish``): the exit code is
the command's.
"""

from __future__ import annotations


def main() -> None:
    """Install the stop handlers, then run the typer application."""
    from clsrun.runtime import stopping

    stopping.install()
    from clsrun.runtime.cli import main as run_cli

    try:
        run_cli()
    finally:
        stopping.finish()  # a signal during interpreter shutdown must not undo a finished run


if __name__ == "__main__":
    main()
