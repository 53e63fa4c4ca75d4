"""The OpenVINO variants (``clsrun[openvino]`` to run them, ``nncf`` too to build int8).

- ``ov-fp32``: the fp32 ONNX file export just built, converted to OpenVINO IR (``openvino.convert_model``
  reads clsrun's fused BERT graph as well as the plain char-CNN one) and saved uncompressed, so it keeps
  fp32 weights.
- ``ov-int8``: that IR quantized with NNCF post-training quantization (weights and activations int8),
  calibrated on gate rows spread over all lengths (``gate.calibration_feeds``, as static ONNX int8 is).
  The classifier head stays float: it is one small matmul, so quantizing it gains nothing measurable and
  is where int8 error reaches the logits undamped. BERT is quantized with NNCF's transformer recipe.

Each file is scored by the gate through the runtime's OpenVINO runner (``ov_runner.OvRunner``, what
``clsrun predict --backend openvino`` runs) and judged like every variant; on a CPU that computes bf16, a
variant that passed is scored again with its float parts in bf16 (its report entry's ``bf16``), which the
runtime then uses on CPUs that have it. A missing ``openvino`` or
``nncf``, or a conversion or quantization that raises, is an :class:`ExportError`: the variant is refused
as not built and the others are still exported.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

from clsrun.export.gate import Gate, VariantResult, calibration_feeds, one_line
from clsrun.export.quantize import Int8Options
from clsrun.runtime.errors import ExportError, install_hint

# Operations that end the model's body: the head is what lies between them and the logits.
_BODY_END = frozenset({"MVN", "ReduceMax", "ReduceMean", "ReduceSum", "Concat", "Divide", "Gather"})


def _import(name: str) -> Any:
    """``openvino`` or ``nncf``; :class:`ExportError` naming the extra when it is not installed."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ExportError(f"{name} is not installed: {install_hint(name)}") from e


def _fp32_ir(fp32_onnx: Path, stage: Path) -> Path:
    """The fp32 ONNX file as OpenVINO IR in ``stage`` (converted once per export, reused by int8)."""
    target = stage / "model.ov.xml"
    if target.is_file():
        return target
    ov = _import("openvino")
    try:
        model = ov.convert_model(str(fp32_onnx))
        ov.save_model(model, str(target), compress_to_fp16=False)
    except Exception as e:  # OpenVINO's frontends raise plain RuntimeErrors (and others) on unsupported ops
        raise ExportError(f"OpenVINO conversion failed: {one_line(e)}") from e
    return target


def head_names(model: Any) -> list[str]:
    """Names of the MatMul nodes between the body's last operation and the logits: the classifier head."""
    names: list[str] = []
    seen: set[str] = set()
    stack = [model.get_results()[0].input_value(0).get_node()]
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        if name in seen or node.get_type_name() in _BODY_END:
            continue
        seen.add(name)
        if node.get_type_name() == "MatMul":
            names.append(name)
        stack.extend(i.get_source_output().get_node() for i in node.inputs())
    return names


def _quantize(ir: Path, target: Path, gate: Gate, opts: Int8Options) -> dict[str, Any]:
    """NNCF int8 of the IR ``ir`` written to ``target``; returns what the report records."""
    ov, nncf = _import("openvino"), _import("nncf")
    nncf.set_log_level(logging.ERROR)
    feeds, rows = calibration_feeds(gate.eval_set, opts.calibration_rows)
    model = ov.Core().read_model(str(ir))
    head = head_names(model)
    options: dict[str, Any] = {"ignored_scope": nncf.IgnoredScope(names=head, validate=False)}
    if gate.bundle.spec.kind == "bert":
        options["model_type"] = nncf.ModelType.TRANSFORMER
    try:
        # NNCF draws its progress bars on stdout, where export's report goes: they go to stderr instead
        with redirect_stdout(sys.stderr):
            quantized = nncf.quantize(
                model, nncf.Dataset(feeds), subset_size=rows, preset=nncf.QuantizationPreset.MIXED, **options
            )
        ov.save_model(quantized, str(target), compress_to_fp16=False)
    except Exception as e:  # NNCF and OpenVINO raise many unrelated classes on a graph they cannot handle
        raise ExportError(f"NNCF int8 quantization failed: {one_line(e)}") from e
    return {"method": "nncf-ptq", "calibration_rows": rows, "float_head": head, "preset": "mixed"}


@contextmanager
def _logging_kept() -> Iterator[None]:
    """The process's logging as it was before NNCF ran: quantizing left the root logger's handlers at ERROR,
    so a program that exports from Python (and clsrun's own warnings after it) would lose its warnings."""
    root = logging.getLogger()
    level, handlers = root.level, [(h, h.level) for h in root.handlers]
    try:
        yield
    finally:
        root.setLevel(level)
        for handler, handler_level in handlers:
            handler.setLevel(handler_level)


def build_openvino(
    name: str, fp32_onnx: Path, stage: Path, gate: Gate, opts: Int8Options
) -> tuple[Path, VariantResult]:
    """Build the OpenVINO variant ``name`` (``ov-fp32`` or ``ov-int8``) in ``stage`` and gate it.

    Returns the IR file (its weights lie beside it, ``bundle.openvino_weights``) and the gate's result.
    Raises :class:`ExportError` when it cannot be built or the runtime cannot run it.
    """
    ir = _fp32_ir(fp32_onnx, stage)
    if name == "ov-fp32":
        return ir, with_bf16(gate, name, ir, gate.score(name, ir))
    target = stage / "model.ov.int8.xml"
    with _logging_kept():
        info = _quantize(ir, target, gate, opts)
    result = gate.score(name, target)
    result.details["quantization"] = info
    return target, with_bf16(gate, name, target, result)


def with_bf16(gate: Gate, name: str, path: Path, result: VariantResult) -> VariantResult:
    """``result`` with its entry's ``bf16``: on a CPU that computes bf16 (``ov_runner.bf16_here``), the
    variant that passed in f32 scored again with its float parts in bf16, judged by the same gate.

    The runtime runs a variant in bf16 only where this passed and its own CPU has bf16 too
    (``ov_runner.float_precision``); elsewhere, and on a CPU without bf16 here, f32. ``--keep-refused`` does not
    reach it: a bf16 pass the gate refused only means f32. A bf16 pass that cannot run is recorded as
    refused, and the variant stays as the f32 gate judged it.
    """
    from clsrun.runtime.ov_runner import bf16_here

    if not result.gate_passed or not bf16_here():
        return result
    try:
        bf16 = gate.score(name, path, inference_precision="bf16")
    except ExportError as e:
        result.details["bf16"] = {"passed": False, "reason": one_line(e)}
        return result
    result.details["bf16"] = {
        "passed": bf16.gate_passed,
        "accuracy": bf16.accuracy,
        "accuracy_drop_pts": bf16.accuracy_drop_pts,
        "label_agreement": bf16.label_agreement,
        "max_abs_logit_diff": bf16.max_abs_logit_diff,
        "rows_per_s": bf16.rows_per_s,
        "reason": bf16.reason,
    }
    return result
