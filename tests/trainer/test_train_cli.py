"""`clsrun train`: a bundle with metrics from one command; clear exit-2 errors for bad options."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clsrun.runtime.bundle import Bundle
from clsrun.runtime.cli import app

FAST = [
    "--epochs",
    "2",
    "--batch-size",
    "16",
    "--max-length",
    "32",
    "--lr",
    "1e-2",
    "--embed-dim",
    "8",
    "--channels",
    "8,8",
    "--kernel-sizes",
    "3,3",
    "--quiet",
]


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    """``train DATA --model charcnn --out OUT`` and the fast tiny-model settings, then ``extra``."""
    return ["train", str(data), "--model", "charcnn", "--out", str(out), *FAST, *extra]


def test_train_writes_a_verified_bundle_with_metrics(tiny_charcnn_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    result = CliRunner().invoke(app, _args(tiny_charcnn_data, out))
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "confusion matrix" in result.stdout
    bundle = Bundle.load(out)
    training = bundle.spec.training
    assert training["hyperparameters"]["epochs"] == 2
    assert training["hyperparameters"]["charcnn"]["channels"] == [8, 8]
    assert training["val_rows"] == 6 and training["train_rows"] == 54  # stratified 10% of 60
    assert len(training["history"]) >= 1 and training["best_epoch"] >= 1
    assert set(training["metrics"]) >= {"accuracy", "macro_f1", "weighted_f1", "per_class"}
    assert (out / "confusion_matrix.png").stat().st_size > 0
    assert list((out / "logs").glob("events.out.tfevents.*")), "TensorBoard logs expected in BUNDLE/logs"
    assert "logs" not in "".join(bundle.files)  # logs are a record, not part of the model
    lines = (out / "confusion_matrix.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "true\\predicted,neg,pos"
    sample = training["train_text_sample"]  # the hash sample `clsrun eval` checks its data against
    assert sample["one_in"] == 1 and 0 < len(sample["hashes"]) <= 16 * 54
    evaluated = CliRunner().invoke(app, ["eval", str(out), str(tiny_charcnn_data)])
    assert (
        evaluated.exit_code == 0 and "is the file this model was trained on (same sha256" in evaluated.output
    )

    again = CliRunner().invoke(app, _args(tiny_charcnn_data, out))
    assert again.exit_code == 2 and "--force" in again.output
    forced = CliRunner().invoke(
        app, _args(tiny_charcnn_data, out, "--force", "--no-logs", "--class-weights", "auto", "--epochs", "1")
    )
    assert forced.exit_code == 0, forced.output
    data = json.loads((out / "clsrun.json").read_text(encoding="utf-8"))
    assert data["training"]["hyperparameters"]["class_weights"] == "auto"
    assert not (out / "logs").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "0"], "--lr must be a finite number > 0"),
        (["--lr", "inf"], "--lr must be a finite number > 0"),
        (["--channels", "64,x"], "--channels must be comma-separated integers"),
        (["--channels", "8,8", "--kernel-sizes", "3"], "--kernel-sizes must give one kernel per --channels"),
        (["--truncation", "head-tail"], "--truncation applies to BERT"),
        (
            ["--truncation", "head-tail", "--freeze-encoder"],
            "--truncation and --freeze-encoder apply to BERT",
        ),
        (["--pooling", "cls"], "--pooling for charcnn must be one of max, max+mean"),
        (["--class-weights", "balanced"], "--class-weights must be 'none' or 'auto'"),
        (["--val-split", "1.5"], "--val-split must be between 0 and 1"),
        (["--seed", "-1"], "--seed must be a whole number from 0 to 4294967295"),  # was blamed on --val-split
        (["--warmup", "1e9"], "--warmup 1,000,000,000 steps is more than the whole training's"),
        (["--warmup", "nan"], "--warmup must be >= 0: a fraction < 1 or a whole step count, got nan"),
    ],
)
def test_bad_options_exit_2_naming_the_flag(
    tiny_charcnn_data: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(
        app, ["train", str(tiny_charcnn_data), "--model", "charcnn", "--out", str(tmp_path / "b"), *args]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_a_folder_that_is_not_a_bundle_is_never_deleted(tiny_charcnn_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    result = CliRunner().invoke(
        app, ["train", str(tiny_charcnn_data), "--model", "charcnn", "--out", str(out), "--force"]
    )
    assert result.exit_code == 2 and "clsrun never deletes it" in result.output
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me"


@pytest.mark.slow
def test_torchrun_two_cpu_processes_write_one_bundle(tiny_charcnn_data: Path, tmp_path: Path) -> None:
    """DistributedDataParallel on CPU (gloo): two processes train together, only rank 0 writes the bundle."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clsrun = Path(sys.executable).parent / "clsrun"
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port)]
    cmd += [str(clsrun), *_args(tiny_charcnn_data, out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("epoch 1/2:") == 1  # per-epoch lines come from rank 0 only
    bundle = Bundle.load(out)
    assert bundle.spec.training["val_rows"] == 6
    assert len(bundle.spec.training["history"]) >= 1


def test_weights_that_are_not_numbers_are_never_saved(tmp_path: Path) -> None:
    import torch

    from clsrun.runtime.errors import TrainingError
    from clsrun.trainer.bundle_writer import save_weights

    state = {"embed.weight": torch.ones(3, 2), "fc.bias": torch.tensor([0.0, float("nan")])}
    with pytest.raises(
        TrainingError, match=r"training diverged: 1 weight tensor\(s\) hold NaN or inf \(fc\.bias"
    ):
        save_weights(state, tmp_path)
    assert list(tmp_path.iterdir()) == []
    save_weights({"embed.weight": torch.ones(3, 2), "step": torch.tensor(3)}, tmp_path)  # finite: saved
    assert (tmp_path / "model.safetensors").is_file()


def test_settings_a_run_makes_no_use_of_are_named_and_only_those(
    tiny_charcnn_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, tiny_bert_checkpoint: Path
) -> None:
    """``--fit logreg`` named --device, never given; ``--fit torch --logreg-c`` and ``--restarts`` under
    another schedule were ignored silently; BERT ``--max-length 2`` failed after torch loaded, exit 3."""
    runner = CliRunner()

    def said(*args: str) -> str:
        caplog.clear()
        out = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
        with caplog.at_level("WARNING", logger="clsrun"):
            result = runner.invoke(
                app, ["train", str(tiny_charcnn_data), "--out", str(out), "--quiet", *args]
            )
        assert result.exit_code == 0, result.output
        return caplog.text

    assert "unused" not in said("--model", "ngram", "--fit", "logreg")
    assert "--logreg-c: unused with --fit torch" in said(
        "--model", "ngram", "--fit", "torch", "--logreg-c", "2"
    )
    restarts = said("--model", "charcnn", "--epochs", "1", "--restarts", "3")
    assert "--restarts: unused with --schedule linear" in restarts
    bert = runner.invoke(
        app, ["train", str(tiny_charcnn_data), "--model", str(tiny_bert_checkpoint), "--out", str(tmp_path / "t"),
              "--max-length", "2"],
    )  # fmt: skip
    assert bert.exit_code == 2 and "--max-length 2: a BERT model needs at least 3" in bert.output


def test_train_help_states_the_defaults_the_trainer_uses() -> None:
    """Options whose default depends on the model kind show none in --help (it is None there): the help
    text names them, and this keeps those figures equal to the ones training runs with."""
    import typer

    from clsrun.trainer.config import TrainConfig
    from clsrun.trainer.options import BERT_DEFAULTS, CHARCNN_DEFAULTS, FROZEN_DEFAULTS, NGRAM_DEFAULTS

    params = {p.name: p.help or "" for p in typer.main.get_command(app).commands["train"].params}  # type: ignore[attr-defined]

    def g(value: object) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    for key in ("batch_size", "eval_batch_size", "warmup", "lr", "epochs"):
        said = params[key]
        for kind, defaults in (
            ("n-gram", NGRAM_DEFAULTS),
            ("char-CNN", CHARCNN_DEFAULTS),
            ("BERT", BERT_DEFAULTS),
        ):
            found = re.search(rf"{kind} ([0-9.e+-]+)[,;).]", said)
            assert found is not None and float(found.group(1)) == defaults[key], (key, kind, said)
    assert f"--freeze-encoder {FROZEN_DEFAULTS['batch_size']}" in params["batch_size"]
    assert (
        f"default {BERT_DEFAULTS['early_stopping_patience']}, --freeze-encoder {FROZEN_DEFAULTS['early_stopping_patience']}"
        in params["early_stopping_patience"]
    )
    fields = {f.name: f.default for f in __import__("dataclasses").fields(TrainConfig)}
    assert (
        f"n-gram {g(NGRAM_DEFAULTS['weight_decay'])}, else {g(fields['weight_decay'])}"
        in params["weight_decay"]
    )
    assert f"{fields['schedule']} (default)" in params["schedule"]
    for key in ("restarts", "grad_accum", "seed", "num_workers"):
        assert f"default {fields[key]}" in params[key], key
