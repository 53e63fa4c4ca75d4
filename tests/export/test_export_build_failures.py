"""An int8 or fp16 variant whose build fails is refused like a gate failure; fp32 failing stops the export.

Tiny real char-CNN bundles; the failures are injected by monkeypatching the fp16 converter and the
quantizers, which raise :class:`ExportError` as the real ones do on a graph they cannot handle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import clsrun.export.exporter as exporter_module
import clsrun.export.fp16 as fp16_module
import clsrun.export.quantize as quantize_module
from clsrun.export import ExportOptions, ExportReport, Int8Options, export_bundle
from clsrun.runtime.bundle import Bundle
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.cli import app
from clsrun.runtime.errors import AccuracyGateError, ExportError
from clsrun.runtime.variant import Variant

ANY_DROP = 100.0  # tiny validation sets: see test_export_bundle.py
TEXTS = ["这个房间很好，服务很好", "太差了，讨厌", "it was good", "awful room"]


def _fail(message: str) -> Any:
    """A stand-in for a converter or quantizer that raises ``ExportError(message)``, whatever it is given."""

    def fail(*args: Any, **kwargs: Any) -> None:
        raise ExportError(message)

    return fail


@pytest.fixture
def failing_fp16(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fp16 converter fails with a two-line message (converters put graph dumps in theirs)."""
    monkeypatch.setattr(
        fp16_module, "convert_fp16", _fail("float16 conversion failed: KeyError: 'x'\n  node 7")
    )


@pytest.fixture
def failing_int8(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        quantize_module, "quantize_dynamic_int8", _fail("dynamic int8 quantization failed: ValueError: boom")
    )


def _report(root: Path) -> dict[str, Any]:
    return json.loads((root / "onnx/export_report.json").read_text(encoding="utf-8"))


def _assert_refused_unbuilt(entry: dict[str, Any], reason_start: str) -> None:
    assert entry["passed"] is False and entry["gate_passed"] is False
    assert entry["kept"] is False and entry["built"] is False and entry["forced"] is False
    assert entry["reason"].startswith("build failed: " + reason_start)
    assert "\n" not in entry["reason"]
    assert entry["accuracy"] is None and entry["rows_per_s"] is None


def _assert_usable_with_fp32(root: Path) -> None:
    """No staging folder left, hashes verify, and the runtime scores with the installed fp32 file."""
    assert not any(p.name.startswith(".tmp") for p in root.rglob("*"))
    bundle = Bundle.load(root)
    assert bundle.has("onnx/model.onnx")
    clf = Classifier.load(bundle, Variant(backend="onnx", precision="fp32", threads=1))
    predictions = clf.predict(TEXTS)
    assert not any(predictions.errors)
    assert set(predictions.labels) <= set(bundle.labels) and len(predictions.labels) == len(TEXTS)


def test_fp16_build_failure_refuses_fp16_and_installs_the_others(
    tiny_charcnn_bundle: Path, failing_fp16: None
) -> None:
    options = ExportOptions(
        precisions=("fp32", "int8", "fp16"), max_accuracy_drop=ANY_DROP, int8=Int8Options(static=False)
    )
    with pytest.raises(
        AccuracyGateError,
        match=r"refused 1 variant\(s\).*fp16 \(onnx/model.fp16.onnx\): build failed: float16 conversion "
        r"failed: KeyError: 'x' node 7.*--keep-refused cannot keep a variant that was not built",
    ) as caught:
        export_bundle(tiny_charcnn_bundle, options)
    assert "--max-accuracy-drop" not in str(caught.value)  # only build failures: no allowance to change
    assert isinstance(caught.value.report, ExportReport)
    assert caught.value.report.passed == ["fp32", "int8"]

    data = _report(tiny_charcnn_bundle)
    assert data["variants"]["fp32"]["passed"] is True and data["variants"]["fp32"]["kept"] is True
    assert data["variants"]["int8"]["passed"] is True and data["variants"]["int8"]["kept"] is True
    _assert_refused_unbuilt(data["variants"]["fp16"], "float16 conversion failed")
    assert set(data["fusions"]) == {"fp32", "int8"}
    assert (tiny_charcnn_bundle / "onnx/model.int8.onnx").is_file()
    assert not (tiny_charcnn_bundle / "onnx/model.fp16.onnx").exists()
    _assert_usable_with_fp32(tiny_charcnn_bundle)
    # auto: the faster of the two passed variants, as export timed them (fp16 was never built or timed)
    rates = data["speeds"]["rows_per_s"]
    assert set(rates) == {"onnx-fp32", "onnx-int8"}
    assert Classifier.load(tiny_charcnn_bundle, Variant(threads=1)).choice.key == max(rates, key=rates.get)


def test_int8_build_failure_refuses_int8_and_keeps_fp32(
    tiny_charcnn_bundle: Path, failing_int8: None
) -> None:
    with pytest.raises(
        AccuracyGateError,
        match=r"refused 1 variant\(s\).*int8 \(onnx/model.int8.onnx\): build failed: dynamic int8 "
        r"quantization failed: ValueError: boom",
    ):
        export_bundle(tiny_charcnn_bundle, max_accuracy_drop=ANY_DROP)
    data = _report(tiny_charcnn_bundle)
    assert data["variants"]["fp32"]["passed"] is True
    _assert_refused_unbuilt(data["variants"]["int8"], "dynamic int8 quantization failed")
    assert "quantization" not in data["variants"]["int8"]
    assert not (tiny_charcnn_bundle / "onnx/model.int8.onnx").exists()
    _assert_usable_with_fp32(tiny_charcnn_bundle)
    assert (
        Classifier.load(tiny_charcnn_bundle, Variant(threads=1)).choice.precision == "fp32"
    )  # int8 never picked


def test_keep_refused_does_not_keep_a_variant_that_was_not_built(
    tiny_charcnn_bundle: Path, failing_int8: None
) -> None:
    with pytest.raises(AccuracyGateError, match=r"int8 .*build failed"):
        export_bundle(tiny_charcnn_bundle, max_accuracy_drop=ANY_DROP, keep_refused=True)
    int8 = _report(tiny_charcnn_bundle)["variants"]["int8"]
    _assert_refused_unbuilt(int8, "dynamic int8")
    assert not (tiny_charcnn_bundle / "onnx/model.int8.onnx").exists()


def test_a_file_onnxruntime_cannot_run_is_refused_as_not_built(
    tiny_charcnn_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def garbage(src: Path, dst: Path, extra_fp32_ops: tuple[str, ...] = ()) -> None:
        dst.write_bytes(b"not an onnx model")

    monkeypatch.setattr(fp16_module, "convert_fp16", garbage)
    with pytest.raises(
        AccuracyGateError, match=r"fp16 .*build failed: onnxruntime could not run model.fp16.onnx"
    ):
        export_bundle(tiny_charcnn_bundle, precisions=("fp32", "fp16"), max_accuracy_drop=ANY_DROP)
    _assert_refused_unbuilt(_report(tiny_charcnn_bundle)["variants"]["fp16"], "onnxruntime could not run")
    assert not (tiny_charcnn_bundle / "onnx/model.fp16.onnx").exists()
    _assert_usable_with_fp32(tiny_charcnn_bundle)


def test_fp32_build_failure_stops_the_export_and_writes_nothing(
    tiny_charcnn_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exporter_module, "build_fp32", _fail("ONNX export failed: RuntimeError: trace"))
    with pytest.raises(ExportError, match="ONNX export failed") as caught:
        export_bundle(tiny_charcnn_bundle, precisions=("fp32", "int8", "fp16"))
    assert not isinstance(caught.value, AccuracyGateError)
    assert not (tiny_charcnn_bundle / "onnx").exists()
    assert not any(p.name.startswith(".tmp") for p in tiny_charcnn_bundle.rglob("*"))
    Bundle.load(tiny_charcnn_bundle)


def test_static_qdq_failure_falls_back_to_dynamic_int8(
    tiny_charcnn_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        quantize_module,
        "quantize_static_int8",
        _fail("static int8 quantization failed: ValueError: no range"),
    )
    report = export_bundle(tiny_charcnn_bundle, max_accuracy_drop=ANY_DROP)  # static tried for the char-CNN
    assert report.passed == ["fp32", "int8"]
    quantization = _report(tiny_charcnn_bundle)["variants"]["int8"]["quantization"]
    assert quantization["static"] is True and quantization["method"] == "dynamic"
    static = quantization["candidates"]["static"]
    assert static["built"] is False
    assert static["reason"] == "build failed: static int8 quantization failed: ValueError: no range"
    assert quantization["candidates"]["dynamic"]["accuracy"] == report.variants["int8"].accuracy
    assert quantization["candidates"]["calibration_rows"] > 0
    assert (tiny_charcnn_bundle / "onnx/model.int8.onnx").is_file()
    assert not any("static" in p.name or p.name.startswith(".tmp") for p in tiny_charcnn_bundle.rglob("*"))
    Bundle.load(tiny_charcnn_bundle)


def test_cli_lists_the_variant_that_was_not_built_and_exits_non_zero(
    tiny_charcnn_bundle: Path, failing_fp16: None
) -> None:
    args = ["export", str(tiny_charcnn_bundle), "--precision", "fp32,fp16", "--max-accuracy-drop", "100"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 4, result.output  # done: fp32 is in place
    assert "fp32  passed  onnx/model.onnx" in result.output
    assert "fp16  refused (not built)" in result.output
    assert "build failed: float16 conversion failed" in result.output
    assert "error: accuracy gate refused 1 variant(s)" in result.output
