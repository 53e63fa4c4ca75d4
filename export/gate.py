"""The accuracy gate: every exported variant is scored on labelled rows and compared with eager PyTorch.

The rows (the bundle's ``validation.jsonl.gz`` or a ``--eval-data`` file) are scored by the runtime itself:
each candidate file, still in export's staging folder, opens through ``Classifier.open`` with
``variant.onnx_candidate``, so it runs under the ``OrtRunner`` ``clsrun predict`` uses (same session options,
threads and streams) on the batches predict plans (``Classifier.prepare``: ``textnorm``, the bundle's
encoder, ``BatchOptions.plan`` with predict's batch options for the bundle's kind and the variant's device). What
the gate measures (accuracy, rows/s, and therefore the choice between static and dynamic int8, whose
activation scales depend on the batch) is what production runs. Each variant runs on the device it is
made for: fp32 and int8 on CPU, fp16 on CUDA when onnxruntime has it here (else CPU).

For each variant the gate records accuracy, the drop in accuracy points against eager PyTorch, label
agreement with eager PyTorch, the largest |logit difference| and the rows/s of the timed inference pass
(after one untimed batch), with the threads, streams and batch budget it ran with. A variant that loses more
than the allowed points is refused; the fp32 file must also match eager logits within a tolerance, since any
difference there is an export bug, not a precision trade-off. A variant that could not be built, or that
onnxruntime could not run, is refused too (:func:`build_failure`): it has no metrics and no file, so
``--keep-refused`` cannot keep it. :func:`gate_error` lists every refused variant, whatever refused it, in one error.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clsrun.runtime.batching import BatchOptions
from clsrun.runtime.errors import (
    AccuracyGateError,
    BundleError,
    ExportError,
    InputError,
    InternalError,
    clipped,
)

if TYPE_CHECKING:
    import torch

    from clsrun.runtime.bundle import Bundle
    from clsrun.runtime.encode import Encoder, Tokens

Feeds = dict[str, np.ndarray]
# fp32 parity: |onnx - eager| <= FP32_ATOL + FP32_RTOL * max|eager logit|.
FP32_ATOL = 1e-3
FP32_RTOL = 1e-3
# The device each variant is gated on: where it is meant to run (fp16 is the CUDA variant).
GATE_DEVICES = {"fp32": "cpu", "int8": "cpu", "fp16": "auto"}
CALIBRATION_BATCH = 32  # rows per static int8 calibration batch


@dataclass
class EvalSet:
    """The gate's labelled rows, tokenized by the runtime's encoder and batched as predict batches them on CPU."""

    texts: list[str]  # as read, each non-empty after normalisation (Classifier.prepare normalises them)
    labels: np.ndarray  # (N,) int64 index into the bundle's labels, in row order
    source: str  # where the rows came from, for the report
    encoder: Encoder
    tokens: Tokens  # the normalised texts, tokenized: the eager reference, calibration and tracing use them
    batches: list[np.ndarray]  # row indices, length-sorted token-budget batches (predict's CPU plan)
    batching: BatchOptions  # what predict batches with (unresolved: each variant resolves it for its device)

    @property
    def rows(self) -> int:
        return len(self.labels)

    def feeds(self, rows: np.ndarray) -> Feeds:
        """Model inputs ``{name: (B, T) int64}`` of ``rows``, padded as the runtime pads them."""
        return self.encoder.pad(self.tokens, rows)


def _read_rows(
    bundle: Bundle, eval_data: Path | None, columns: tuple[str, str] = ("text", "label")
) -> tuple[list[str], list[str], str]:
    """Texts, labels and source name of the gate rows (``eval_data``'s ``columns``: text, label);
    :class:`InputError` for labels the bundle lacks."""
    from clsrun.runtime.bundle import VALIDATION_FILE
    from clsrun.runtime.labelled import read_labelled

    if eval_data is not None:
        path, source = Path(eval_data), str(eval_data)
        data = read_labelled(path, *columns)
    else:
        if not bundle.has(VALIDATION_FILE):
            raise InputError(
                f"{bundle.root} has no {VALIDATION_FILE} (held-out rows); give labelled rows with --eval-data FILE"
            )
        path, source = bundle.file(VALIDATION_FILE), VALIDATION_FILE
        # the bundle's own file, hash-checked: damaged, it is the bundle's fault (exit 3), not bad input
        try:
            data = read_labelled(path, "text", "label")
        except InputError as e:
            raise BundleError(
                f"{e}; train the bundle again, or give labelled rows with --eval-data FILE"
            ) from e
    unknown = sorted(set(data.labels) - set(bundle.labels))
    if unknown:
        shown = ", ".join(repr(x) for x in unknown[:5])
        raise InputError(
            f"{source}: labels {shown} are not labels of this model ({', '.join(bundle.labels)})"
        )
    return data.texts, data.labels, source


def load_eval_set(
    bundle: Bundle,
    eval_data: Path | None = None,
    max_rows: int | None = None,
    batching: BatchOptions = BatchOptions(),
    columns: tuple[str, str] = ("text", "label"),
) -> EvalSet:
    """Read the gate's labelled rows (``eval_data``'s ``columns``, text and label, else the bundle's validation
    rows), keep those with readable text after normalisation (at most ``max_rows``, spread over the file),
    tokenize them with the runtime's encoder and plan predict's CPU batches.

    Raises :class:`InputError` when there are no rows, or when labels are not the bundle's labels.
    """
    from clsrun.runtime.encode import make_encoder
    from clsrun.runtime.textnorm import normalize, readable

    texts, labels, source = _read_rows(bundle, eval_data, columns)
    index = {label: i for i, label in enumerate(bundle.labels)}
    kept = [  # the rows predict scores (encode_pool.encode_texts): readable text after normalisation
        (t, n, index[y])
        for t, y in zip(texts, labels, strict=True)
        if readable(n := normalize(t, bundle.spec.normalization))
    ]
    if max_rows is not None and len(kept) > max_rows:
        # spread over the whole file, not its first rows: a file sorted by label would gate on one class
        picked = np.sort(np.random.default_rng(0).choice(len(kept), max_rows, replace=False))
        kept = [kept[i] for i in picked]
    if not kept:
        raise InputError(f"{source}: no row has readable text left after normalisation")
    encoder = make_encoder(bundle)
    tokens = encoder.tokenize([n for _, n, _ in kept])
    batches = batching.resolved(bundle.spec.kind, "cpu").plan(tokens.lengths)
    targets = np.fromiter((y for _, _, y in kept), dtype=np.int64, count=len(kept))
    return EvalSet([t for t, _, _ in kept], targets, source, encoder, tokens, batches, batching)


def eager_logits(model: torch.nn.Module, eval_set: EvalSet) -> np.ndarray:
    """(N, n_labels) float32 logits of the eager model over the gate rows, in row order."""
    import torch

    out: np.ndarray | None = None
    with torch.inference_mode():
        for rows in eval_set.batches:
            feeds = {k: torch.from_numpy(v) for k, v in eval_set.feeds(rows).items()}
            logits = model(**feeds).float().numpy()  # (B, n_labels)
            if out is None:
                out = np.empty((eval_set.rows, logits.shape[1]), dtype=np.float32)
            out[rows] = logits
    if out is None:
        raise InternalError("the gate's eval set has no batches")
    return out


def calibration_feeds(eval_set: EvalSet, rows: int) -> tuple[list[Feeds], int]:
    """Static int8 calibration batches: ``rows`` gate rows spread evenly over all lengths (shortest to
    longest), in batches of ``CALIBRATION_BATCH``; and how many rows that is."""
    order = np.argsort(eval_set.tokens.lengths, kind="stable")  # (N,)
    picks = np.unique(np.linspace(0, len(order) - 1, num=min(rows, len(order))).round().astype(np.int64))
    chosen = order[picks]
    batches = [chosen[i : i + CALIBRATION_BATCH] for i in range(0, len(chosen), CALIBRATION_BATCH)]
    return [eval_set.feeds(b) for b in batches], len(chosen)


@dataclass
class Scored:
    """A candidate's pass over the gate rows, as the runtime ran it."""

    logits: np.ndarray  # (N, n_labels) float32, row order
    seconds: float  # the timed inference pass over every batch
    provider: str  # what executed it (onnxruntime's first provider)
    ran: dict[str, Any]  # device, threads, streams, batch_tokens, batches: the settings predict would use


def run_candidate(
    bundle: Bundle, file: str, precision: str, eval_set: EvalSet, inference_precision: str | None = None
) -> Scored:
    """Score the bundle-relative ONNX file ``file`` on the gate rows as ``clsrun predict`` runs a variant
    (``Classifier.open``: ``OrtRunner``, predict's threads, streams and batches); one batch warms it up.
    ``inference_precision``: an OpenVINO variant's float parts in ``bf16`` (``ov_runner.float_precision``).

    Raises :class:`ExportError` when onnxruntime cannot load or run the file.
    """
    from clsrun.runtime.classifier import Classifier
    from clsrun.runtime.readers import RecordChunk
    from clsrun.runtime.variant import staged_candidate

    bundle, choice = staged_candidate(bundle, file, precision, GATE_DEVICES.get(precision, "cpu"))
    choice = replace(choice, inference_precision=inference_precision)
    try:
        clf = Classifier.open(bundle, choice, batching=eval_set.batching)
        prepared = clf.prepare(RecordChunk(0, None, list(eval_set.texts), [""] * eval_set.rows))
        clf.run(clf.inputs(prepared.tokens, prepared.batches[0]))  # warm-up, not timed
        start = time.perf_counter()
        clf.infer(prepared)
        seconds = time.perf_counter() - start
    except Exception as e:  # onnxruntime raises one unrelated class per status code (Fail, InvalidGraph, ...)
        engine = "onnxruntime" if choice.backend == "onnx" else choice.backend
        raise ExportError(
            f"{engine} could not run {Path(file).name}: {type(e).__name__}: {one_line(e)}"
        ) from e
    if len(prepared.valid) != eval_set.rows:
        raise InternalError(f"the runtime scored {len(prepared.valid)} of {eval_set.rows} gate rows")
    ran = {
        "device": choice.device,
        "threads": clf.threads,
        "streams": clf.streams,
        "batch_tokens": clf.batching.batch_tokens,
        "batches": len(prepared.batches),
    }
    return Scored(prepared.logits, seconds, clf.runner.providers[0], ran)


def variant_files(path: Path) -> list[Path]:
    """A variant's files: the ONNX file, or an OpenVINO IR file and its weights (``model*.bin`` beside it)."""
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def one_line(error: BaseException, limit: int = 300) -> str:
    """An error's message on one line (converters put graph dumps in theirs), cut to ``limit`` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return clipped(text, limit)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose arg-max logit is the label."""
    return float((logits.argmax(axis=1) == labels).mean())


@dataclass
class VariantResult:
    """One variant's line in ``export_report.json`` (see ARCHITECTURE.md).

    The measurements are None only for a variant that was never scored (``built`` false).
    """

    file: str
    passed: bool  # usable by the runtime: it passed the gate, or it failed and --keep-refused kept it
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
    # From counts of rows: (0.81 - 0.80) * 100 is 1.0000000000000009, over an allowed 1 point, and a
    # variant that lost exactly the allowed rows was refused and removed ("drops 1.00 points (allowed 1)").
    lost_rows = int((reference.argmax(axis=1) == labels).sum()) - int((logits.argmax(axis=1) == labels).sum())
    drop = lost_rows * 100.0 / max(1, len(labels))
    agreement = float((logits.argmax(axis=1) == reference.argmax(axis=1)).mean())
    diff = float(np.abs(logits - reference).max())
    reasons = []
    if not np.isfinite(logits).all():
        reasons.append("non-finite logits")
    if drop > max_drop_pts + 1e-9:  # a limit typed as 0.3 is not exactly 0.3 either
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
    unscored and without a file. ``--keep-refused`` cannot keep it, since there is nothing to keep."""
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
        hints.append(
            "--max-accuracy-drop changes the allowance, --keep-refused keeps refused variants "
            "(with --force, as the bundle is exported now)"
        )
    if not all(r.built for r in failed.values()):
        hints.append("--keep-refused cannot keep a variant that was not built")
    error = AccuracyGateError(
        f"accuracy gate refused {len(failed)} variant(s) on {rows} rows of {source}: {lines}. "
        f"Refused files were removed; {'; '.join(hints)}"
    )
    if "fp32" in failed:  # fp32 differing from eager PyTorch is an export bug, not a precision trade-off
        error.exit_code = 1
    return error


@dataclass
class Gate:
    """What every variant of one export is judged against: the gate rows, eager PyTorch's logits on them,
    and the allowance. :meth:`score` runs one candidate file and decides on it."""

    bundle: Bundle
    eval_set: EvalSet
    reference: np.ndarray  # (N, n_labels) eager PyTorch logits, row order
    max_drop_pts: float  # --max-accuracy-drop
    keep_refused: bool  # --keep-refused: keep (and mark usable) what the gate refuses

    def score(self, name: str, path: Path, inference_precision: str | None = None) -> VariantResult:
        """Run the candidate ``path`` (in the staging folder inside the bundle) as predict would, and judge
        it; ``--keep-refused`` keeps a refused one. Raises :class:`ExportError` when onnxruntime cannot run it.
        ``inference_precision``: see :func:`run_candidate`."""
        from clsrun.runtime.bundle import VARIANT_FILES

        scored = run_candidate(
            self.bundle,
            path.relative_to(self.bundle.root).as_posix(),
            name,
            self.eval_set,
            inference_precision=inference_precision,
        )
        result = judge(
            name,
            VARIANT_FILES[name],
            scored.logits,
            self.reference,
            self.eval_set.labels,
            self.max_drop_pts,
            scored.seconds,
            scored.provider,
            sum(f.stat().st_size for f in variant_files(path)),
        )
        result.details["ran"] = scored.ran
        if not result.gate_passed and self.keep_refused:
            result.passed, result.forced = True, True
        return result
