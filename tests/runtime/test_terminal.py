"""Progress bars get a size even from a terminal that reports none (``script -qc``, some CI runners)."""

from __future__ import annotations

import fcntl
import os
import struct
import termios

import pytest

from clsrun.runtime.terminal import FALLBACK, bar_geometry


def test_bars_fall_back_to_a_size_when_the_terminal_reports_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
    master, slave = os.openpty()  # a new pseudo-terminal reports 0 x 0 until someone sets its size
    try:
        with open(slave, "w", closefd=False) as terminal:
            assert tuple(os.get_terminal_size(slave)) == (0, 0)
            assert bar_geometry(terminal) == {"ncols": FALLBACK.columns - 1, "nrows": FALLBACK.lines - 1}
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 80, 0, 0))  # rows, columns
            assert bar_geometry(terminal) == {"ncols": 79, "nrows": 29}  # tqdm's own one-cell margin
    finally:
        os.close(master)
        os.close(slave)
    monkeypatch.setenv("COLUMNS", "72")
    assert bar_geometry()["ncols"] == 71
