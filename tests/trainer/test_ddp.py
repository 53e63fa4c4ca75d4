"""The same `clsrun train` command under ``torchrun --nproc-per-node 2`` (CPU, gloo): one verified bundle.

A real torchrun launch of two processes; the tiny random BERT of conftest keeps it to seconds of training
(most of the time is two Python processes importing torch and transformers).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clsrun.runtime.bundle import Bundle


def _torchrun_train(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clsrun = Path(sys.executable).parent / "clsrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return subprocess.run(
        [*command, str(clsrun), "train", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.slow
@pytest.mark.parametrize("freeze", [False, True], ids=["fine-tune", "frozen"])
def test_torchrun_two_processes_write_one_bundle(
    tiny_bert_checkpoint: Path, tiny_bert_data: Path, tmp_path: Path, freeze: bool
) -> None:
    out = tmp_path / "bundle"
    args = [
        str(tiny_bert_data),
        "--model",
        str(tiny_bert_checkpoint),
        "--out",
        str(out),
        "--max-length",
        "32",
    ]
    args += ["--val-split", "0.25", "--quiet", "--device", "cpu"]
    args += (
        ["--freeze-encoder"]
        if freeze
        else ["--pooling", "mean", "--epochs", "6", "--lr", "3e-3", "--batch-size", "4"]
    )
    done = _torchrun_train(args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    bundle = Bundle.load(out)
    assert bundle.spec.training["metrics"]["accuracy"] >= 0.75
    # Only rank 0 writes: one report on stdout, one TensorBoard event file, no stray temporary files.
    assert done.stdout.count("confusion matrix") == 1, done.stdout
    assert len(list((out / "logs").glob("events.out.tfevents.*"))) == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]
