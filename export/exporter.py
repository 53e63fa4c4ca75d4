"""``export_bundle``: load, export, optimise, derive variants, gate, then write inside the bundle.

Shaped like a converter (load, validate, optimise, quantise, save): every file is built in a staging
folder inside the bundle, scored by the accuracy gate, and only then moved into ``onnx/``; the previous
export (with ``force``) is replaced only once the new one is complete. Refused variants are deleted.
Finally ``export_report.json`` is written and ``bundle.rehash()`` makes ``clsrun.json`` cover the files.

fp32 failing to build or to run stops the export: every other variant derives from it. An int8 or fp16
variant whose build raises :class:`ExportError` (quantizer, fp16 converter, or onnxruntime unable to run the
file) is refused like a gate failure instead (``gate.build_failure``): the other variants are still built,
gated and installed, the report records ``"build failed: ..."`` as its reason, and the export ends with the
same :class:`AccuracyGateError`. A static QDQ int8 candidate that fails only leaves dynamic int8 in its
place, noted under the int8 variant's ``quantization.candidates.static``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clsrun.export import cpu_features
from clsrun.export.gate import (
    EvalSet,
    VariantResult,
    build_failure,
    eager_logits,
    gate_error,
    judge,
    load_eval_set,
    one_line,
    onnx_logits,
    session_providers,
)
from clsrun.export.optimize import FUSED_OPS
from clsrun.export.quantize import Int8Options
from clsrun.runtime.bundle import EXPORT_REPORT, HF_CONFIG_FILE, ONNX_DIR, ONNX_FILES, Bundle
from clsrun.runtime.errors import ExportError, InternalError, UsageError
from clsrun.runtime.files import atomic_write_text

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

EXPORT_PRECISIONS = tuple(ONNX_FILES)  # the ONNX variants export builds, in build order
# How many accuracy points static int8 may trail dynamic int8 and still replace it when faster.
STATIC_MAX_EXTRA_DROP_PTS = 0.2
# Operators worth counting in each variant: the fused ones and their quantized forms.
REPORTED_OPS = frozenset(
    {
        *FUSED_OPS,
        "QAttention",
        "QEmbedLayerNormalization",
        "MatMulInteger",
        "DynamicQuantizeMatMul",
        "ConvInteger",
        "QLinearConv",
        "QLinearMatMul",
        "QuantizeLinear",
        "DequantizeLinear",
    }
)


@dataclass
class ExportOptions:
    """What ``clsrun export`` asks for; each field is one CLI option."""

    precisions: tuple[str, ...] = ("fp32", "int8")
    max_accuracy_drop: float = 1.0  # accuracy points a variant may lose against eager PyTorch
    force: bool = False  # overwrite an earlier export and keep variants the gate refused
    eval_data: Path | None = None  # labelled rows for the gate instead of the bundle's validation rows
    int8: Int8Options = field(default_factory=Int8Options)
    batch_size: int = 32  # rows per gate batch (length-sorted, as the runtime batches)
    max_rows: int | None = None  # cap on gate rows (None: all)

    def __post_init__(self) -> None:
        unknown = [p for p in self.precisions if p not in EXPORT_PRECISIONS]
        if unknown or not self.precisions:
            raise UsageError(
                f"--precision takes a comma list of {', '.join(EXPORT_PRECISIONS)}; got {self.precisions!r}"
            )
        # fp32 is always built: int8 and fp16 derive from it, and it is the runtime's fallback.
        self.precisions = tuple(p for p in EXPORT_PRECISIONS if p in {"fp32", *self.precisions})
        if not self.max_accuracy_drop >= 0:
            raise UsageError(f"--max-accuracy-drop must be >= 0 points, not {self.max_accuracy_drop}")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be positive, not {self.batch_size}")


@dataclass
class ExportReport:
    """What an export produced: the report written to ``onnx/export_report.json`` and the variants."""

    path: Path
    data: dict[str, Any]
    variants: dict[str, VariantResult]

    @property
    def passed(self) -> list[str]:
        return [name for name, r in self.variants.items() if r.passed]


def already_exported(bundle: Bundle) -> list[str]:
    """The export files already present in the bundle folder (hashed or not)."""
    names = [*ONNX_FILES.values(), EXPORT_REPORT]
    return [rel for rel in names if (bundle.root / rel).exists()]


def _sample(eval_set: EvalSet) -> dict[str, np.ndarray]:
    """A batch to trace the export with: at least 2 rows and 2 positions, so no axis gets baked in as 1."""
    for feeds in eval_set.batches:
        first = next(iter(feeds.values()))
        if first.shape[0] >= 2 and first.shape[1] >= 2:
            return feeds
    return eval_set.batches[-1]


def _bert_shape(bundle: Bundle) -> tuple[int, int]:
    """(num_heads, hidden_size) from the bundle's Hugging Face ``config.json``."""
    config = json.loads(bundle.file(HF_CONFIG_FILE).read_text(encoding="utf-8"))
    try:
        return int(config["num_attention_heads"]), int(config["hidden_size"])
    except (KeyError, TypeError, ValueError) as e:
        raise ExportError(f"{bundle.root}/config.json: no num_attention_heads/hidden_size ({e})") from e


def _load_eager(bundle: Bundle) -> torch.nn.Module:
    """The bundle's eager model exactly as ``load_model`` gives it (the torch backend's model)."""
    from clsrun.trainer.models import load_model

    return load_model(bundle).eval()


def build_fp32(bundle: Bundle, model: torch.nn.Module, eval_set: EvalSet, stage: Path) -> Path:
    """Export the eager model to ONNX (and fuse it, for BERT); returns the fp32 file in ``stage``."""
    import torch

    from clsrun.export.onnx_export import export_onnx, use_eager_attention
    from clsrun.export.optimize import optimize_bert

    sample = {k: torch.from_numpy(v) for k, v in _sample(eval_set).items()}
    target = stage / "model.onnx"
    if bundle.spec.kind != "bert":
        return export_onnx(model, sample, target)
    # After the eager reference was computed with the model as loaded (SDPA, faster): the gate's fp32
    # parity check then also confirms that eager attention computes the same logits.
    if use_eager_attention(model) == 0:
        log.warning("no Hugging Face encoder found in the model: attention will not be fused")
    raw = export_onnx(model, sample, stage / "model.raw.onnx")
    num_heads, hidden = _bert_shape(bundle)
    fusions = optimize_bert(raw, target, num_heads, hidden)
    if not fusions.get("Attention"):
        log.warning(
            "onnxruntime's optimizer fused no Attention in this graph (fused: %s): the export is correct "
            "but slower, and int8 gains less",
            fusions or "nothing",
        )
    raw.unlink()
    return target


def _reported_ops(path: Path) -> dict[str, int]:
    from clsrun.export.optimize import count_ops

    return {op: n for op, n in count_ops(path).items() if op in REPORTED_OPS}


def _score(
    name: str, path: Path, reference: np.ndarray, eval_set: EvalSet, options: ExportOptions, label: str = ""
) -> VariantResult:
    providers = session_providers(prefer_cuda=name == "fp16")
    logits, seconds = onnx_logits(path, eval_set.batches, providers)
    result = judge(
        name,
        ONNX_FILES[name],
        logits,
        reference,
        eval_set.labels,
        options.max_accuracy_drop,
        seconds,
        providers[0],
        path.stat().st_size,
    )
    if not result.gate_passed and options.force:
        result.passed, result.forced = True, True
    log.info(
        "%s%s: accuracy %.4f (drop %.2f pts), agreement %.4f, max |logit diff| %.3g, %.0f rows/s on %s -> %s",
        name,
        label,
        result.accuracy,
        result.accuracy_drop_pts,
        result.label_agreement,
        result.max_abs_logit_diff,
        result.rows_per_s,
        providers[0],
        "kept by --force" if result.forced else "passed" if result.passed else "refused",
    )
    return result


def _build_int8(
    kind: str, fp32: Path, stage: Path, reference: np.ndarray, eval_set: EvalSet, options: ExportOptions
) -> tuple[Path, VariantResult, dict[str, Any]]:
    """Dynamic int8, plus static QDQ when asked (by default for the char-CNN); see :func:`_static_wins`."""
    from clsrun.export.quantize import quantize_dynamic_int8, quantize_static_int8

    features = cpu_features.detect()
    warning = cpu_features.int8_warning(features)
    if warning:
        log.warning("%s", warning)
    opts = options.int8
    reduce_range = (not features.vnni) if opts.reduce_range is None else opts.reduce_range
    dynamic = stage / "model.int8.onnx"
    quantize_dynamic_int8(fp32, dynamic, opts, reduce_range)
    plain = _plain_layernorm(dynamic, opts)
    try_static = kind == "charcnn" if opts.static is None else opts.static
    result = _score("int8", dynamic, reference, eval_set, options, " (dynamic)" if try_static else "")
    info: dict[str, Any] = {
        **asdict(opts),
        "method": "dynamic",
        "reduce_range": reduce_range,
        "static": try_static,
        "plain_layernorm_nodes": plain,
    }
    if not try_static:
        return dynamic, result, info
    # Calibration batches are spread over all lengths of the gate rows, so the gate then scores rows the
    # calibration saw: a mild optimism for static int8 (ranges fit to those rows), said in the README.
    calibration, rows = [], 0
    for feeds in eval_set.batches[:: max(1, len(eval_set.batches) // 16)]:  # spread over all lengths
        if rows >= opts.calibration_rows:
            break
        calibration.append(feeds)
        rows += len(next(iter(feeds.values())))
    static = stage / "model.int8.static.onnx"
    try:
        quantize_static_int8(fp32, static, calibration, opts, reduce_range)
        _plain_layernorm(static, opts)
        static_result = _score("int8", static, reference, eval_set, options, " (static QDQ)")
    except ExportError as e:  # static is only a candidate: dynamic int8 is built and scored already
        return dynamic, result, _static_failed(info, result, rows, static, e)
    better = _static_wins(static_result, result)
    info["candidates"] = {
        "dynamic": _candidate(result),
        "static": _candidate(static_result),
        "calibration_rows": rows,
    }
    log.info(
        "int8: keeping %s (static QDQ %.0f rows/s, accuracy %.4f; dynamic %.0f rows/s, accuracy %.4f)",
        "static QDQ" if better else "dynamic",
        static_result.rows_per_s,
        static_result.accuracy,
        result.rows_per_s,
        result.accuracy,
    )
    if better:
        info["method"] = "static-qdq"
        dynamic.unlink()
        return static, static_result, info
    static.unlink()
    return dynamic, result, info


def _plain_layernorm(path: Path, opts: Int8Options) -> int:
    """Write the int8 file's SkipLayerNormalization nodes out as plain operators when asked
    (``export/layernorm.py``)."""
    if not opts.plain_layernorm:
        return 0
    from clsrun.export.layernorm import decompose_layernorm

    count = decompose_layernorm(path)
    if count:
        log.debug("int8: %d layer normalisations written out as plain operators", count)
    return count


def _candidate(result: VariantResult) -> dict[str, Any]:
    """What the report keeps of an int8 candidate (dynamic or static QDQ) to show why one was kept."""
    return {k: getattr(result, k) for k in ("accuracy", "rows_per_s", "size_bytes")}


def _static_failed(
    info: dict[str, Any], dynamic: VariantResult, rows: int, static: Path, error: ExportError
) -> dict[str, Any]:
    """``info`` with why the static QDQ candidate could not be built or run; dynamic int8 stays."""
    static.unlink(missing_ok=True)
    reason = f"build failed: {one_line(error)}"
    log.warning("int8: static QDQ %s; keeping dynamic int8", reason)
    info["candidates"] = {
        "dynamic": _candidate(dynamic),
        "static": {"built": False, "reason": reason},
        "calibration_rows": rows,
    }
    return info


def _static_wins(static: VariantResult, dynamic: VariantResult) -> bool:
    """Static QDQ replaces dynamic int8 when it passes the gate, is faster on the gate rows, and is at most
    ``STATIC_MAX_EXTRA_DROP_PTS`` less accurate than dynamic (a row or two of noise, not a trend)."""
    s_rate, d_rate, s_acc, d_acc = static.rows_per_s, dynamic.rows_per_s, static.accuracy, dynamic.accuracy
    if s_rate is None or d_rate is None or s_acc is None or d_acc is None:
        return False  # one of them was never scored
    return static.gate_passed and s_rate > d_rate and (d_acc - s_acc) * 100.0 <= STATIC_MAX_EXTRA_DROP_PTS


def export_bundle(
    bundle_path: Path | str, options: ExportOptions | None = None, **fields: Any
) -> ExportReport:
    """Export a bundle's model to the ONNX variants ``options`` asks for, gate them, and record the result.

    ``fields`` are a shorthand for ``ExportOptions`` fields when no ``options`` is given
    (``export_bundle(path, precisions=("fp32", "int8", "fp16"), force=True)``).

    Raises :class:`ExportError` when the bundle was already exported and ``force`` is off, or when fp32
    cannot be built or run, and :class:`AccuracyGateError` (after writing the report, installing the passing
    variants and removing the refused files; its ``report`` is the :class:`ExportReport`) when a variant
    loses more accuracy than allowed or an int8/fp16 variant could not be built (``force`` keeps the former,
    never the latter).
    """
    if options is None:
        options = ExportOptions(**fields)
    elif fields:
        raise UsageError(f"give either options or option fields, not both ({', '.join(fields)})")
    start = time.perf_counter()
    marks: dict[str, float] = {}  # seconds per phase, for the report
    bundle = Bundle.load(bundle_path)
    existing = already_exported(bundle)
    if existing and not options.force:
        raise ExportError(
            f"{bundle.root} is already exported ({', '.join(existing)}); use --force to export again"
        )
    eval_set = load_eval_set(bundle, options.eval_data, options.batch_size, options.max_rows)
    model = _load_eager(bundle)
    marks["load"] = time.perf_counter() - start
    reference = eager_logits(model, eval_set.batches)  # (N, n_labels)
    marks["eager_reference"] = time.perf_counter() - start - sum(marks.values())
    if reference.shape != (eval_set.rows, len(bundle.labels)):
        raise InternalError(
            f"eager logits have shape {reference.shape}, expected {(eval_set.rows, len(bundle.labels))}"
        )
    ref_accuracy = float((reference.argmax(axis=1) == eval_set.labels).mean())
    log.info("eager PyTorch: accuracy %.4f on %d rows of %s", ref_accuracy, eval_set.rows, eval_set.source)

    stage = Path(tempfile.mkdtemp(dir=bundle.root, prefix=".tmp-export-"))
    try:
        built: dict[str, Path] = {}
        results: dict[str, VariantResult] = {}
        extra: dict[str, Any] = {}
        built["fp32"] = build_fp32(bundle, model, eval_set, stage)
        marks["export_fp32"] = time.perf_counter() - start - sum(marks.values())
        results["fp32"] = _score("fp32", built["fp32"], reference, eval_set, options)
        marks["gate_fp32"] = time.perf_counter() - start - sum(marks.values())
        if "int8" in options.precisions:
            try:
                built["int8"], results["int8"], extra["int8"] = _build_int8(
                    bundle.spec.kind, built["fp32"], stage, reference, eval_set, options
                )
            except ExportError as e:
                results["int8"] = _not_built("int8", e)
            marks["int8"] = time.perf_counter() - start - sum(marks.values())
        if "fp16" in options.precisions:
            try:
                built["fp16"], results["fp16"] = _build_fp16(
                    built["fp32"], stage, reference, eval_set, options
                )
            except ExportError as e:
                results["fp16"] = _not_built("fp16", e)
            marks["fp16"] = time.perf_counter() - start - sum(marks.values())
        fusions = {name: _reported_ops(path) for name, path in built.items()}
        _install(bundle, built, results)
    finally:
        shutil.rmtree(stage, ignore_errors=True)

    marks["install"] = time.perf_counter() - start - sum(marks.values())
    report = _report(bundle, options, eval_set, ref_accuracy, results, fusions, extra, marks)
    atomic_write_text(bundle.root / EXPORT_REPORT, json.dumps(report, indent=2) + "\n")
    (bundle.root / EXPORT_REPORT).chmod(0o644)  # mkstemp made it owner-only; it ships with the bundle
    bundle.rehash()
    export_report = ExportReport(bundle.root / EXPORT_REPORT, report, results)
    error = gate_error(results, eval_set.rows, eval_set.source)
    if error is not None:
        error.report = export_report
        raise error
    return export_report


def _build_fp16(
    fp32: Path, stage: Path, reference: np.ndarray, eval_set: EvalSet, options: ExportOptions
) -> tuple[Path, VariantResult]:
    """The fp16 file converted from ``fp32``, and its gate result."""
    from clsrun.export.fp16 import convert_fp16

    path = stage / "model.fp16.onnx"
    convert_fp16(fp32, path)
    return path, _score("fp16", path, reference, eval_set, options)


def _not_built(name: str, error: ExportError) -> VariantResult:
    """The refused result of a variant whose build (or run under onnxruntime) raised ``error``. Whatever it
    left in the staging folder goes with the folder."""
    result = build_failure(ONNX_FILES[name], error)
    log.warning("%s: %s; refused, the other variants go on", name, result.reason)
    return result


def _install(bundle: Bundle, built: dict[str, Path], results: dict[str, VariantResult]) -> None:
    """Replace the bundle's export files with the passing (or forced) variants; drop the refused ones."""
    onnx_dir = bundle.root / ONNX_DIR
    onnx_dir.mkdir(exist_ok=True)
    for rel in [*ONNX_FILES.values(), EXPORT_REPORT]:
        (bundle.root / rel).unlink(missing_ok=True)
    for name, path in built.items():
        result = results[name]
        if result.passed:
            os.replace(path, bundle.root / ONNX_FILES[name])
        else:
            result.kept = False
            path.unlink()


def _report(
    bundle: Bundle,
    options: ExportOptions,
    eval_set: EvalSet,
    ref_accuracy: float,
    results: dict[str, VariantResult],
    fusions: dict[str, dict[str, int]],
    extra: dict[str, Any],
    marks: dict[str, float],
) -> dict[str, Any]:
    import onnxruntime
    import torch

    variants = {}
    for name, result in results.items():
        variants[name] = result.to_json()
        if name in extra:
            variants[name]["quantization"] = extra[name]
    return {
        "reference": {
            "backend": "torch",
            "accuracy": round(ref_accuracy, 6),
            "rows": eval_set.rows,
            "source": eval_set.source,
        },
        "variants": variants,
        "fusions": fusions,
        "max_accuracy_drop_pts": options.max_accuracy_drop,
        "forced": options.force,
        "kind": bundle.spec.kind,
        "cpu": cpu_features.detect().summary(),
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "export_seconds": round(sum(marks.values()), 2),
        "phase_seconds": {phase: round(seconds, 2) for phase, seconds in marks.items()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
