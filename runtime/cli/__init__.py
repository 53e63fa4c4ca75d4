"""``clsrun`` command line. ``main`` is the console-script entry point."""

from __future__ import annotations

import sys

from clsrun.runtime.cli import (  # noqa: F401  (each module registers its commands on `app`)
    bench,
    data,
    eval,
    export,
    predict,
    train,
)
from clsrun.runtime.cli.app import app

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


def main() -> None:
    """Run the CLI."""
    app(args=global_flags_first(sys.argv[1:]))


__all__ = ["app", "main"]
