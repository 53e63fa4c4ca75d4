"""The accuracy gate: every exported variant is scored on labelled rows and compared with eager PyTorch.

The rows (the bundle's ``validation.jsonl.gz`` or a ``--eval-data`` file) are normalised and encoded with
the runtime's own ``textnorm`` and encoder, sorted by length and padded per batch exactly as
``clsrun predict`` does, so the gate measures what the runtime will run. For each variant it records
accuracy, the drop in accuracy points against eager PyTorch, label agreement with eager PyTorch, the
largest |logit difference| and the rows/s of that scoring pass. A variant that loses more than the allowed
points is refused; the fp32 file must also match eager logits within a tolerance, since any difference
there is an export bug, not a precision trade-off. A variant that could not be built, or that onnxruntime
could not run, is refused too (:func:`build_failure`): it has no metrics and no file, so ``--force`` cannot
keep it. :func:`gate_error` lists every refused variant, whatever refused it, in one error.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clsrun.runtime.errors import AccuracyGateError, ExportError, InputError

if TYPE_CHECKING:
    import torch

    from clsrun.runtime.bundle import Bundle

Feeds = dict[str, np.ndarray]
# fp32 parity: |onnx - eager| <= FP32_ATOL + FP32_RTOL * max|eager logit|.
FP32_ATOL = 1e-3
FP32_RTOL = 1e-3


@dataclass
class EvalSet:
    """Encoded labelled rows, length-sorted into padded batches; ``labels`` follow the batch order."""

    batches: list[Feeds]  # each value (B, T) int64
    labels: np.ndarray  # (N,) int64 index into the bundle's labels
    source: str  # where the rows came from, for the report

    @property
    def rows(self) -> int:
        return len(self.labels)


def load_eval_set(
    bundle: Bundle, eval_data: Path | None = None, batch_size: int = 32, max_rows: int | None = None
) -> EvalSet:
    """Read, normalise and encode the gate's labelled rows with the runtime's own encoder.

    Raises :class:`InputError` when there are no rows, or when labels are not the bundle's labels.
    """
    from clsrun.runtime.bundle import VALIDATION_FILE
    from clsrun.runtime.encode import make_encoder
    from clsrun.runtime.readers import read_labelled
    from clsrun.runtime.textnorm import normalize

    if eval_data is not None:
        path, source = Path(eval_data), str(eval_data)
    else:
        if not bundle.has(VALIDATION_FILE):
            raise InputError(
                f"{bundle.root} has no {VALIDATION_FILE} (held-out rows); give labelled rows with --eval-data FILE"
            )
        path, source = bundle.file(VALIDATION_FILE), VALIDATION_FILE
    data = read_labelled(path)
    index = {label: i for i, label in enumerate(bundle.labels)}
    unknown = sorted(set(data.labels) - index.keys())
    if unknown:
        shown = ", ".join(repr(x) for x in unknown[:5])
        raise InputError(
            f"{source}: labels {shown} are not labels of this model ({', '.join(bundle.labels)})"
        )
    pairs = [
        (normalize(t, bundle.spec.normalization), index[y])
        for t, y in zip(data.texts, data.labels, strict=True)
    ]
    pairs = [(t, y) for t, y in pairs if t][:max_rows]
    if not pairs:
        raise InputError(f"{source}: no row has text left after normalisation")
    encoder = make_encoder(bundle)
    tokens = encoder.tokenize([t for t, _ in pairs])
    labels = np.fromiter((y for _, y in pairs), dtype=np.int64, count=len(pairs))
    order = np.argsort(tokens.lengths, kind="stable")  # length-sorted, as the runtime's batcher does
    batches = [encoder.pad(tokens, order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
    return EvalSet(batches, labels[order], source)


def eager_logits(model: torch.nn.Module, batches: Sequence[Feeds]) -> np.ndarray:
    """(N, n_labels) float32 logits of the eager model over all batches, in batch order."""
    import torch

    out = []
    with torch.inference_mode():
        for feeds in batches:
            logits = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})  # (B, n_labels)
            out.append(logits.float().numpy())
    return np.concatenate(out)


def session_providers(prefer_cuda: bool) -> list[str]:
    """Execution providers for scoring a variant: CUDA first when asked for and present, else CPU."""
    import onnxruntime as ort

    if prefer_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def onnx_logits(path: Path, batches: Sequence[Feeds], providers: list[str]) -> tuple[np.ndarray, float]:
    """(N, n_labels) logits of an ONNX file over all batches, and the seconds the scoring pass took.

    Raises :class:`ExportError` when onnxruntime cannot load or run the file.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # the CPU provider's notes about inserted Casts are not user news
    # As the runtime's sessions: idle workers sleep instead of spinning, which on a shared or busy machine
    # costs the spinning threads' cores to everyone else (the eager reference included).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
        names = {i.name for i in session.get_inputs()}
        session.run(["logits"], {k: v for k, v in batches[0].items() if k in names})  # warm-up, not timed
        start = time.perf_counter()
        out = [
            session.run(["logits"], {k: v for k, v in feeds.items() if k in names})[0] for feeds in batches
        ]
        seconds = time.perf_counter() - start
    except Exception as e:  # onnxruntime raises one unrelated class per status code (Fail, InvalidGraph, ...)
        raise ExportError(f"onnxruntime could not run {path.name}: {type(e).__name__}: {one_line(e)}") from e
    return np.concatenate(out).astype(np.float32, copy=False), seconds


def one_line(error: BaseException, limit: int = 300) -> str:
    """An error's message on one line (converters put graph dumps in theirs), cut to ``limit`` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose arg-max logit is the label."""
    return float((logits.argmax(axis=1) == labels).mean())


@dataclass
class VariantResult:
    """One variant's line in ``export_report.json`` (see ARCHITECTURE.md).

    The measurements are None only for a variant that was never scored (``built`` false).
    """

    file: str
    passed: bool  # usable by the runtime: it passed the gate, or it failed and --force kept it
    gate_passed: bool  # what the gate alone decided
    accuracy: float | None
    accuracy_drop_pts: float | None
    label_agreement: float | None
    max_abs_logit_diff: float | None
    reason: str | None
    rows_per_s: float | None
    provider: str | None
    size_bytes: int | None
    kept: bool = True
    forced: bool = False
    built: bool = True  # false: building or running the file failed, so there is no file and no score
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("details"))
        return data


def judge(
    name: str,
    file: str,
    logits: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray,
    max_drop_pts: float,
    seconds: float,
    provider: str,
    size_bytes: int,
) -> VariantResult:
    """Compare a variant's logits with eager PyTorch's and decide whether it passes."""
    acc = accuracy(logits, labels)
    drop = (accuracy(reference, labels) - acc) * 100.0
    agreement = float((logits.argmax(axis=1) == reference.argmax(axis=1)).mean())
    diff = float(np.abs(logits - reference).max())
    reasons = []
    if not np.isfinite(logits).all():
        reasons.append("non-finite logits")
    if drop > max_drop_pts:
        reasons.append(f"accuracy drops {drop:.2f} points (allowed {max_drop_pts:g})")
    if name == "fp32":
        tolerance = FP32_ATOL + FP32_RTOL * float(np.abs(reference).max())
        if not diff <= tolerance:
            reasons.append(f"fp32 logits differ from eager PyTorch by {diff:.3g} (tolerance {tolerance:.3g})")
    return VariantResult(
        file=file,
        passed=not reasons,
        gate_passed=not reasons,
        accuracy=round(acc, 6),
        accuracy_drop_pts=round(drop, 4),
        label_agreement=round(agreement, 6),
        max_abs_logit_diff=diff,
        reason="; ".join(reasons) or None,
        rows_per_s=round(len(labels) / seconds, 1) if seconds > 0 else 0.0,
        provider=provider,
        size_bytes=size_bytes,
    )


def build_failure(file: str, error: ExportError) -> VariantResult:
    """The result of a variant whose build, or whose run under onnxruntime, raised ``error``: refused,
    unscored and without a file. ``--force`` cannot keep it, since there is nothing to keep."""
    return VariantResult(
        file=file,
        passed=False,
        gate_passed=False,
        accuracy=None,
        accuracy_drop_pts=None,
        label_agreement=None,
        max_abs_logit_diff=None,
        reason=f"build failed: {one_line(error)}",
        rows_per_s=None,
        provider=None,
        size_bytes=None,
        kept=False,
        built=False,
    )


def gate_error(results: dict[str, VariantResult], rows: int, source: str) -> AccuracyGateError | None:
    """One error listing every refused variant, gated or never built (None when all passed)."""
    failed = {name: r for name, r in results.items() if not r.passed}
    if not failed:
        return None
    lines = "; ".join(f"{name} ({r.file}): {r.reason}" for name, r in failed.items())
    hints = []
    if any(r.built for r in failed.values()):
        hints.append("--force keeps variants the gate refused, --max-accuracy-drop changes the allowance")
    if not all(r.built for r in failed.values()):
        hints.append("--force cannot keep a variant that was not built")
    return AccuracyGateError(
        f"accuracy gate refused {len(failed)} variant(s) on {rows} rows of {source}: {lines}. "
        f"Refused files were removed; {'; '.join(hints)}"
    )
