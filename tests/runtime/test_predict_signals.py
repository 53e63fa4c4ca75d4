"""SIGINT/SIGTERM/SIGHUP and concurrent runs against real `clsrun predict` processes, and the stop paths in-process.

A signal is placed at a known point without timing: the process is frozen with SIGSTOP once it reached
the point (its lock taken, its first window journaled, its output published), the signal is sent while
it is frozen and delivered when SIGCONT resumes it. A signal during start-up is sent while the process
has the stop signals blocked (as a launcher may): it is delivered the moment clsrun installs its handlers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from clsrun.runtime import pipeline
from clsrun.runtime.batching import BatchOptions
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.errors import Interrupted
from clsrun.runtime.outlock import lock_path
from clsrun.runtime.partial import JOURNAL_FILE, PartialOutput
from clsrun.runtime.predict import predict_file
from clsrun.runtime.score import OutputOptions, score_file
from clsrun.runtime.stopping import StopRequest
from clsrun.runtime.variant import Variant

WINDOW = 500


def _input(path: Path, n: int = 40 * WINDOW) -> Path:
    rng = np.random.default_rng(5)
    pool = ["g" * k + "b" * (k % 4) + "好差xy"[k % 4] for k in range(1, 40)] + ["", "  "]
    pacsv.write_csv(pa.table({"text": [pool[i] for i in rng.integers(0, len(pool), size=n)]}), path)
    return path


def _reference(src: Path, bundle: Path, out: Path) -> bytes:
    return score_file(
        src, out, Classifier.load(bundle, batching=BatchOptions(window=WINDOW))
    ).output.read_bytes()


def _clsrun(src: Path, out: Path, bundle: Path, *extra: str, blocked: bool = False) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "clsrun", "predict", str(src), "--out", str(out), "--model", str(bundle)]
    block = (
        (lambda: signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]))
        if blocked
        else None
    )
    return subprocess.Popen(
        [*cmd, "--window", str(WINDOW), "--quiet", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=block,  # only blocks two signals: safe in the forked child
    )


def _wait_for(proc: subprocess.Popen[str], reached: Callable[[], bool]) -> None:
    """Poll until ``reached()``, then freeze ``proc`` (SIGSTOP) right there."""
    deadline = time.monotonic() + 120
    while not reached():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"never reached the point (exit {proc.poll()}): {proc.communicate()[1][-2000:]}")
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGSTOP)


def _signal_frozen(proc: subprocess.Popen[str], signum: int) -> tuple[int, list[str]]:
    """Send ``signum`` to the frozen ``proc``, let it go on, and return its exit code and stderr lines."""
    os.kill(proc.pid, signum)
    os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, [line for line in err.splitlines() if line.strip()]


def _beside(out: Path) -> list[str]:
    """What clsrun leaves next to ``out`` besides the output and its manifest."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}"))


def _journaled(out: Path) -> int:
    journal = PartialOutput.folder_for(out) / JOURNAL_FILE
    return journal.read_text(encoding="utf-8").count("\n") if journal.is_file() else 0


def test_a_second_run_on_the_same_out_is_refused_and_the_first_completes(
    tmp_path: Path, toy_bundle: Path
) -> None:
    src, other = _input(tmp_path / "in.csv"), _input(tmp_path / "other.csv", 3000)
    ref = _reference(src, toy_bundle, tmp_path / "ref.csv")
    out = tmp_path / "o.csv"
    first = _clsrun(src, out, toy_bundle)

    def holds_lock() -> bool:
        try:
            return json.loads(lock_path(out).read_text(encoding="utf-8"))["pid"] == first.pid
        except (OSError, ValueError, KeyError):
            return False

    _wait_for(first, holds_lock)  # frozen while it holds the lock: a cron overlap, deterministically
    try:
        second = _clsrun(other, out, toy_bundle, "--overwrite")
        _, err = second.communicate(timeout=120)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == 2, err
    assert err.strip().splitlines() == [
        next(
            line
            for line in err.splitlines()
            if line.startswith(f"error: --out {out}: another run is writing it")
        )
    ]
    assert f"(pid {first.pid} on " in err and "clsrun predict" in err
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert out.read_bytes() == ref, "the first run's output is whole and from its own input"
    assert json.loads(out.with_name("o.csv.manifest.json").read_text())["input"] == str(src)
    assert _beside(out) == []


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)  # SIGHUP: the terminal or ssh session of the run went away
def test_a_signal_mid_run_saves_the_rows_and_resume_completes(
    tmp_path: Path, toy_bundle: Path, signum: int, code: int
) -> None:
    src = _input(tmp_path / "in.csv")
    ref = _reference(src, toy_bundle, tmp_path / "ref.csv")
    out = tmp_path / "o.csv"
    proc = _clsrun(src, out, toy_bundle)
    _wait_for(proc, lambda: _journaled(out) >= 1)
    returncode, lines = _signal_frozen(proc, signum)
    assert returncode == code and len(lines) == 1, lines
    name = signal.Signals(signum).name
    assert lines[0].startswith(f"interrupted by {name}: ") and "rows are saved" in lines[0]
    assert "run the same command with --resume to continue from row" in lines[0]
    assert not out.exists() and _beside(out) == [f".{out.name}.partial"]  # no lock, no temporary file
    saved = PartialOutput.checkpointed_rows(out)
    assert f"{saved:,} rows are saved" in lines[0] and 0 < saved < 40 * WINDOW
    resumed = _clsrun(src, out, toy_bundle, "--resume")
    assert resumed.communicate(timeout=120)[1] == "" and resumed.returncode == 0
    assert out.read_bytes() == ref and _beside(out) == []


def test_a_signal_during_start_up_imports_ends_with_one_line(tmp_path: Path, toy_bundle: Path) -> None:
    src, out = _input(tmp_path / "in.csv", 100), tmp_path / "o.csv"
    proc = _clsrun(src, out, toy_bundle, blocked=True)  # pending until clsrun's handlers exist
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert err.strip().splitlines() == ["interrupted by SIGTERM during start-up; nothing was done"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_a_signal_once_the_output_is_published_changes_nothing(tmp_path: Path, toy_bundle: Path) -> None:
    src = _input(tmp_path / "in.csv")
    ref = _reference(src, toy_bundle, tmp_path / "ref.csv")
    out = tmp_path / "o.csv"
    proc = _clsrun(src, out, toy_bundle)
    _wait_for(proc, out.exists)  # renamed into place: the run is complete
    returncode, lines = _signal_frozen(proc, signal.SIGINT)
    assert returncode == 0 and lines == [], lines
    assert out.read_bytes() == ref and _beside(out) == []
    assert out.with_name("o.csv.manifest.json").is_file()


# -- the same paths in-process, where a stop can be placed exactly ---------------------------------


def test_a_stop_during_the_final_assembly_leaves_a_resumable_checkpoint(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed run assembles its output from the parts at the end; a stop there keeps the checkpoint."""
    src = _input(tmp_path / "in.csv", 10 * WINDOW)
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=WINDOW))
    ref = score_file(src, tmp_path / "ref.parquet", clf)
    out, stop = tmp_path / "o.parquet", StopRequest()
    add, tables = PartialOutput.add, PartialOutput.tables

    def stop_after_the_first_window(self: PartialOutput, *args: Any, **kwargs: Any) -> Any:
        record = add(self, *args, **kwargs)
        stop.set(signal.SIGINT)
        return record

    def stop_after_the_first_part(self: PartialOutput) -> Any:
        for i, table in enumerate(tables(self)):
            yield table
            if i == 0:
                stop.set(signal.SIGTERM)

    with monkeypatch.context() as m:
        m.setattr(PartialOutput, "add", stop_after_the_first_window)
        with pytest.raises(Interrupted):
            score_file(src, out, clf, stop=stop)
    stop = StopRequest()
    with monkeypatch.context() as m:
        m.setattr(PartialOutput, "tables", stop_after_the_first_part)
        with pytest.raises(Interrupted, match=rf"SIGTERM: {10 * WINDOW:,} rows are saved") as caught:
            score_file(src, out, clf, stop=stop, options=OutputOptions(resume=True))
    assert caught.value.exit_code == 143
    assert not out.exists() and _beside(out) == [f".{out.name}.partial"]
    assert not [p for p in PartialOutput.folder_for(out).iterdir() if p.name.endswith(".tmp")]
    result = score_file(src, out, clf, options=OutputOptions(resume=True))
    assert out.read_bytes() == ref.output.read_bytes() and result.manifest["resumed_from_row"] == 10 * WINDOW


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_a_stop_after_the_last_window_leaves_no_output_and_a_resumable_checkpoint(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """A run from the first row writes its output as the windows are written and publishes it at the end;
    a stop between the last window and publishing leaves no output, no temporary file, and a checkpoint
    whose resumed (assembled) output is the uninterrupted run's, byte for byte."""
    src = _input(tmp_path / "in.csv", 10 * WINDOW)
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=WINDOW))
    ref = score_file(src, tmp_path / f"ref.{suffix}", clf)
    out, stop = tmp_path / f"o.{suffix}", StopRequest()
    run = pipeline.Pipeline.run

    def stop_once_run(self: pipeline.Pipeline, *args: Any, **kwargs: Any) -> None:
        run(self, *args, **kwargs)
        stop.set(signal.SIGTERM)

    with monkeypatch.context() as m:
        m.setattr(pipeline.Pipeline, "run", stop_once_run)
        with pytest.raises(Interrupted, match=rf"SIGTERM: {10 * WINDOW:,} rows are saved"):
            score_file(src, out, clf, stop=stop)
    assert not out.exists() and _beside(out) == [f".{out.name}.partial"]
    assert not [p for p in PartialOutput.folder_for(out).iterdir() if p.name.endswith(".tmp")]
    result = score_file(src, out, clf, options=OutputOptions(resume=True))
    assert result.manifest["resumed_from_row"] == 10 * WINDOW
    assert out.read_bytes() == ref.output.read_bytes()


def test_a_stop_before_the_model_loads_writes_nothing(tmp_path: Path, toy_bundle: Path) -> None:
    src, stop = _input(tmp_path / "in.csv", 100), StopRequest()
    stop.set(signal.SIGINT)
    with pytest.raises(Interrupted, match="interrupted by SIGINT before scoring started") as caught:
        predict_file(src, tmp_path / "o.csv", toy_bundle, stop=stop)
    assert caught.value.exit_code == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


class _StuckRunner:
    """A runner whose third call never returns (until ``release``): a stage stuck in the model."""

    def __init__(self, runner: Any) -> None:
        self.runner, self.providers = runner, runner.providers
        self.calls, self.release = 0, threading.Event()

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        self.calls += 1
        if self.calls == 3:
            self.release.wait()
        return np.asarray(self.runner.run(inputs))


def test_a_stuck_stage_does_not_hang_a_stopped_run(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "STOP_GRACE_S", 0.5)
    src, out, stop = _input(tmp_path / "in.csv", 10 * WINDOW), tmp_path / "o.csv", StopRequest()
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=WINDOW, batch_tokens=2000))
    stuck = _StuckRunner(clf.runner)
    stopper = threading.Thread(target=lambda: (time.sleep(0.5), stop.set(signal.SIGTERM)), daemon=True)
    stopper.start()
    try:
        with pytest.raises(Interrupted, match=r"clsrun-infer-0 thread\(s\) did not stop in time"):
            score_file(src, out, dataclasses.replace(clf, runner=stuck), stop=stop)
    finally:
        stuck.release.set()
    assert not out.exists() and not lock_path(out).exists()


def test_worker_threads_import_nothing(tmp_path: Path, toy_bundle: Path) -> None:
    """Whatever the stages import on first use is imported before they start (no first import in a thread)."""
    texts: list[str | None] = ["ggg 好", "", None, "x" * 100, "=b", "差差"] * 300
    pacsv.write_csv(pa.table({"text": texts}), tmp_path / "in.csv")
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8"
    )
    script = textwrap.dedent(
        f"""
        import sys, threading
        from clsrun.runtime.batching import BatchOptions
        from clsrun.runtime.classifier import Classifier
        from clsrun.runtime.score import OutputOptions, score_file
        from clsrun.runtime.variant import Variant
        clf = Classifier.load({str(toy_bundle)!r}, Variant(threads=2), BatchOptions(window=200))
        seen = set()
        def hook(event, args):
            if event == "import" and threading.current_thread().name.startswith("clsrun-"):
                seen.add((threading.current_thread().name, args[0]))
        sys.addaudithook(hook)
        for src, out in [("in.csv", "o.jsonl"), ("in.jsonl", "o.parquet"), ("in.csv", "o.csv")]:
            score_file(src, out, clf, options=OutputOptions(probs=True))
        print(sorted(seen))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
