"""The export gate scores each variant as `clsrun predict` runs it, and `clsrun export` reports it once."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from clsrun.export import export_bundle
from clsrun.runtime.batching import plan_batches
from clsrun.runtime.bundle import Bundle
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.cli import app
from clsrun.runtime.labelled import read_labelled
from clsrun.runtime.variant import Variant

ANY_DROP = 100.0  # tiny validation sets: see test_export_bundle.py


def test_gate_runs_each_variant_with_predicts_runner_threads_streams_and_batches(
    tiny_charcnn_bundle: Path,
) -> None:
    report = export_bundle(tiny_charcnn_bundle, max_accuracy_drop=ANY_DROP)
    bundle = Bundle.load(tiny_charcnn_bundle)
    rows = read_labelled(bundle.path("validation.jsonl.gz"))
    for name in ("fp32", "int8"):
        ran = report.data["variants"][name]["ran"]
        clf = Classifier.load(bundle, Variant(backend="onnx", precision=name))  # what predict opens
        assert (ran["device"], ran["threads"], ran["streams"]) == (
            clf.choice.device,
            clf.threads,
            clf.streams,
        )
        assert ran["batch_tokens"] == clf.batching.batch_tokens
        predictions = clf.predict(rows.texts)
        accuracy = float(np.mean([p == y for p, y in zip(predictions.labels, rows.labels, strict=True)]))
        assert report.variants[name].accuracy == pytest.approx(
            accuracy, abs=1e-6
        )  # the same rows, same result
        tokens = clf.encoder.tokenize(rows.texts)
        assert clf.batching.batch_tokens is not None
        assert ran["batches"] == len(plan_batches(tokens.lengths, clf.batching.batch_tokens))


def test_cli_reports_every_variant_once(tiny_charcnn_bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    args = ["export", str(tiny_charcnn_bundle), "--precision", "fp32,int8", "--max-accuracy-drop", "100"]
    with caplog.at_level(logging.INFO, logger="clsrun"):
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in ("fp32", "int8"):
        mine = [line for line in lines if line.startswith(f"{name} ")]
        assert len(mine) == 1, mine
        assert "gate pass" in mine[0] and "rows/s on cpu" in mine[0] and "first calls included)" in mine[0]
    assert [line for line in lines if line.startswith("  int8 candidates: dynamic accuracy")]  # static tried
    assert not [r for r in caplog.records if r.levelno < logging.WARNING], "variants reported twice"
