"""The accuracy gate's verdicts on logits, independent of any model."""

from __future__ import annotations

import numpy as np
import pytest

from clsrun.export.gate import build_failure, gate_error, judge
from clsrun.runtime.errors import AccuracyGateError, ExportError

LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0], dtype=np.int64)


def _logits(pred: list[int]) -> np.ndarray:
    out = np.zeros((len(pred), 3), dtype=np.float32)
    out[np.arange(len(pred)), pred] = 5.0
    return out


REFERENCE = _logits(list(LABELS))  # eager model: 100 % accurate


def _judge(name: str, logits: np.ndarray, max_drop: float = 1.0):  # type: ignore[no-untyped-def]
    return judge(
        name, f"onnx/{name}.onnx", logits, REFERENCE, LABELS, max_drop, 0.5, "CPUExecutionProvider", 10
    )


def test_identical_variant_passes_with_full_agreement() -> None:
    result = _judge("int8", REFERENCE + 0.01)
    assert result.passed and result.gate_passed and result.reason is None
    assert result.accuracy == 1.0 and result.label_agreement == 1.0
    assert result.max_abs_logit_diff == pytest.approx(0.01, abs=1e-6)
    assert result.rows_per_s == 20.0


def test_variant_losing_one_row_in_ten_is_refused_at_default_allowance() -> None:
    pred = list(LABELS)
    pred[3] = 1
    result = _judge("int8", _logits(pred))
    assert not result.passed
    assert result.accuracy_drop_pts == pytest.approx(10.0)
    assert result.label_agreement == pytest.approx(0.9)
    assert "accuracy drops 10.00 points (allowed 1)" in (result.reason or "")


def test_larger_allowance_accepts_the_same_variant() -> None:
    pred = list(LABELS)
    pred[3] = 1
    assert _judge("int8", _logits(pred), max_drop=10.0).passed


def test_fp32_must_also_match_logits() -> None:
    """Same labels but logits off by 0.5: fine for int8, an export bug for fp32."""
    shifted = REFERENCE + np.float32(0.5)
    assert _judge("int8", shifted).passed
    result = _judge("fp32", shifted)
    assert not result.passed and "fp32 logits differ" in (result.reason or "")


def test_non_finite_logits_refused() -> None:
    bad = REFERENCE.copy()
    bad[0, 0] = np.nan
    assert "non-finite" in (_judge("fp16", bad).reason or "")


def test_one_error_lists_every_refused_variant() -> None:
    wrong = _logits([1] * len(LABELS))
    results = {
        "fp32": _judge("fp32", REFERENCE),
        "int8": _judge("int8", wrong),
        "fp16": _judge("fp16", wrong),
    }
    error = gate_error(results, rows=10, source="validation.jsonl.gz")
    assert isinstance(error, AccuracyGateError)
    message = str(error)
    assert "refused 2 variant(s)" in message
    assert "int8 (onnx/int8.onnx)" in message and "fp16 (onnx/fp16.onnx)" in message
    assert "fp32" not in message.split(":", 1)[1]
    assert gate_error({"fp32": results["fp32"]}, 10, "x") is None


def test_build_failure_is_refused_unscored_and_listed_with_gate_refusals() -> None:
    failure = build_failure("onnx/fp16.onnx", ExportError("float16 conversion failed:\n  KeyError: 'x'"))
    assert not failure.passed and not failure.gate_passed and not failure.kept and not failure.built
    assert failure.reason == "build failed: float16 conversion failed: KeyError: 'x'"  # one line
    assert failure.accuracy is None and failure.to_json()["accuracy"] is None
    results = {"fp32": _judge("fp32", REFERENCE), "int8": _judge("int8", _logits([1] * 10)), "fp16": failure}
    message = str(gate_error(results, rows=10, source="validation.jsonl.gz"))
    assert "refused 2 variant(s)" in message
    assert "int8 (onnx/int8.onnx): accuracy drops" in message
    assert "fp16 (onnx/fp16.onnx): build failed: float16 conversion failed" in message
    assert "--keep-refused keeps refused variants" in message
    assert "--keep-refused cannot keep a variant that was not built" in message


def test_static_int8_replaces_dynamic_when_it_trails_by_noise_of_at_most_one_gate_row() -> None:
    """Static QDQ five times faster and one row of 400 behind dynamic (0.25 points) was dropped by the
    0.2-point allowance, smaller than one row on any gate under 500 rows."""
    from clsrun.export.gate import VariantResult
    from clsrun.export.int8 import static_allowance_pts, static_wins

    def result(accuracy: float, rows_per_s: float) -> VariantResult:
        return VariantResult("f", True, True, accuracy, 0.0, 1.0, 0.0, None, rows_per_s, "cpu", 1)

    dynamic = result(0.5975, 167.0)
    assert static_wins(result(0.5950, 848.0), dynamic, gate_rows=400)  # one row behind
    assert not static_wins(result(0.5925, 848.0), dynamic, gate_rows=400)  # two rows: a trend
    assert not static_wins(result(0.5975, 100.0), dynamic, gate_rows=400)  # slower
    assert static_allowance_pts(10_000) == 0.2 and static_allowance_pts(179) == pytest.approx(
        0.5587, abs=1e-4
    )


@pytest.mark.parametrize(("variant_right", "passes"), [(80, True), (79, False)])
def test_a_drop_of_exactly_the_allowed_points_passes(variant_right: int, passes: bool) -> None:
    """100 gate rows, eager PyTorch right on 81: a variant right on 80 drops exactly the 1 point allowed
    (float subtraction made it 1.0000000000000009 and refused it), one right on 79 drops 2."""
    labels = np.zeros(100, dtype=np.int64)
    reference = np.tile([[1.0, 0.0]], (100, 1))
    reference[81:] = [0.0, 1.0]
    variant = np.tile([[1.0, 0.0]], (100, 1))
    variant[variant_right:] = [0.0, 1.0]
    result = judge("int8", "m.int8.onnx", variant, reference, labels, 1.0, 1.0, "cpu", 1)
    assert result.passed is passes
    assert result.accuracy_drop_pts == (81 - variant_right)
