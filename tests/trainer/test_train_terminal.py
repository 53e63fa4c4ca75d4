"""`clsrun train` (and `clsrun predict`'s bar) as a user sees it: on a terminal (a pseudo-terminal, with a size
and without one), through a pipe whose reader stops early, and when the data or a flag is wrong (nothing
created, torch not loaded)."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from clsrun.runtime.bundle import Bundle

CLSRUN = str(Path(sys.executable).parent / "clsrun")
EPOCH_LINE = re.compile(
    r"^epoch (\d)/2: train loss \d+\.\d{4} acc \d\.\d{4} \| val loss \d+\.\d{4} acc \d\.\d{4}(  \(best so far\))?$"
)


def tiny_train_args(data: Path, out: Path, quiet: bool = True) -> list[str]:
    """``train DATA --model charcnn --out OUT``: a tiny char-CNN, 2 epochs of 17 steps, no logs."""
    args = ["train", str(data), "--model", "charcnn", "--out", str(out), "--epochs", "2", "--no-logs"]
    args += ["--batch-size", "16", "--max-length", "32", "--embed-dim", "8", "--channels", "8,8"]
    args += ["--kernel-sizes", "3,3", "--early-stopping-patience", "0"]
    return [*args, "--quiet"] if quiet else args


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return {**env, "OMP_NUM_THREADS": "1"}


def _run_on_pty(args: list[str], columns: int, rows: int, timeout: float = 600) -> tuple[int, str]:
    """Run ``clsrun ARGS`` with stdin, stdout and stderr on a new pseudo-terminal of the given size;
    returns its exit code and every byte it wrote (decoded)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen([CLSRUN, *args], stdin=slave, stdout=slave, stderr=slave, env=_env())
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: every process holding the terminal has closed it
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def _screen(raw: str) -> list[str]:
    """The lines a terminal shows: after a carriage return, text overwrites its line from column 0."""
    lines = []
    for line in raw.split("\n"):
        cells: list[str] = []
        for part in line.split("\r"):
            cells[: len(part)] = part
        lines.append("".join(cells).rstrip())
    return lines


def _bar_draws(raw: str) -> list[str]:
    """Every state of a progress bar that was drawn (``epoch 1/2:  40%|████      | 7/17 [...]``)."""
    return [part for line in raw.split("\n") for part in line.split("\r") if re.search(r"\d+%\|", part)]


@pytest.mark.slow
@pytest.mark.parametrize(("columns", "rows"), [(80, 24), (0, 0)], ids=["80x24", "no-size"])
def test_one_clean_line_per_epoch_and_a_drawn_bar(
    small_charcnn_data: Path, tmp_path: Path, columns: int, rows: int
) -> None:
    out = tmp_path / "bundle"
    code, raw = _run_on_pty(tiny_train_args(small_charcnn_data, out, quiet=False), columns, rows)
    assert code == 0, raw[-3000:]
    screen = _screen(raw)
    epoch_lines = [line for line in screen if line.startswith("epoch ") and "loss" in line]
    assert [EPOCH_LINE.match(line) is not None for line in epoch_lines] == [True, True], epoch_lines
    assert [m.group(1) for line in epoch_lines if (m := EPOCH_LINE.match(line))] == ["1", "2"]
    assert not [line for line in screen if "%|" in line or "it/s" in line], "a bar was left on screen"
    draws = _bar_draws(raw)
    assert any(d.startswith("epoch 1/2:") for d in draws), "no progress bar was drawn"
    widest = max(len(d) for d in draws)
    # A bar fits the terminal; a terminal that reports no size gets the fallback width, not a blank line.
    assert 40 <= widest < (columns or 100), draws[:3]
    assert Bundle.load(out).spec.training["history"][-1]["epoch"] == 2


@pytest.mark.slow
def test_a_reader_that_stops_early_is_no_failure(small_charcnn_data: Path, tmp_path: Path) -> None:
    """``clsrun train ... | head -1``: the report cannot be printed, but the bundle is written: exit 0."""
    out = tmp_path / "bundle"
    proc = subprocess.Popen(
        [CLSRUN, *tiny_train_args(small_charcnn_data, out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before anything is printed
    err = proc.stderr.read().decode("utf-8", "replace")
    assert proc.wait(timeout=600) == 0, err[-3000:]
    assert "Error" not in err and "Traceback" not in err and "error:" not in err, err[-3000:]
    Bundle.load(out)


BEFORE_TORCH = """
import sys
from clsrun.runtime.cli import app
try:
    app(sys.argv[1:])
except SystemExit as e:
    print("exit", e.code)
print("torch loaded", any(m == "torch" or m.startswith("torch.") for m in sys.modules))
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--text-col", "review"],
            "no column 'review'; columns are 'label', 'text' (choose with --text-col / --label-col)",
        ),
        (["--lr", "0"], "--lr must be a finite number > 0"),
        (["--truncation", "head"], "--truncation applies to BERT"),
        (["--val-split", "0.2", "--val-data", "DATA"], "give either --val-data or --val-split"),
    ],
    ids=["wrong-column", "bad-value", "other-kind-flag", "conflict"],
)
def test_bad_input_fails_before_torch_and_creates_nothing(
    tiny_charcnn_data: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    out = tmp_path / "bundle"
    args = ["train", str(tiny_charcnn_data), "--model", "charcnn", "--out", str(out)]
    args += [str(tiny_charcnn_data) if a == "DATA" else a for a in extra]
    done = subprocess.run(
        [sys.executable, "-c", BEFORE_TORCH, *args], capture_output=True, text=True, timeout=300, env=_env()
    )
    assert done.stdout.split("\n")[:2] == ["exit 2", "torch loaded False"], done.stdout + done.stderr
    assert message in done.stderr
    assert not out.exists()


def test_unreadable_data_fails_before_creating_anything(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_bytes(b'label,text\n"unterminated,quote\nneg,"x\n')
    out = tmp_path / "bundle"
    done = subprocess.run(
        [sys.executable, "-c", BEFORE_TORCH, "train", str(data), "--model", "charcnn", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert done.stdout.split("\n")[:2] == ["exit 2", "torch loaded False"], done.stdout + done.stderr
    assert "cannot be read" in done.stderr or "no rows" in done.stderr, done.stderr
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize(("columns", "rows"), [(80, 24), (0, 0)], ids=["80x24", "no-size"])
def test_predict_draws_its_bar_and_ends_with_one_summary_line(
    toy_bundle: Path, tmp_path: Path, columns: int, rows: int
) -> None:
    src, out = tmp_path / "in.csv", tmp_path / "in.scores.csv"
    src.write_text("text\n" + "".join(f"这个房间很好 {i}\n" for i in range(20_000)), encoding="utf-8")
    code, raw = _run_on_pty(
        ["predict", str(src), "--model", str(toy_bundle), "--out", str(out)], columns, rows
    )
    assert code == 0, raw[-3000:]
    draws = [d for d in _bar_draws(raw) if "scoring" in d]
    assert draws, "no progress bar was drawn"
    assert 40 <= max(len(d) for d in draws) < (columns or 100), draws[:3]
    screen = [line for line in _screen(raw) if line.strip()]
    assert screen[-1].startswith("scored 20,000 rows"), screen[-3:]
    assert out.is_file()
