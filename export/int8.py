"""The int8 variant: dynamic quantization always, static QDQ tried beside it, and the gate decides which stays.

Dynamic int8 (``quantize.py``) is built and gated first. Static QDQ is tried when asked, by default for the
char-CNN (``quantize.py`` says why), calibrated on gate rows spread over all lengths; the gate then scores
rows the calibration saw, a mild optimism for static int8 (its ranges fit those rows), said in the README.
Static replaces dynamic only when it passes the gate, is faster on the gate rows as ``clsrun predict`` runs
them (``gate.run_candidate``), and is at most :data:`STATIC_MAX_EXTRA_DROP_PTS` less accurate. A static
candidate that cannot be built or run only leaves dynamic in place; the report says why under
``quantization.candidates.static``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clsrun.export import cpu_features
from clsrun.export.gate import Gate, VariantResult, calibration_feeds, one_line
from clsrun.export.quantize import Int8Options
from clsrun.runtime.errors import ExportError

log = logging.getLogger(__name__)

# How many accuracy points static int8 may trail dynamic int8 and still replace it when faster: noise on a
# validation set, not a trend. At least one gate row's worth: on a gate of under 500 rows one row is more
# than 0.2 points, and a variant should not lose its place over a single row.
STATIC_MAX_EXTRA_DROP_PTS = 0.2


def static_allowance_pts(gate_rows: int) -> float:
    """Points static int8 may trail dynamic: :data:`STATIC_MAX_EXTRA_DROP_PTS`, or one of ``gate_rows``."""
    return max(STATIC_MAX_EXTRA_DROP_PTS, 100.0 / gate_rows if gate_rows else 0.0)


@dataclass
class Int8Built:
    """The int8 file kept, its gate result, and what the report records under ``quantization``."""

    path: Path
    result: VariantResult
    info: dict[str, Any]


def build_int8(fp32: Path, stage: Path, gate: Gate, opts: Int8Options) -> Int8Built:
    """Dynamic int8 of ``fp32`` in ``stage``, gated; then static QDQ when asked (see the module doc)."""
    from clsrun.export.quantize import quantize_dynamic_int8

    reduce_range = _reduce_range(opts)
    dynamic = stage / "model.int8.onnx"
    quantize_dynamic_int8(fp32, dynamic, opts, reduce_range)
    plain = _plain_layernorm(dynamic, opts)
    try_static = gate.bundle.spec.kind == "charcnn" if opts.static is None else opts.static
    info: dict[str, Any] = {
        **asdict(opts),
        "method": "dynamic",
        "reduce_range": reduce_range,
        "static": try_static,
        "plain_layernorm_nodes": plain,
    }
    built = Int8Built(dynamic, gate.score("int8", dynamic), info)
    if try_static:
        _try_static(fp32, stage, gate, opts, reduce_range, built)
    return built


def _reduce_range(opts: Int8Options) -> bool:
    """7-bit weights when asked, or by default on a CPU without VNNI; warns once about such a CPU."""
    features = cpu_features.detect()
    warning = cpu_features.int8_warning(features)
    if warning:
        log.warning("%s", warning)
    return (not features.vnni) if opts.reduce_range is None else opts.reduce_range


def _try_static(
    fp32: Path, stage: Path, gate: Gate, opts: Int8Options, reduce_range: bool, built: Int8Built
) -> None:
    """Build and gate static QDQ int8; it replaces the dynamic file in ``built`` when it wins."""
    from clsrun.export.quantize import quantize_static_int8

    calibration, rows = calibration_feeds(gate.eval_set, opts.calibration_rows)
    static = stage / "model.int8.static.onnx"
    dynamic = _candidate(built.result)
    try:
        quantize_static_int8(fp32, static, calibration, opts, reduce_range)
        _plain_layernorm(static, opts)
        result = gate.score("int8", static)
    except ExportError as e:  # static is only a candidate: dynamic int8 is built and scored already
        static.unlink(missing_ok=True)
        failed = {"built": False, "reason": f"build failed: {one_line(e)}"}
        built.info["candidates"] = {"dynamic": dynamic, "static": failed, "calibration_rows": rows}
        return
    built.info["candidates"] = {"dynamic": dynamic, "static": _candidate(result), "calibration_rows": rows}
    if not static_wins(result, built.result, gate.eval_set.rows):
        static.unlink()
        return
    built.path.unlink()
    built.path, built.result = static, result
    built.info["method"] = "static-qdq"


def _plain_layernorm(path: Path, opts: Int8Options) -> int:
    """Write the int8 file's SkipLayerNormalization nodes out as plain operators when asked
    (``export/layernorm.py``); how many were."""
    if not opts.plain_layernorm:
        return 0
    from clsrun.export.layernorm import decompose_layernorm

    return decompose_layernorm(path)


def _candidate(result: VariantResult) -> dict[str, Any]:
    """What the report keeps of an int8 candidate (dynamic or static QDQ) to show why one was kept."""
    return {k: getattr(result, k) for k in ("accuracy", "rows_per_s", "size_bytes")}


def static_wins(static: VariantResult, dynamic: VariantResult, gate_rows: int) -> bool:
    """Static QDQ replaces dynamic int8 when it passes the gate, is faster on the gate rows, and is at most
    :func:`static_allowance_pts` of ``gate_rows`` less accurate than dynamic."""
    s_rate, d_rate, s_acc, d_acc = static.rows_per_s, dynamic.rows_per_s, static.accuracy, dynamic.accuracy
    if s_rate is None or d_rate is None or s_acc is None or d_acc is None:
        return False  # one of them was never scored
    behind = (d_acc - s_acc) * 100.0
    return static.gate_passed and s_rate > d_rate and behind <= static_allowance_pts(gate_rows) + 1e-9
