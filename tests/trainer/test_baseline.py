"""The TF-IDF + logistic-regression baseline in every training report: stdout, clsrun.json, TensorBoard,
a one-line warning when the model does not beat it, and ``--no-baseline``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from clsrun.runtime.bundle import Bundle, Normalization
from clsrun.runtime.cli import app
from clsrun.runtime.metrics import report_from_indices
from clsrun.trainer import baseline
from clsrun.trainer.baseline import BaselineResult, BaselineRun, comparison, shortfall
from clsrun.trainer.config import TrainConfig
from clsrun.trainer.data import load_split

CHARCNN = [
    "--model",
    "charcnn",
    "--epochs",
    "1",
    "--embed-dim",
    "8",
    "--channels",
    "8",
    "--kernel-sizes",
    "3",
]


def _baseline(accuracy: float, macro_f1: float) -> BaselineResult:
    return BaselineResult(
        "TfidfVectorizer(char 1-3) + LogisticRegression(C=10)", accuracy, macro_f1, 10, 1.0, 1.0
    )


def _tensorboard_texts(logs: Path) -> dict[str, str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logs), size_guidance={"tensors": 0}).Reload()
    return {
        tag: events.Tensors(tag)[-1].tensor_proto.string_val[0].decode() for tag in events.Tags()["tensors"]
    }


def test_every_training_report_shows_and_records_the_baseline(
    small_charcnn_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "b"
    result = CliRunner().invoke(app, ["train", str(small_charcnn_data), "--out", str(out), *CHARCNN])
    assert result.exit_code == 0, result.output
    assert "model (charcnn)" in result.stdout and "TF-IDF + logistic regression" in result.stdout
    assert "TfidfVectorizer(char 1-3, sublinear_tf, min_df=2) + LogisticRegression(C=10)" in result.stdout
    recorded = Bundle.load(out).spec.training["baseline"]  # clsrun.json rehashed after the addition
    assert recorded["compared_on"] == "accuracy" and 0.0 <= recorded["accuracy"] <= 1.0
    assert recorded["features"] > 0 and recorded["beaten"] == (
        Bundle.load(out).spec.training["metrics"]["accuracy"] > recorded["accuracy"]
    )
    texts = _tensorboard_texts(out / "logs" / "baseline")  # a run of its own beside the training run
    assert any("baseline" in tag for tag in texts)
    assert "TF-IDF + logistic regression" in next(v for k, v in texts.items() if "baseline" in k)


def test_no_baseline_skips_it(small_charcnn_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    args = ["train", str(small_charcnn_data), "--out", str(out), *CHARCNN, "--no-baseline", "--no-logs"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "TF-IDF" not in result.output and "baseline" not in Bundle.load(out).spec.training


def test_the_warning_is_one_line_and_only_when_the_model_does_not_beat_the_baseline() -> None:
    report = report_from_indices([0, 0, 1, 1], [0, 0, 1, 0], ["neg", "pos"])  # accuracy 0.75
    assert shortfall(report, _baseline(0.70, 0.70), "accuracy") is None
    warning = shortfall(report, _baseline(0.75, 0.60), "accuracy")
    assert warning is not None and "\n" not in warning
    assert (
        "does not beat the TF-IDF + logistic regression baseline on validation accuracy (0.7500 vs 0.7500)"
        in warning
    )
    assert shortfall(report, _baseline(0.60, 0.80), "macro_f1") is not None  # --class-weights auto: macro-F1
    perfect = report_from_indices([0, 1, 1], [0, 1, 1], ["neg", "pos"])
    assert (
        shortfall(perfect, _baseline(1.0, 1.0), "accuracy") is None
    )  # a tie at every row right: no shortfall
    table = comparison(report, _baseline(0.70, 0.65), "ngram")
    assert table.splitlines()[1].split()[:4] == ["model", "(ngram)", "0.7500", "0.7333"]


def test_a_beaten_baseline_does_not_warn_and_a_lost_comparison_does(
    small_charcnn_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from clsrun.trainer import train

    caplog.set_level(logging.WARNING, logger="clsrun.trainer")
    config = {"epochs": 1, "logs": False, "quiet": True}
    options = {"embed_dim": 4, "channels": (4,), "kernel_sizes": (1,)}
    result = train(small_charcnn_data, tmp_path / "b", model="charcnn", config=config, options=options)
    assert result.baseline is not None and result.report is not None
    warned = [r.getMessage() for r in caplog.records if "does not beat" in r.getMessage()]
    assert len(warned) == (0 if result.report.accuracy > result.baseline.accuracy else 1)


def _in_a_process(data: Path, monkeypatch: pytest.MonkeyPatch) -> BaselineRun:
    """A baseline started as a large training set's is: in a worker process."""
    monkeypatch.setattr(baseline, "IN_PROCESS_ROWS", 0)
    split = load_split(data, val_split=0.2, seed=42)
    return BaselineRun.start(split, TrainConfig.for_kind("charcnn"), Normalization())


def test_a_large_training_set_fits_the_baseline_in_its_own_process(
    small_charcnn_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _in_a_process(small_charcnn_data, monkeypatch)
    assert type(run._executor).__name__ == "ProcessPoolExecutor"
    fitted = run.result()
    assert fitted is not None and fitted.accuracy >= 0.9 and np.isfinite(fitted.cpu_seconds)


def test_a_cancelled_baseline_process_is_ended_not_left_to_finish_its_fit(
    small_charcnn_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    run = _in_a_process(small_charcnn_data, monkeypatch)
    future = run._executor.submit(time.sleep, 120)  # the pool's worker busy like a long fit
    workers = list(run._executor._processes.values())  # type: ignore[attr-defined]
    assert workers and all(p.is_alive() for p in workers)
    started = time.perf_counter()
    run.cancel()
    # Polled, not joined: the pool's own management thread reaps its workers too, and a join that loses
    # that race reports a dead process as alive (seen once under load: exit code -9, is_alive() True).
    while any(p.is_alive() for p in workers) and time.perf_counter() - started < 10:
        time.sleep(0.05)
    assert not any(p.is_alive() for p in workers), [(p.pid, p.exitcode) for p in workers]
    assert time.perf_counter() - started < 10
    assert future.cancelled() or future.exception(timeout=10) is not None  # cancelled queued, or failed


_PARENT = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from clsrun.trainer.baseline import exit_with_parent

if __name__ == "__main__":
    pool = ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=exit_with_parent, initargs=(os.getpid(), 0.1)
    )
    pool.submit(time.sleep, 0).result()  # the worker is up (its watch thread started)
    pool.submit(time.sleep, 300)  # busy, like a long fit
    print(*pool._processes, flush=True)
    time.sleep(300)
"""


def test_a_baseline_worker_ends_when_its_training_is_killed_outright(tmp_path: Path) -> None:
    """kill -9 (the OOM killer) of a training left its baseline worker running for good, holding ~230 MB
    and the caller's output pipes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(_PARENT, encoding="utf-8")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    worker = int(parent.stdout.readline().split()[0])
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    started = time.perf_counter()
    while _running(worker) and time.perf_counter() - started < 20:
        time.sleep(0.1)
    assert not _running(worker), f"baseline worker {worker} outlived its killed parent by 20 s"


def _running(pid: int) -> bool:
    """Whether process ``pid`` still runs (an exited one that no one has reaped yet does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
