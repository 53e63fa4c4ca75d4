"""``clsrun`` command line. ``main`` is the console-script entry point."""

from __future__ import annotations

import sys
from pathlib import Path

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


def misplaced_bundle(args: list[str]) -> str | None:
    """A hint when ``clsrun predict`` was given a bundle folder as an argument of its own (``clsrun predict
    BUNDLE FILE``): typer's words are only "Got unexpected extra argument(s)". None otherwise."""
    from clsrun.runtime.bundle import SPEC_FILE

    if "predict" not in args[:2]:
        return None
    rest = args[args.index("predict") + 1 :]
    # Arguments of their own: not options, nor an option's value (a guess: any word after an option is one).
    alone = [
        a
        for before, a in zip(["predict", *rest], rest, strict=False)
        if not a.startswith("-") and not before.startswith("-")
    ]
    bundles = [a for a in alone if (Path(a) / SPEC_FILE).is_file()]
    if len(alone) < 2 or not bundles:  # one argument: predict itself says it is a bundle
        return None
    return f"hint: {bundles[0]} is a model bundle; give it with --model: clsrun predict FILE --model {bundles[0]}"


def main() -> None:
    """Run the CLI."""
    args = global_flags_first(sys.argv[1:])
    try:
        app(args=args)
    except SystemExit as e:
        hint = misplaced_bundle(args) if e.code == 2 else None
        if hint is not None:
            print(hint, file=sys.stderr)
        raise


__all__ = ["app", "main"]
