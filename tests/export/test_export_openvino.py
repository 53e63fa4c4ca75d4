"""``clsrun export --precision ...,ov-int8``: OpenVINO IR + NNCF int8, gated through the runtime's OpenVINO
runner, installed in the bundle, timed for ``--backend auto``; and refused when wrong."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import pytest

import clsrun.export.openvino as ov_export
from clsrun.export import ExportOptions, Int8Options, export_bundle
from clsrun.runtime.bundle import Bundle
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.errors import AccuracyGateError
from clsrun.runtime.labelled import read_labelled
from clsrun.runtime.speeds import cpu_key
from clsrun.runtime.variant import Variant, choose

ANY_DROP = 100.0  # tiny validation sets: one flipped row is 7-8 points (see test_export_bundle.py)
SMALL = Int8Options(calibration_rows=16)


@pytest.fixture
def bert_bundle(tiny_bert_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bert_bundle, tmp_path / "bert_bundle"))


def _validation_texts(root: Path) -> list[str]:
    return read_labelled(root / "validation.jsonl.gz").texts


def _check_installed(root: Path, names: tuple[str, ...]) -> Bundle:
    bundle = Bundle.load(root)  # every file hashed, the IR weights included
    for name in names:
        entry = (bundle.export_report() or {})["variants"][name]
        assert entry["passed"] and entry["gate_passed"], entry
        xml = entry["file"]
        assert bundle.has(xml) and bundle.has(xml[: -len(".xml")] + ".bin")
        assert entry["provider"].startswith("openvino-")
    assert not any(p.name.startswith(".tmp") for p in root.rglob("*"))
    return bundle


def test_tiny_bert_exports_a_gated_openvino_int8_variant_that_predict_runs(bert_bundle: Path) -> None:
    options = ExportOptions(("fp32", "int8", "ov-int8"), max_accuracy_drop=ANY_DROP, int8=SMALL)
    report = export_bundle(bert_bundle, options)
    assert set(report.passed) == {"fp32", "int8", "ov-int8"}
    quantization = report.data["variants"]["ov-int8"]["quantization"]
    assert quantization["method"] == "nncf-ptq" and quantization["float_head"]  # the head stays float
    bundle = _check_installed(bert_bundle, ("ov-int8",))
    speeds = report.data["speeds"]
    assert speeds["cpu"] == cpu_key() and set(speeds["rows_per_s"]) == {
        "onnx-fp32",
        "onnx-int8",
        "openvino-int8",
    }
    auto = choose(bundle)  # measured at export on this CPU: the fastest of the three runs
    best = max(speeds["rows_per_s"], key=speeds["rows_per_s"].get)
    assert auto.key == best and "measured at export on this CPU" in auto.reason
    texts = _validation_texts(bert_bundle)
    ov_probs = Classifier.load(bundle, Variant(backend="openvino", threads=2)).predict(texts).probs
    fp32_probs = (
        Classifier.load(bundle, Variant(backend="onnx", precision="fp32", threads=1)).predict(texts).probs
    )
    assert np.abs(ov_probs - fp32_probs).max() < 0.2  # int8 of a tiny random BERT: close, not equal
    assert "ov-int8 passed  openvino/model.int8.xml" in report.to_text()


def test_tiny_charcnn_exports_openvino_fp32_and_int8(tiny_charcnn_bundle: Path) -> None:
    options = ExportOptions(("fp32", "ov-fp32", "ov-int8"), max_accuracy_drop=ANY_DROP, int8=SMALL)
    report = export_bundle(tiny_charcnn_bundle, options)
    assert set(report.passed) == {"fp32", "ov-fp32", "ov-int8"}
    assert report.variants["ov-fp32"].max_abs_logit_diff < 1e-3  # same graph, another engine
    bundle = _check_installed(tiny_charcnn_bundle, ("ov-fp32", "ov-int8"))
    texts = _validation_texts(tiny_charcnn_bundle)
    onnx = Classifier.load(bundle, Variant(backend="onnx", precision="fp32", threads=1)).predict(texts)
    ov_fp32 = Classifier.load(bundle, Variant(backend="openvino", precision="fp32", threads=2)).predict(texts)
    np.testing.assert_allclose(ov_fp32.probs, onnx.probs, atol=1e-4)


def _reverse_labels(path: Path) -> None:
    """Make an OpenVINO IR classifier wrong on purpose: its logits come out in reversed label order."""
    import openvino.opset13 as ops

    model = ov.Core().read_model(str(path))
    logits = model.get_results()[0].input_value(0)
    n_labels = logits.get_partial_shape()[1].get_length()
    flipped = ops.gather(logits, ops.constant(np.arange(n_labels)[::-1].copy()), ops.constant(1))
    wrong = ov.Model([flipped], model.get_parameters(), "reversed")
    wrong.outputs[0].get_tensor().set_names({"logits"})
    path.with_suffix(".bin").unlink()
    ov.save_model(wrong, str(path), compress_to_fp16=False)


def test_a_wrong_openvino_int8_variant_is_refused_and_removed(
    tiny_charcnn_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    self_labelled: Callable[[Path, Path], Path],
) -> None:
    real = ov_export._quantize

    def broken(ir: Path, target: Path, gate: object, opts: Int8Options) -> dict[str, object]:
        info = real(ir, target, gate, opts)  # type: ignore[arg-type]
        _reverse_labels(target)
        return info

    monkeypatch.setattr(ov_export, "_quantize", broken)
    eval_data = self_labelled(tiny_charcnn_bundle, tmp_path / "eval.jsonl")
    options = ExportOptions(("fp32", "ov-int8"), eval_data=eval_data, int8=SMALL)
    with pytest.raises(AccuracyGateError, match=r"ov-int8 \(openvino/model.int8.xml\): accuracy drops"):
        export_bundle(tiny_charcnn_bundle, options)
    assert not (tiny_charcnn_bundle / "openvino/model.int8.xml").exists()
    report = Bundle.load(tiny_charcnn_bundle).export_report()
    assert report is not None
    entry = report["variants"]["ov-int8"]
    assert entry["passed"] is False and entry["kept"] is False and entry["label_agreement"] < 1.0
    data = json.dumps(report)
    assert "openvino-int8" not in data  # a refused variant is never timed for auto


def _ov_fp32_provider(bundle: Bundle) -> str:
    clf = Classifier.load(bundle, Variant(backend="openvino", precision="fp32", threads=1))
    return str(clf.runner.providers[0])


def test_on_a_cpu_with_bf16_a_variant_is_gated_again_in_bf16_and_runs_so_where_it_passed(
    tiny_charcnn_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clsrun.runtime.ov_runner as ov_runner

    # This CPU has no bf16, so OpenVINO computes f32 whatever the hint: what is tested is who asks for what.
    monkeypatch.setattr(ov_runner, "bf16_here", lambda core=None: True)
    report = export_bundle(
        tiny_charcnn_bundle, ExportOptions(("fp32", "ov-fp32"), max_accuracy_drop=ANY_DROP)
    )
    bf16 = report.data["variants"]["ov-fp32"]["bf16"]
    assert bf16["passed"] is True and bf16["label_agreement"] == 1.0 and bf16["accuracy"] is not None
    bundle = Bundle.load(tiny_charcnn_bundle)
    assert _ov_fp32_provider(bundle).endswith("-CPU-bf16")
    monkeypatch.setattr(ov_runner, "bf16_here", lambda core=None: False)  # the same bundle on a CPU without
    assert _ov_fp32_provider(bundle).endswith("-CPU-f32")


def test_a_bf16_pass_the_gate_refuses_leaves_the_variant_in_f32(
    tiny_charcnn_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clsrun.export.gate as gate_module
    import clsrun.runtime.ov_runner as ov_runner

    monkeypatch.setattr(ov_runner, "bf16_here", lambda core=None: True)
    real = gate_module.run_candidate

    def wrong_in_bf16(*args: Any, inference_precision: str | None = None) -> gate_module.Scored:
        scored = real(*args, inference_precision=inference_precision)
        if inference_precision == "bf16":
            scored.logits = scored.logits[
                :, ::-1
            ].copy()  # labels reversed: what a broken bf16 kernel might do
        return scored

    monkeypatch.setattr(gate_module, "run_candidate", wrong_in_bf16)
    report = export_bundle(tiny_charcnn_bundle, ExportOptions(("fp32", "ov-fp32"), max_accuracy_drop=1.0))
    entry = report.data["variants"]["ov-fp32"]
    assert entry["passed"] is True and entry["bf16"]["passed"] is False  # refused in bf16, kept in f32
    assert entry["bf16"]["label_agreement"] < 1.0 and entry["bf16"]["reason"]
    assert _ov_fp32_provider(Bundle.load(tiny_charcnn_bundle)).endswith("-CPU-f32")


def test_on_a_cpu_without_bf16_no_bf16_pass_is_made(tiny_charcnn_bundle: Path) -> None:
    report = export_bundle(
        tiny_charcnn_bundle, ExportOptions(("fp32", "ov-fp32"), max_accuracy_drop=ANY_DROP)
    )
    assert "bf16" not in report.data["variants"]["ov-fp32"]  # this CPU: OpenVINO lists no BF16
    assert _ov_fp32_provider(Bundle.load(tiny_charcnn_bundle)).endswith("-CPU-f32")
