"""``clsrun`` command line. ``main`` is the console-script entry point."""

from __future__ import annotations

import sys
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


def main() -> None:
    """Run the CLI."""
    args = global_flags_first(sys.argv[1:])
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
