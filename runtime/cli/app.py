"""The typer application and the one place where library errors become exit codes and one-line messages.

Each command lives in its own module of this package and only parses options and calls library
functions; heavy stages (torch, onnx export) are imported inside the command body so ``--help`` is instant.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import re
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

import typer

from clsrun import __version__
from clsrun.runtime import stopping
from clsrun.runtime.cli.options import flag
from clsrun.runtime.errors import ClsrunError, Interrupted, resource_error, storage_error

# Shown under `clsrun --help` (rich keeps each line as it is written here).
EXIT_CODES = """Exit codes:
  0    done (rows with per-row errors still count as done)
  1    anything else: a bug (run with --debug), a full disk or quota, out
       of memory, threads or open files (ulimit -v, -u, -n)
  2    bad usage; an input that cannot be read at all; an output (or a
       bundle being loaded) locked by another run; an output that exists
       (no --overwrite) or cannot be written
  3    a model bundle that cannot run (missing, damaged, incomplete, or
       not exported where torch is not installed)
  4    done, but not all of it passed: more rows failed than
       --max-error-rate allows; export variants the accuracy gate refused
  130  stopped by SIGINT (Ctrl-C); predict: --resume continues
  143  stopped by SIGTERM; predict: --resume continues
  129  stopped by SIGHUP (its terminal went away); predict: --resume continues"""

app = typer.Typer(
    name="clsrun",
    help="Train text classifiers, export them to fast ONNX variants, and score huge files with them.",
    epilog=EXIT_CODES,
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
    # clsrun's own progress and notes at INFO; the libraries' only from WARNING (torch, for one, logs cache
    # statistics at INFO from an exit hook), unless --debug shows everything.
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s" if debug else "%(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("clsrun").setLevel(logging.DEBUG if debug else logging.INFO)


def reports_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a :class:`ClsrunError` into ``error: <message>`` on stderr and its exit code.

    The command runs inside ``stopping.raising()``: SIGINT/SIGTERM (noted until then by the entry point)
    raise there and end it with exit 128 + the signal number and one line; ``predict`` narrows that to
    stops at its safe points (``stopping.cooperative``), ending in :class:`Interrupted`. A file-system
    refusal (permission, read-only, disk full) is one typed line too. Anything else is a bug: with
    ``--debug`` the traceback is shown, otherwise one line and exit 1.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with stopping.raising():
                return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGINT/SIGTERM as stopping.Stop
            signum = getattr(e, "signum", signal.SIGINT)
            when = " during start-up; nothing was done" if getattr(e, "early", False) else ""
            typer.echo(f"interrupted by {stopping.signal_name(signum)}{when}", err=True)
            raise typer.Exit(128 + signum) from None
        except Interrupted as e:  # a full sentence: what was saved, how to go on
            typer.echo(str(e), err=True)
            raise typer.Exit(e.exit_code) from None
        except Exception as e:
            typed = (
                e
                if isinstance(e, ClsrunError)
                else (storage_error(e) if isinstance(e, OSError) else None) or resource_error(e)
            )
            if _debug["on"]:
                traceback.print_exc()
            if typed is None and isinstance(e, FileNotFoundError) and not cwd_exists():
                typer.echo(f"error: {CWD_GONE}", err=True)  # a relative path, read in a deleted folder
                raise typer.Exit(2) from e
            if typed is None:
                typer.echo(
                    f"error: unexpected {type(e).__name__}: {printable(str(e))} "
                    "(run with --debug for the traceback)",
                    err=True,
                )
                raise typer.Exit(1) from e
            typer.echo(f"error: {printable(str(typed))}", err=True)
            raise typer.Exit(typed.exit_code) from e

    wrapper.__doc__ = paragraphs_on_one_line(fn.__doc__)
    return wrapper


CWD_GONE = (
    "the current folder no longer exists (it was deleted or moved); cd into one that does and run again"
)


def cwd_exists() -> bool:
    """False when the current folder was deleted under the shell: a relative path then fails deep inside a
    command ("unexpected FileNotFoundError" naming no path), and torch's import aborts (MKL's "FATAL
    ERROR"). Absolute paths still work."""
    try:
        os.getcwd()
    except FileNotFoundError:
        return False
    return True


# Control characters other than tab: a library's message may quote raw bytes of a damaged file (pyarrow:
# "don't know what type: \x0f"), which a terminal would act on or hide; and line ends, which a file's name
# may hold ('a<LF>b.csv'): an error is one line, for a reader of a log as for `2>&1 | tail -1`.
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def printable(message: str) -> str:
    """``message`` on one line, its control characters and line ends written as escapes (``\\x0f``, ``\\n``)."""
    return _CONTROLS.sub(lambda m: _NAMED.get(m.group()) or _escape(m.group()), message)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def paragraphs_on_one_line(doc: str | None) -> str | None:
    """``doc`` dedented, each paragraph's lines joined into one, for ``--help`` to wrap at the terminal's width.

    Why by hand: typer's rich help keeps the line breaks inside a paragraph (since 0.2x), so a docstring
    wrapped at the source's width came out as long lines cut again at 80 columns, ragged. Paragraphs
    (blank-line separated) stay; a paragraph whose lines are indented or start with ``-`` is left as it is.
    """
    if doc is None:
        return None
    out = []
    for paragraph in inspect.cleandoc(doc).split("\n\n"):
        lines = paragraph.splitlines()
        keep = any(line.startswith((" ", "-", "\b")) for line in lines[1:])
        out.append(paragraph if keep else " ".join(line.strip() for line in lines))
    return "\n\n".join(out)
