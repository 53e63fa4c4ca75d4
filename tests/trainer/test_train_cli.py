"""`clsrun train`: a bundle with metrics from one command; clear exit-2 errors for bad options."""

from __future__ import annotations

import json
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


def test_train_writes_a_verified_bundle_with_metrics(tiny_charcnn_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    result = CliRunner().invoke(
        app, ["train", str(tiny_charcnn_data), "--model", "charcnn", "--out", str(out), *FAST]
    )
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

    again = CliRunner().invoke(
        app, ["train", str(tiny_charcnn_data), "--model", "charcnn", "--out", str(out), *FAST]
    )
    assert again.exit_code == 2 and "--force" in again.output
    forced = CliRunner().invoke(
        app,
        [
            "train",
            str(tiny_charcnn_data),
            "--model",
            "charcnn",
            "--out",
            str(out),
            "--force",
            "--no-logs",
            *FAST,
            "--class-weights",
            "auto",
            "--epochs",
            "1",
        ],
    )
    assert forced.exit_code == 0, forced.output
    data = json.loads((out / "clsrun.json").read_text(encoding="utf-8"))
    assert data["training"]["hyperparameters"]["class_weights"] == "auto"
    assert not (out / "logs").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "0"], "--lr must be > 0"),
        (["--channels", "64,x"], "--channels must be comma-separated integers"),
        (["--channels", "8,8", "--kernel-sizes", "3"], "--kernel-sizes must give one kernel per --channels"),
        (["--pooling", "mean"], "--pooling, --truncation and --freeze-encoder apply to BERT"),
        (["--class-weights", "balanced"], "--class-weights must be 'none' or 'auto'"),
        (["--val-split", "1.5"], "--val-split must be between 0 and 1"),
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
    assert result.exit_code == 2 and "refusing to delete" in result.output
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me"
