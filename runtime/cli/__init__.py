"""``clsrun`` command line. ``main`` is the console-script entry point."""

from __future__ import annotations

from clsrun.runtime.cli import (  # noqa: F401  (each module registers its commands on `app`)
    bench,
    data,
    eval,
    export,
    predict,
    train,
)
from clsrun.runtime.cli.app import app


def main() -> None:
    """Run the CLI."""
    app()


__all__ = ["app", "main"]
