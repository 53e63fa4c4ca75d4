"""``clsrun`` command line. ``main`` is the console-script entry point."""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from clsrun.runtime.cli import (  # noqa: F401  (each module registers its commands on `app`)
    bench,
    data,
    eval,
    export,
    predict,
    train,
)
from clsrun.runtime.cli.app import CWD_GONE, app, cwd_exists
from clsrun.runtime.files import non_utf8_name

# Options of `clsrun` itself that a user may also type after the command (`clsrun predict x.csv --debug`).
GLOBAL_FLAGS = ("--debug",)


def global_flags_first(args: list[str]) -> list[str]:
    """``args`` with :data:`GLOBAL_FLAGS` moved in front of the command, where typer reads them.

    Why: click parses a group's options only before the subcommand's name, so ``--debug`` after it was
    refused with "No such option". Anything after a ``--`` separator is left as it is.
    """
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
    return [*dict.fromkeys(flags), *(a for a in args[:end] if a not in GLOBAL_FLAGS), *args[end:]]


def misplaced_bundle(args: list[str]) -> str | None:
    """A hint when ``clsrun predict`` was given a bundle folder as an argument of its own (``clsrun predict
    BUNDLE FILE``): typer's words are only "Got unexpected extra argument(s)". None otherwise."""
    from clsrun.runtime.bundle import SPEC_FILE

    if "predict" not in args[:2]:
        return None
    rest = args[args.index("predict") + 1 :]
    flags = _flags_of("predict")  # options that take no value (--overwrite): the word after one is alone
    # Arguments of their own: not options, nor the value of an option that takes one.
    alone = [
        a
        for before, a in zip(["predict", *rest], rest, strict=False)
        if not a.startswith("-") and (not before.startswith("-") or before in flags or "=" in before)
    ]
    bundles = [a for a in alone if (Path(a) / SPEC_FILE).is_file()]
    if len(alone) < 2 or not bundles:  # one argument: predict itself says it is a bundle
        return None
    return f"hint: {bundles[0]} is a model bundle; give it with --model: clsrun predict FILE --model {bundles[0]}"


def _flags_of(command: str) -> set[str]:
    """The option names of ``command`` that take no value (boolean flags such as ``--overwrite``). Read by
    attribute: typer builds its commands on its own copy of click, whose classes are not ``click``'s."""
    import typer.main

    found = getattr(typer.main.get_command(app), "commands", {}).get(command)
    params: list[Any] = getattr(found, "params", [])
    return {
        name
        for p in params
        if getattr(p, "is_flag", False) or getattr(p, "count", False)
        for name in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ()))
    }


def unreadable_argument(args: list[str], encoding: str) -> str | None:
    """Why an argument cannot be used as typed (None when every one can), before any command runs.

    - Under a locale that is not UTF-8 with Python's UTF-8 mode off (``LC_ALL=C PYTHONUTF8=0``), Python
      decodes the command line with the locale's ``encoding``: a Chinese name became lone surrogates, refused
      as "not valid UTF-8" though it was, and a ``--text-col 内容`` never matched its column. So any argument
      that is not ASCII is refused there, with what to run instead.
    - Bytes that are not UTF-8 (Linux allows any in a name) in any argument: clsrun reads and writes names
      and columns as UTF-8, and such a bundle path was reported damaged, a bench report failed after every
      backend was measured, a training after its features were built. One line for every command and path.
    """
    utf8 = codecs.lookup(encoding).name == "utf-8"
    for before, arg in zip(["", *args], args, strict=False):
        given = (
            f"{before} " if before.startswith("-") and "=" not in before and not arg.startswith("-") else ""
        )
        if not utf8 and not arg.isascii():
            shown = os.fsencode(arg).decode("utf-8", "backslashreplace")
            return (
                f"{given}{shown}: not ASCII, and Python reads the command line as {encoding} under this locale "
                "(LC_ALL, LC_CTYPE, LANG); run with PYTHONUTF8=1, or under a UTF-8 locale (LANG=C.UTF-8)"
            )
        bad = non_utf8_name(arg)
        if bad is not None:
            return (
                f"{given}{bad}: not valid UTF-8, as clsrun reads names and columns; a file or folder: rename "
                "it, or link to it by a UTF-8 name"
            )
    return None


def _say_error(message: str) -> None:
    """``error: message`` on stderr as UTF-8 bytes, whatever its encoding: an argument is echoed with the
    bytes it was typed in (an ASCII stderr wrote '??' or '\\udce8' escapes for them)."""
    line = f"error: {message}\n".encode("utf-8", "backslashreplace")
    stream = getattr(sys.stderr, "buffer", None)
    if stream is None:
        sys.stderr.write(line.decode("utf-8"))
        return
    sys.stderr.flush()
    stream.write(line)
    stream.flush()


# The widths --help and typer's usage boxes are laid out in: a COLUMNS outside them made every --help
# unreadable (20: a few words a line) or a traceback (rich's OverflowError on COLUMNS=99999999999999999999).
HELP_WIDTHS = (60, 200)


def clamp_help_width(environ: MutableMapping[str, str]) -> None:
    """Set ``TERMINAL_WIDTH``, the width typer gives its rich console, to the width asked for
    (``TERMINAL_WIDTH``, else ``COLUMNS``) brought into :data:`HELP_WIDTHS`; with neither a whole number,
    rich asks the terminal. Only help and usage messages read it: progress bars keep ``COLUMNS`` as given.
    A ``TERMINAL_WIDTH`` that is not a number is dropped: typer failed on it with a ValueError traceback."""
    for name in ("TERMINAL_WIDTH", "COLUMNS"):
        value = environ.get(name, "").strip()
        if value.isdigit():
            low, high = HELP_WIDTHS
            environ["TERMINAL_WIDTH"] = str(min(max(int(value), low), high))
            return
        environ.pop("TERMINAL_WIDTH", None)


def main() -> None:
    """Run the CLI."""
    clamp_help_width(os.environ)  # before typer's rich_utils, imported for the first help or usage box
    args = global_flags_first(sys.argv[1:])
    unreadable = unreadable_argument(args, sys.getfilesystemencoding())
    if unreadable is not None:
        _say_error(unreadable)
        raise SystemExit(2)
    torch_command = {"train", "export", "bench"} & set(args[:3]) and not {"--help", "-h"} & set(args)
    if torch_command and not cwd_exists():  # torch's import aborts in a deleted folder
        print(f"error: {CWD_GONE}", file=sys.stderr)
        raise SystemExit(2)
    try:
        app(args=args)
    except SystemExit as e:
        hint = misplaced_bundle(args) if e.code == 2 else None
        if hint is not None:
            print(hint, file=sys.stderr)
        raise


__all__ = ["app", "main"]
