"""The size a progress bar draws at: the terminal's, or a sensible one when the terminal reports none.

A pseudo-terminal opened without a size (``script -qc``, some CI runners) reports 0 x 0. tqdm takes one
column and one row less than the terminal, so it then draws at width -1 below row -1: nothing, a blank
line. Every bar (``clsrun train``'s, ``clsrun predict``'s) passes ``**bar_geometry(stream)`` to tqdm.
"""

from __future__ import annotations

import os
import sys
from typing import Any

FALLBACK = os.terminal_size((100, 24))  # columns, lines when neither the environment nor the terminal says


def terminal_size(stream: Any = None) -> os.terminal_size:
    """The size of the terminal ``stream`` (default stderr) writes to: ``COLUMNS``/``LINES`` when set (as
    ``shutil.get_terminal_size`` reads them), else what the terminal reports; :data:`FALLBACK` for any
    part that is missing or 0 (not a terminal, or one without a size)."""
    try:
        size = os.get_terminal_size((stream or sys.stderr).fileno())
    except (AttributeError, ValueError, OSError):  # no file descriptor, closed, or not a terminal
        size = FALLBACK
    columns, lines = (
        _positive(os.environ.get(name, "")) or measured or fallback
        for name, measured, fallback in zip(("COLUMNS", "LINES"), size, FALLBACK, strict=True)
    )
    return os.terminal_size((columns, lines))


def bar_geometry(stream: Any = None) -> dict[str, int]:
    """``ncols`` and ``nrows`` for a tqdm bar on ``stream``: the terminal's size less one column and one row,
    the margin tqdm keeps itself (a line exactly as wide as the terminal may wrap)."""
    size = terminal_size(stream)
    return {"ncols": max(size.columns - 1, 1), "nrows": max(size.lines - 1, 1)}


def _positive(text: str) -> int:
    return int(text) if text.isdigit() and int(text) > 0 else 0
