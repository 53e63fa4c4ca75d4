"""The backends bench compares, each opened as a call that scores rows of the shared inputs.

- ``pipeline``: ``transformers.pipeline("text-classification")`` on the bundle's encoder (BERT bundles), the
  way a transformers user would run it. It runs transformers' own head (``BertForSequenceClassification``:
  pooler and linear layer). For a ``cls`` bundle that is clsrun's head; for a ``mean`` bundle it is not
  (clsrun averages the token vectors), so the weights the bundle lacks are newly initialised and the row is
  a speed reference only: the result says so (``details["head"]``) and transformers' load report is not
  printed.
- ``torch-fp32`` / ``torch-bf16``: eager PyTorch through the runtime's torch runner (a plugin).
- ``onnx-fp32`` / ``onnx-int8`` / ``onnx-fp16``: onnxruntime on the exported variants, through the runner
  ``clsrun predict`` uses; one stream, since bench calls it one batch at a time.
- ``predict``: the whole ``clsrun predict`` path (``score_file``) on a file holding the same texts.

A backend that cannot run here raises :class:`BackendUnavailable` with the reason, shown in the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clsrun.bench.config import BACKENDS
from clsrun.bench.inputs import Inputs, Planned, planned_for
from clsrun.runtime.bundle import SPEC_FILE, Bundle
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.errors import BundleError, ClsrunError, UsageError
from clsrun.runtime.variant import Variant


class BackendUnavailable(ClsrunError):
    """This backend cannot run here (not exported, wrong kind, no device support): the reason is shown."""


CallRows = Callable[[np.ndarray], None]  # score these rows (indices into Inputs.tokens); returns when done


@dataclass
class Backend:
    """A loaded backend: ``call`` for model backends, ``bulk`` for the file path, ``details`` for the report."""

    details: dict[str, Any]
    call: CallRows | None = None
    bulk: Callable[[], dict[str, Any]] | None = None  # the predict path: one whole run, returns its manifest
    precision: str = "fp32"  # which matmul peak its FLOP/s is compared with
    torch_cuda: bool = False  # torch on CUDA: peak memory also from torch.cuda.max_memory_allocated
    planned: Planned | None = None  # the rows as this backend's classifier runs them; None: the shared plan


def open_backend(
    name: str, bundle: Bundle, inputs: Inputs, device: str, threads: int, workdir: Path
) -> Backend:
    """Load backend ``name``; raise :class:`BackendUnavailable` with the reason when it cannot run here."""
    if name.startswith("onnx-"):
        return _onnx_backend(name.split("-", 1)[1], bundle, inputs, device, threads)
    if name.startswith("openvino-"):
        return _openvino_backend(name.split("-", 1)[1], bundle, inputs, device, threads)
    if name.startswith("torch-"):
        return _torch_backend(name.split("-", 1)[1], bundle, inputs, device, threads)
    if name == "pipeline":
        return _pipeline_backend(bundle, inputs, device, threads)
    if name == "predict":
        return _predict_backend(bundle, inputs, device, threads, workdir)
    raise UsageError(f"--backends: unknown backend {name!r}; choose from {', '.join(BACKENDS)}")


def _classifier(bundle: Bundle, variant: Variant) -> Classifier:
    """The runtime's classifier for ``variant``; what it cannot run is a reason, not a failure."""
    try:
        return Classifier.load(bundle, variant)
    except ClsrunError as e:
        raise BackendUnavailable(str(e)) from e


def _rows_call(clf: Classifier, planned: Planned) -> CallRows:
    tokens = planned.tokens

    def call(rows: np.ndarray) -> None:
        clf.run(clf.inputs(tokens, rows))  # logits come back as host numpy: device work is finished

    return call


def _model_backend(clf: Classifier, inputs: Inputs, precision: str, **extra: Any) -> Backend:
    """A backend that runs the runtime's classifier on the batches it plans in ``clsrun predict``."""
    planned = planned_for(clf, inputs)
    return Backend(
        clf.describe(), call=_rows_call(clf, planned), precision=precision, planned=planned, **extra
    )


def _onnx_backend(precision: str, bundle: Bundle, inputs: Inputs, device: str, threads: int) -> Backend:
    if precision == "fp16" and device != "cuda":
        raise BackendUnavailable("fp16 is benchmarked on CUDA only (onnxruntime's CPU kernels emulate it)")
    if precision == "int8" and device == "cuda":
        raise BackendUnavailable(
            "int8 is benchmarked on CPU only (no fast int8 kernels on the CUDA provider)"
        )
    clf = _classifier(bundle, Variant("onnx", precision, device, threads, streams=1))  # type: ignore[arg-type]
    return _model_backend(clf, inputs, precision)


def _openvino_backend(precision: str, bundle: Bundle, inputs: Inputs, device: str, threads: int) -> Backend:
    if device == "cuda":
        raise BackendUnavailable("OpenVINO variants run on the CPU only")
    clf = _classifier(bundle, Variant("openvino", precision, "cpu", threads, streams=1))  # type: ignore[arg-type]
    return _model_backend(clf, inputs, precision)


def _torch_backend(precision: str, bundle: Bundle, inputs: Inputs, device: str, threads: int) -> Backend:
    import torch

    if precision == "bf16":
        if device == "cuda" and not torch.cuda.is_bf16_supported():
            raise BackendUnavailable("this GPU has no bf16 support")
        if device == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            raise BackendUnavailable("this CPU has no fast bf16 (it needs AVX512-BF16 or AMX)")
    clf = _classifier(bundle, Variant("torch", precision, device, threads, streams=1))  # type: ignore[arg-type]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    return _model_backend(clf, inputs, clf.describe()["precision"], torch_cuda=device == "cuda")


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' warnings (its load report on newly initialised weights) and progress bars off for the
    block: the bench's report says what the pipeline runs instead."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # its "Loading weights" bar: bench says what it is doing itself
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def timing_pipeline(bundle: Bundle, device: str) -> tuple[Any, list[str]]:
    """``transformers.pipeline("text-classification")`` on the bundle's encoder, and the weights transformers
    had to initialise because the bundle does not hold them (empty: it runs clsrun's own head).

    Built from ``AutoModelForSequenceClassification`` with ``ignore_mismatched_sizes``, so a bundle whose
    head transformers' class cannot take (mean pooling) still gives the same encoder under a new head: the
    same cost, not clsrun's labels. Nothing from the folder runs (``trust_remote_code=False``).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    _refuse_unlisted(bundle)
    safe: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
    with _quiet_transformers():
        model, info = AutoModelForSequenceClassification.from_pretrained(
            bundle.root, ignore_mismatched_sizes=True, output_loading_info=True, use_safetensors=True, **safe
        )
        tokenizer = AutoTokenizer.from_pretrained(bundle.root, **safe)
    fresh = sorted({*info.get("missing_keys", ()), *(k for k, *_ in info.get("mismatched_keys", ()))})
    pipe = pipeline(
        "text-classification", model=model, tokenizer=tokenizer, device=0 if device == "cuda" else -1
    )
    return pipe, fresh


# What transformers may read from a model folder besides the weights: configs, tokenizer files, templates.
_HF_READS = (".json", ".txt", ".model", ".jinja")


def _refuse_unlisted(bundle: Bundle) -> None:
    """transformers reads a folder's files by name, not through ``bundle.file``: a config or tokenizer file
    that ``clsrun.json`` does not list (so its hash and its ``auto_map`` were never checked) is refused."""
    unlisted = sorted(
        p.name
        for p in bundle.root.iterdir()
        if p.is_file() and p.suffix in _HF_READS and not bundle.has(p.name) and p.name != SPEC_FILE
    )
    if unlisted:
        raise BundleError(
            f"{bundle.root}: holds {', '.join(unlisted[:3])}, which {SPEC_FILE} does not list; transformers "
            "would read it unchecked: remove it, or run the pipeline on a folder of the listed files"
        )


def _head(bundle: Bundle, fresh: list[str]) -> str:
    """What head the pipeline runs, in the words the report prints."""
    if not fresh:
        return "clsrun's head (same labels as clsrun)"
    pooling = bundle.spec.model.get("pooling", "?")
    return (
        f"not clsrun's head: transformers' BertForSequenceClassification with {len(fresh)} weights newly "
        f"initialised ({', '.join(fresh[:4])}{', ...' if len(fresh) > 4 else ''}) where clsrun uses "
        f"{pooling} pooling; speed reference only, its labels are not clsrun's"
    )


def _pipeline_backend(bundle: Bundle, inputs: Inputs, device: str, threads: int) -> Backend:
    if bundle.spec.kind != "bert":
        raise BackendUnavailable(
            f"a {bundle.spec.kind} bundle is not a Hugging Face model; the pipeline runs BERT bundles only"
        )
    import torch

    torch.set_num_threads(threads)
    try:
        pipe, fresh = timing_pipeline(bundle, device)
    except BundleError as e:
        raise BackendUnavailable(str(e)) from e
    except (OSError, ValueError, RuntimeError) as e:  # transformers refuses the folder: say why
        raise BackendUnavailable(f"transformers cannot open this bundle as a pipeline: {e}") from e
    texts, max_length = inputs.texts, bundle.spec.max_length

    def call(rows: np.ndarray) -> None:
        batch = [texts[i] for i in rows]
        pipe(batch, batch_size=len(batch), truncation=True, max_length=max_length)

    details = {
        "backend": "transformers.pipeline",
        "precision": "fp32",
        "device": device,
        "threads": threads,
        "head": _head(bundle, fresh),
        "same_head_as_clsrun": not fresh,
    }
    return Backend(details, call=call, torch_cuda=device == "cuda")


def _predict_backend(bundle: Bundle, inputs: Inputs, device: str, threads: int, workdir: Path) -> Backend:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from clsrun.runtime.input_files import ReadOptions
    from clsrun.runtime.score import OutputOptions, score_file

    clf = _classifier(bundle, Variant(device=device, threads=threads))  # type: ignore[arg-type]
    if inputs.whole_file:  # literally the file a user would run `clsrun predict` on
        source, text_col = inputs.path, inputs.text_col
    else:  # the first --max-rows texts, as a file of their own
        source, text_col = workdir / "bench_input.csv", "text"
        pacsv.write_csv(pa.table({"text": inputs.raw}), source)
    target = workdir / "bench_input.scores.csv"

    def bulk() -> dict[str, Any]:
        rerun = OutputOptions(overwrite=True)  # each repeat replaces the last one's output
        manifest: dict[str, Any] = score_file(source, target, clf, ReadOptions(text_col), rerun).manifest
        return manifest

    return Backend({**clf.describe(), "input": str(source)}, bulk=bulk, precision=clf.choice.precision)
