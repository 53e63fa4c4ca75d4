"""The ``clsrun`` console command (also ``python -m clsrun``).

The SIGINT/SIGTERM handlers go in before the command line and its libraries are imported, so a stop
that lands during start-up ends like one that lands later: one line and exit 130/143, not a traceback
from inside an import, nor (SIGTERM's default) a silent death.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Install the stop handlers, then run the typer application."""
    from clsrun.runtime import stopping

    stopping.install()
    try:
        from clsrun.runtime.cli import main as run_cli
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", 2)
        print(f"interrupted by {stopping.signal_name(signum)}", file=sys.stderr)
        sys.exit(128 + signum)
    run_cli()


if __name__ == "__main__":
    main()
