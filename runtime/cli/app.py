"""The typer application and the one place where library errors become exit codes and one-line messages.

Each command lives in its own module of this package and only parses options and calls library
functions; heavy stages (torch, onnx export) are imported inside the command body so ``--help`` is instant.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

import typer

from clsrun import __version__
from clsrun.runtime.cli.options import flag
from clsrun.runtime.errors import ClsrunError, storage_error
from clsrun.runtime.stopping import signal_name

app = typer.Typer(
    name="clsrun",
    help="Train text classifiers, export them to fast ONNX variants, and score huge files with them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_debug = {"on": False}

P = ParamSpec("P")
R = TypeVar("R")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"clsrun {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, flag("--debug", help="Show the full traceback when a command fails.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", metavar="", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """clsrun: train, export and bulk-score text classifiers."""
    _debug["on"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if debug else "%(message)s",
        stream=sys.stderr,
    )


def reports_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a :class:`ClsrunError` into ``error: <message>`` on stderr and its exit code.

    Anything else is a bug: with ``--debug`` the traceback is shown, otherwise one line and exit 1.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGINT/SIGTERM as stopping.Stop
            signum = getattr(e, "signum", signal.SIGINT)
            typer.echo(f"interrupted by {signal_name(signum)}", err=True)
            raise typer.Exit(128 + signum) from None
        except Exception as e:
            typed = e if isinstance(e, ClsrunError) else storage_error(e) if isinstance(e, OSError) else None
            if _debug["on"]:
                traceback.print_exc()
            if typed is None:
                typer.echo(
                    f"error: unexpected {type(e).__name__}: {e} (run with --debug for the traceback)",
                    err=True,
                )
                raise typer.Exit(1) from e
            typer.echo(f"error: {typed}", err=True)
            raise typer.Exit(typed.exit_code) from e

    return wrapper
