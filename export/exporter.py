"""``export_bundle``: load, export, optimise, derive variants, gate, then write inside the bundle.

Shaped like a converter (load, validate, optimise, quantise, save): every file is built in a staging
folder inside the bundle, scored by the accuracy gate (``gate.py``, through the runtime's own runner), and
only then moved into ``onnx/``; the previous export (with ``force``) is replaced only once the new one is
complete. Refused variants are deleted. Finally ``export_report.json`` is written (``report.py``) and
``bundle.rehash(...)`` lists the files it wrote beside those already listed (nothing else in the folder).

fp32 failing to build or to run stops the export: every other variant derives from it. An int8 or fp16
variant whose build raises :class:`ExportError` (quantizer, fp16 converter, or onnxruntime unable to run the
file) is refused like a gate failure instead (``gate.build_failure``): the other variants are still built,
gated and installed, the report records ``"build failed: ..."`` as its reason, and the export ends with the
same :class:`AccuracyGateError`. int8 is ``int8.py`` (dynamic, and static QDQ when it wins).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clsrun.export.gate import (
    EvalSet,
    Gate,
    VariantResult,
    build_failure,
    eager_logits,
    gate_error,
    load_eval_set,
)
from clsrun.export.optimize import FUSED_OPS
from clsrun.export.quantize import Int8Options
from clsrun.export.report import ExportReport, report_json
from clsrun.runtime import stopping
from clsrun.runtime.batching import BatchOptions
from clsrun.runtime.bundle import (
    EXPORT_REPORT,
    HF_CONFIG_FILE,
    ONNX_DIR,
    ONNX_FILES,
    OPENVINO_DIR,
    OPENVINO_FILES,
    SPEC_FILE,
    STAGING_PREFIX,
    VARIANT_FILES,
    Bundle,
    is_variant_file,
    openvino_weights,
    sha256_file,
)
from clsrun.runtime.errors import (
    AlreadyExportedError,
    BundleError,
    ExportError,
    InternalError,
    UsageError,
    damaged,
    require,
)
from clsrun.runtime.files import atomic_write_text, move_into_place
from clsrun.runtime.outlock import OutputLock

if TYPE_CHECKING:
    import torch

    from clsrun.trainer.ngram import NgramLinear

log = logging.getLogger(__name__)

# The variants export builds, in build order: ONNX, then OpenVINO IR (``ov-``: needs clsrun[openvino]).
EXPORT_PRECISIONS = (*ONNX_FILES, *OPENVINO_FILES)
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
    """What ``clsrun export`` asks for; each field but ``batching`` is one CLI option."""

    precisions: tuple[str, ...] = ("fp32", "int8")
    max_accuracy_drop: float = 1.0  # accuracy points a variant may lose against eager PyTorch
    force: bool = False  # export again over an earlier export (the gate still judges every variant)
    keep_refused: bool = False  # keep, marked usable, variants the gate refused on accuracy
    eval_data: Path | None = None  # labelled rows for the gate instead of the bundle's validation rows
    eval_columns: tuple[str, str] = ("text", "label")  # eval_data's text and label columns
    int8: Int8Options = field(default_factory=Int8Options)
    max_rows: int | None = None  # cap on gate rows (None: all)
    batching: BatchOptions = field(default_factory=BatchOptions)  # how the gate batches: predict's defaults

    def __post_init__(self) -> None:
        unknown = [p for p in self.precisions if p not in EXPORT_PRECISIONS]
        if unknown or not self.precisions:
            given = ", ".join(map(repr, unknown)) if unknown else "nothing"
            raise UsageError(f"--precision takes a comma list of {', '.join(EXPORT_PRECISIONS)}; got {given}")
        # fp32 is always built: int8 and fp16 derive from it, and it is the runtime's fallback.
        self.precisions = tuple(p for p in EXPORT_PRECISIONS if p in {"fp32", *self.precisions})
        if not 0 <= self.max_accuracy_drop <= 100:  # NaN and inf too (inf would be written as bare Infinity)
            raise UsageError(
                f"--max-accuracy-drop must be between 0 and 100 points, not {self.max_accuracy_drop}"
            )
        if self.max_rows is not None and self.max_rows < 1:
            raise UsageError(f"--max-rows must be positive, not {self.max_rows}")


def _export_files() -> list[str]:
    """Every file an export may write (OpenVINO IR files with their weights), the report last."""
    ir = [f for xml in OPENVINO_FILES.values() for f in (xml, openvino_weights(xml))]
    return [*ONNX_FILES.values(), *ir, EXPORT_REPORT]


def already_exported(bundle: Bundle) -> list[str]:
    """The export files already present in the bundle folder (hashed or not)."""
    names = _export_files()
    return [rel for rel in names if (bundle.root / rel).exists()]


class _Phases:
    """Seconds per phase of an export, for the report: each :meth:`done` closes the phase that just ran."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def done(self, phase: str) -> None:
        self.seconds[phase] = time.perf_counter() - self.start - sum(self.seconds.values())


@contextmanager
def _staging(bundle: Bundle) -> Iterator[Path]:
    """A staging folder inside the bundle (same file system: installing is a rename), removed at the end."""
    stage = Path(tempfile.mkdtemp(dir=bundle.root, prefix=STAGING_PREFIX))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _sample(eval_set: EvalSet) -> dict[str, np.ndarray]:
    """A batch to trace the export with: at least 2 rows and 2 positions, so no axis gets baked in as 1."""
    for rows in eval_set.batches:
        feeds = eval_set.feeds(rows)
        first = next(iter(feeds.values()))
        if first.shape[0] >= 2 and first.shape[1] >= 2:
            return feeds
    return eval_set.feeds(eval_set.batches[-1])


def _bert_shape(bundle: Bundle) -> tuple[int, int]:
    """(num_heads, hidden_size) from the bundle's Hugging Face ``config.json``."""
    with damaged(bundle.root / HF_CONFIG_FILE, "a BERT config with num_attention_heads and hidden_size"):
        config = json.loads(bundle.file(HF_CONFIG_FILE).read_text(encoding="utf-8"))
        return int(config["num_attention_heads"]), int(config["hidden_size"])


def _load_eager(bundle: Bundle) -> torch.nn.Module:
    """The bundle's eager model exactly as ``load_model`` gives it (the torch backend's model)."""
    from clsrun.trainer.models import load_model

    return load_model(bundle).eval()


@dataclass
class Fp32Built:
    """The fp32 variant's file, and the graph the other variants are derived from: the same file, except
    for the n-gram model, whose fp32 variant is its sparse graph (``ngram_graph.py``: a counting graph for
    raw tf, a weighing one for sublinear tf), which only onnxruntime runs, while int8, fp16 and OpenVINO
    derive from the dense graph ``torch.onnx`` wrote."""

    path: Path
    source: Path
    details: dict[str, Any] = field(default_factory=dict)  # for the report's fp32 line (how it was chosen)


def build_fp32(bundle: Bundle, model: torch.nn.Module, eval_set: EvalSet, stage: Path) -> Fp32Built:
    """Export the eager model to ONNX (and fuse it, for BERT; the sparse graph beside it, for n-grams); the
    fp32 file in ``stage`` and the graph other variants derive from."""
    import torch

    from clsrun.export.onnx_export import OUTPUT_NAME, export_onnx, use_eager_attention
    from clsrun.export.optimize import optimize_bert

    sample = {k: torch.from_numpy(v) for k, v in _sample(eval_set).items()}
    target = stage / "model.onnx"
    if bundle.spec.kind == "ngram":
        from clsrun.export.ngram_graph import write_sparse_graph
        from clsrun.runtime.encode_ngram import NgramEncoder
        from clsrun.trainer.ngram import NgramLinear

        encoder = eval_set.encoder  # the bundle's, loaded for the gate
        if not isinstance(model, NgramLinear) or not isinstance(encoder, NgramEncoder):
            raise InternalError(
                f"an ngram bundle loaded as {type(model).__name__} with {type(encoder).__name__}, not NgramLinear"
                " with NgramEncoder"
            )
        dense = export_onnx(model, sample, stage / "model.dense.onnx")
        if encoder.scheme.tf != "raw":  # only raw-tf weights are linear in the counts: a weighing graph
            return Fp32Built(write_sparse_graph(model, target, OUTPUT_NAME), dense)
        return _faster_sparse_graph(bundle, model, encoder.vocabulary.idf, eval_set, stage, dense)
    if bundle.spec.kind != "bert":
        path = export_onnx(model, sample, target)
        return Fp32Built(path, path)
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
    return Fp32Built(target, target)


def _faster_sparse_graph(
    bundle: Bundle, model: NgramLinear, idf: np.ndarray, eval_set: EvalSet, stage: Path, dense: Path
) -> Fp32Built:
    """A raw-tf n-gram model's fp32 variant: its counting or its weighing graph, whichever scored the gate's
    texts faster here (``ngram_graph.faster_sparse_graph``); both are kept in the report's fp32 line."""
    from clsrun.export.ngram_graph import faster_sparse_graph, write_sparse_graph
    from clsrun.export.onnx_export import OUTPUT_NAME

    graphs = {
        "counting": write_sparse_graph(model, stage / "model.counting.onnx", OUTPUT_NAME, idf),
        "weighing": write_sparse_graph(model, stage / "model.weighing.onnx", OUTPUT_NAME),
    }
    rates = faster_sparse_graph(bundle, graphs, eval_set.texts)
    chosen = max(rates, key=lambda name: rates[name])
    target = graphs[chosen].replace(stage / "model.onnx")
    for name, path in graphs.items():
        if name != chosen:
            path.unlink()
    return Fp32Built(target, dense, {"sparse_graph": chosen, "sparse_graph_rows_per_s": rates})


def _reported_ops(path: Path) -> dict[str, int]:
    from clsrun.export.optimize import count_ops

    return {op: n for op, n in count_ops(path).items() if op in REPORTED_OPS}


def export_bundle(
    bundle_path: Path | str, options: ExportOptions | None = None, **fields: Any
) -> ExportReport:
    """Export a bundle's model to the ONNX variants ``options`` asks for, gate them, and record the result.

    ``fields`` are a shorthand for ``ExportOptions`` fields when no ``options`` is given
    (``export_bundle(path, precisions=("fp32", "int8", "fp16"), force=True)``).

    Raises :class:`AlreadyExportedError` (bad usage, exit 2) when the bundle was already exported and
    ``force`` is off, :class:`ExportError` when fp32 cannot be built or run, and :class:`AccuracyGateError`
    (after writing the report, installing the passing variants and removing the refused files; its
    ``report`` is the :class:`ExportReport`) when a variant loses more accuracy than allowed or an int8/fp16
    variant could not be built (``keep_refused`` keeps the former, never the latter).
    """
    if options is None:
        options = ExportOptions(**fields)
    elif fields:
        raise UsageError(f"give either options or option fields, not both ({', '.join(fields)})")
    root = Path(bundle_path)
    if not root.is_dir():
        Bundle.load(root)  # raises the one-line BundleError (missing, or a file)
    for module in ("torch", "onnx"):  # the eager reference and torch.onnx: a scoring-only install has neither
        require(module, "train")
    with OutputLock.acquire(root, role="bundle"):  # one writer of a bundle: train or export, once at a time
        _remove_stale_staging(root)
        if options.force:
            _forget_broken_variants(root)
        return _export(root, options)


def _forget_broken_variants(root: Path) -> None:
    """For ``--force``: when ``clsrun.json`` lists variant files that are gone (an export stopped while it
    replaced them: the old removed, the new not yet in) or changed (damaged on disk, edited), unlist those,
    so the bundle loads and this export builds them again; the intact variants stay listed, so an export
    that fails after this (a bad --eval-data) leaves them running (unlisting every variant left predict on
    eager PyTorch, saying the bundle was "never exported"). The other files keep the hashes recorded
    at training (only the variants are hashed here: a changed weights file is still caught when read)."""
    path = root / SPEC_FILE
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        files = spec["files"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return  # Bundle.load says what is wrong with it
    if not isinstance(files, dict):
        return
    variants = [name for name in files if is_variant_file(str(name))]
    missing = [name for name in variants if not (root / name).is_file()]
    changed = [n for n in variants if n not in missing and sha256_file(root / n) != files[n]]
    if missing:
        log.warning(
            "%s: %s listed but missing (an export was stopped while replacing its variants); exporting them "
            "again",
            root,
            ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else ""),
        )
    if changed:
        log.warning("%s: %s changed or damaged since export; exporting again", root, ", ".join(changed[:3]))
    if not missing and not changed:
        return
    # Only those: an export that then fails (a bad --eval-data) leaves the rest runnable.
    broken = set(missing) | set(changed)
    spec["files"] = {name: digest for name, digest in files.items() if name not in broken}
    atomic_write_text(path, json.dumps(spec, ensure_ascii=False, indent=2) + "\n")


def _remove_stale_staging(root: Path) -> None:
    """Staging folders that a killed export left in the bundle (under the lock, none is in use)."""
    for stale in root.glob(f"{STAGING_PREFIX}*"):
        if stale.is_dir():
            log.info("removed %s, left by an export that was stopped", stale)
            shutil.rmtree(stale, ignore_errors=True)


def _export(bundle_path: Path, options: ExportOptions) -> ExportReport:
    """:func:`export_bundle` once the bundle is locked."""
    phases = _Phases()
    bundle = Bundle.load(bundle_path)
    existing = already_exported(bundle)
    listed = [rel for rel in existing if rel in bundle.files]
    if listed and not options.force:
        raise AlreadyExportedError(
            f"{bundle.root} is already exported ({', '.join(listed)}); use --force to export again"
        )
    if listed:
        _say_dropped(bundle, options.precisions)
    if existing and not listed:  # files of a first export stopped before it recorded them: never used
        log.warning(
            "%s: replacing export files that no finished export recorded (%s)",
            bundle.root,
            ", ".join(existing),
        )
    eval_set = load_eval_set(
        bundle, options.eval_data, options.max_rows, options.batching, options.eval_columns
    )
    model = _load_eager(bundle)
    phases.done("load")
    gate = Gate(
        bundle, eval_set, _reference(model, eval_set, bundle), options.max_accuracy_drop, options.keep_refused
    )
    phases.done("eager_reference")
    with _staging(bundle) as stage:
        built, results = _build_variants(model, gate, options, stage, phases)
        speeds = measure_speeds(gate, built, results)
        phases.done("speeds")
        fusions = {name: _reported_ops(path) for name, path in built.items() if name in ONNX_FILES}
        # A stop from here lands once clsrun.json lists the new files: one while the old variants were
        # removed and the new ones not yet listed left a bundle predict refused until export --force.
        with stopping.shielded(then_raise=False):
            _install(bundle, built, results)
            phases.done("install")
            return _finish(bundle, options, gate, results, fusions, phases, speeds)


def _say_dropped(bundle: Bundle, precisions: tuple[str, ...]) -> None:
    """One line naming the passed variants of the export being replaced that ``--precision`` leaves out:
    ``--force --precision fp16`` removed int8 without a word, and ``--precision int8`` then failed."""
    try:
        variants = (bundle.export_report() or {}).get("variants") or {}
    except BundleError:
        return  # a damaged report: replaced, as the export replaces it anyway
    dropped = [
        n for n, v in variants.items() if isinstance(v, dict) and v.get("passed") and n not in precisions
    ]
    if dropped:
        log.warning(
            "%s: %s, exported before, %s not in --precision %s and will be removed (name %s to keep)",
            bundle.root,
            ", ".join(dropped),
            "is" if len(dropped) == 1 else "are",
            ",".join(precisions),
            "it" if len(dropped) == 1 else "them",
        )


def _reference(model: torch.nn.Module, eval_set: EvalSet, bundle: Bundle) -> np.ndarray:
    """Eager PyTorch's (N, n_labels) logits on the gate rows: what every variant is compared with."""
    reference = eager_logits(model, eval_set)
    if reference.shape != (eval_set.rows, len(bundle.labels)):
        raise InternalError(
            f"eager logits have shape {reference.shape}, expected {(eval_set.rows, len(bundle.labels))}"
        )
    return reference


def _build_variants(
    model: torch.nn.Module, gate: Gate, options: ExportOptions, stage: Path, phases: _Phases
) -> tuple[dict[str, Path], dict[str, VariantResult]]:
    """Build and gate every variant asked for in ``stage``: fp32 (its failure stops the export), then int8
    and fp16 (a failure refuses only that variant). Returns the files built and every variant's result."""
    from clsrun.export.int8 import build_int8
    from clsrun.export.openvino import build_openvino

    fp32 = build_fp32(gate.bundle, model, gate.eval_set, stage)
    built: dict[str, Path] = {"fp32": fp32.path}
    phases.done("export_fp32")
    results = {"fp32": gate.score("fp32", built["fp32"])}
    results["fp32"].details.update(fp32.details)
    phases.done("gate_fp32")
    for name in options.precisions[1:]:
        try:
            if name == "int8":
                int8 = build_int8(fp32.source, stage, gate, options.int8)
                built[name], results[name] = int8.path, int8.result
                int8.result.details["quantization"] = int8.info
            elif name in OPENVINO_FILES:
                built[name], results[name] = build_openvino(name, fp32.source, stage, gate, options.int8)
            else:
                built[name] = _build_fp16(fp32.source, stage)
                results[name] = gate.score(name, built[name])
        except ExportError as e:
            built.pop(name, None)  # whatever it left in the staging folder goes with the folder
            results[name] = build_failure(VARIANT_FILES[name], e)
        phases.done(name)
    return built, results


def _build_fp16(fp32: Path, stage: Path) -> Path:
    """The fp16 file converted from ``fp32``."""
    from clsrun.export.fp16 import convert_fp16

    path = stage / "model.fp16.onnx"
    convert_fp16(fp32, path)
    return path


def measure_speeds(gate: Gate, built: dict[str, Path], results: dict[str, VariantResult]) -> dict[str, Any]:
    """Rows/s of every passed variant on this CPU, timed alternating on the gate rows as predict runs them
    (``runtime.speeds.measure``): what ``--backend auto`` picks by on a CPU with the same model and flags.
    Empty when fewer than two variants passed (nothing to choose between)."""
    import os

    from clsrun.runtime.machine import cpu_info
    from clsrun.runtime.speeds import SPEED_ROUNDS, SPEED_ROWS, cpu_key, measure
    from clsrun.runtime.variant import staged_candidate

    bundle, choices = gate.bundle, []
    for name, path in built.items():
        if results[name].passed:
            bundle, choice = staged_candidate(bundle, path.relative_to(bundle.root).as_posix(), name, "cpu")
            if choice.backend == "openvino":  # as predict will run it: bf16 where its gate pass held
                bf16 = results[name].details.get("bf16") or {}
                choice = replace(choice, inference_precision="bf16" if bf16.get("passed") is True else "f32")
            choices.append(choice)
    if len(choices) < 2:
        return {}
    texts = gate.eval_set.texts[:SPEED_ROWS]
    rates = measure(bundle, choices, texts, SPEED_ROUNDS)
    return {
        "cpu": cpu_key(),
        "cpu_model": cpu_info().model,
        "rows": len(texts),
        "rounds": SPEED_ROUNDS,
        "rows_per_s": rates,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _install(bundle: Bundle, built: dict[str, Path], results: dict[str, VariantResult]) -> None:
    """Replace the bundle's export files with the passing (or forced) variants; drop the refused ones."""
    (bundle.root / ONNX_DIR).mkdir(exist_ok=True)
    for rel in _export_files():
        (bundle.root / rel).unlink(missing_ok=True)
    for name, path in built.items():
        result = results[name]
        if not result.passed:
            result.kept = False
            continue  # the staging folder goes, and the refused file with it
        target = VARIANT_FILES[name]
        if name in OPENVINO_FILES:  # the IR's weights move beside it, under the name the runtime opens
            (bundle.root / OPENVINO_DIR).mkdir(exist_ok=True)
            move_into_place(path.with_suffix(".bin"), bundle.root / openvino_weights(target))
        move_into_place(path, bundle.root / target)


# Fewer gate rows than this cannot tell a variant that loses a point from one that does not.
WEAK_GATE_ROWS = 20


def _warn_if_weak(bundle: Bundle, rows: int, accuracy: float) -> None:
    """Say when the gate cannot tell a worse variant from a good one, so its passes prove little: too few
    rows (``--max-rows 1`` passed every variant, fp16 on CPU then measured fastest on that one row), or gate
    labels eager PyTorch gets no better than chance (another task's file: no variant can lose accuracy there)."""
    chance = 1.0 / max(1, len(bundle.labels))
    if rows < WEAK_GATE_ROWS:
        log.warning(
            "%s: the accuracy gate judged every variant on %d row(s), too few to tell one that loses accuracy "
            "(give more with --max-rows or --eval-data)",
            bundle.root,
            rows,
        )
    if accuracy <= chance:
        log.warning(
            "%s: eager PyTorch scores %.4f on the gate rows, no better than chance (%.4f): are they labelled for "
            "this model's task? A variant cannot lose accuracy there, so the gate's passes prove little",
            bundle.root,
            accuracy,
            chance,
        )


def _warn_unless_reproduced(bundle: Bundle, rows: int, accuracy: float) -> None:
    """Say so when eager PyTorch, on all of the bundle's own validation rows, misses the accuracy training
    recorded on those rows: the model is deterministic, so a gap means the bundle was altered where no hash
    looks (its labels in ``clsrun.json`` reordered or renamed) and every variant would inherit the error."""
    training = bundle.spec.training or {}
    recorded = (training.get("metrics") or {}).get("accuracy")
    if not isinstance(recorded, int | float) or training.get("val_rows") != rows:
        return  # a sample of the rows, or a bundle that recorded none: nothing to compare with
    if abs(float(recorded) - accuracy) > 0.02:
        log.warning(
            "%s: eager PyTorch scores %.4f on the bundle's own %d validation rows, where training recorded "
            "%.4f; the bundle may have been edited (the labels in clsrun.json reordered or renamed?)",
            bundle.root,
            accuracy,
            rows,
            recorded,
        )


def _finish(
    bundle: Bundle,
    options: ExportOptions,
    gate: Gate,
    results: dict[str, VariantResult],
    fusions: dict[str, dict[str, int]],
    phases: _Phases,
    speeds: dict[str, Any],
) -> ExportReport:
    """Write the report, rehash the bundle, and raise the gate's error when a variant was refused."""
    eval_set, reference = gate.eval_set, gate.reference
    ref_accuracy = float((reference.argmax(axis=1) == eval_set.labels).mean())
    if options.eval_data is None:
        _warn_unless_reproduced(bundle, eval_set.rows, ref_accuracy)
    _warn_if_weak(bundle, eval_set.rows, ref_accuracy)
    settings = {"max_accuracy_drop_pts": options.max_accuracy_drop, "forced": options.keep_refused}
    data = report_json(bundle, settings, eval_set, ref_accuracy, results, fusions, phases.seconds)
    data["speeds"] = speeds
    atomic_write_text(bundle.root / EXPORT_REPORT, json.dumps(data, indent=2) + "\n")
    bundle.rehash(_export_files())
    report = ExportReport(bundle.root / EXPORT_REPORT, data, results)
    error = gate_error(results, eval_set.rows, eval_set.source)
    if error is not None:
        error.report = report
        raise error
    kept = [f"{name} ({r.reason})" for name, r in results.items() if r.forced]
    if kept:  # said under -q too: the export exits 0, and a script must still see what it kept
        log.warning(
            "%s: kept what the accuracy gate refused (--keep-refused): %s; predict runs it only when "
            "--precision names it",
            bundle.root,
            "; ".join(kept),
        )
    return report
