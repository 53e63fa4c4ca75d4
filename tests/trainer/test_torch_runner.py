"""The torch scoring backend: a runner plugin on the trainer side, found by the runtime through an entry point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clsrun.runtime.classifier import Classifier
from clsrun.runtime.errors import UsageError
from clsrun.runtime.plugins import runner_plugin
from clsrun.runtime.variant import Variant
from clsrun.trainer.torch_runner import TorchRunner

TEXTS = ["这个房间很好，服务棒", "太差了，讨厌", "it was good", "x" * 100, "好"]


def test_the_runtime_finds_the_torch_runner_through_its_entry_point() -> None:
    assert runner_plugin("torch") is TorchRunner


def test_bf16_is_a_precision_of_the_torch_runner(tiny_charcnn_bundle: Path) -> None:
    fp32 = Classifier.load(tiny_charcnn_bundle, Variant(backend="torch", precision="fp32", threads=1))
    bf16 = Classifier.load(tiny_charcnn_bundle, Variant(backend="torch", precision="bf16", threads=1))
    assert (bf16.choice.backend, bf16.choice.precision, bf16.choice.device) == ("torch", "bf16", "cpu")
    assert bf16.describe()["precision"] == "bf16"
    a, b = fp32.predict(TEXTS), bf16.predict(TEXTS)
    assert b.probs.dtype == np.float32  # logits come back as float32 whatever the weights are
    np.testing.assert_allclose(a.probs, b.probs, atol=0.05)  # bf16 keeps 8 bits of mantissa


def test_auto_on_cpu_is_fp32_and_int8_is_refused(tiny_charcnn_bundle: Path) -> None:
    auto = Classifier.load(tiny_charcnn_bundle, Variant(backend="torch", threads=1))
    assert auto.choice.precision == "fp32" and auto.streams == 1  # one stream with every thread
    with pytest.raises(UsageError, match="--precision int8 is not available with --backend torch on cpu"):
        Classifier.load(tiny_charcnn_bundle, Variant(backend="torch", precision="int8"))


def test_a_never_exported_bundle_runs_on_torch_with_a_hint_to_export(
    tiny_charcnn_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    auto = Classifier.load(tiny_charcnn_bundle, Variant(threads=1))
    assert auto.choice.backend == "torch"
    assert f"note: {tiny_charcnn_bundle} was never exported: it runs as eager PyTorch" in caplog.text
    assert f"run `clsrun export {tiny_charcnn_bundle}` once first" in caplog.text
