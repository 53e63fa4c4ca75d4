"""``clsrun bench``: throughput and latency of every way to run a bundle, measured on the same texts.

What is compared (each a "backend" of the report; one that cannot run says why instead of vanishing):

- ``pipeline``: ``transformers.pipeline("text-classification")`` on the bundle folder (BERT bundles);
- ``torch-fp32`` / ``torch-bf16``: eager PyTorch (``clsrun.trainer.models.load_model``) through the
  runtime's torch runner; bf16 where the device supports it;
- ``onnx-fp32`` / ``onnx-int8`` / ``onnx-fp16``: onnxruntime on the bundle's exported variants
  (fp16 on CUDA only), through the same runner ``clsrun predict`` uses;
- ``predict``: the real ``clsrun predict`` path (``clsrun.runtime.score.score_file``): read, encode,
  batch, infer, write, end to end on a file holding the same texts.

How (nanoGPT's ``bench.py`` is the model): the texts of FILE are read, normalised and tokenized once and
every backend gets exactly those inputs. Bulk throughput runs the length-sorted, token-budget batches
``predict`` plans; latency runs consecutive rows in file order at each batch size. Every series is warmed
up first, then repeated; the median is reported with min and max. On CUDA each call is synchronised.
Achieved FLOP/s (matmul and convolution FLOPs of the padded batches, counted by
``torch.utils.flop_counter`` on the eager model) is divided by a matrix-multiply peak measured in the
same run. Peak memory is the process's peak RSS while the backend was loaded and run, sampled by a
background thread (and ``torch.cuda.max_memory_allocated`` for torch on CUDA).

Writing the JSON, Markdown and plots is ``bench_report.py``.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clsrun.runtime.bundle import Bundle
from clsrun.runtime.encode import Tokens, make_encoder
from clsrun.runtime.errors import ClsrunError, InputError, UsageError
from clsrun.runtime.variant import Variant, resolve_device

BACKENDS = ("pipeline", "torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8", "onnx-fp16", "predict")
MATMUL_N = 2048  # square matmul size for the peak: big enough to reach the BLAS plateau on a laptop CPU


@dataclass
class BenchConfig:
    """What ``clsrun bench`` measures; every field is a command-line option."""

    bundle: Path
    data: Path
    text_col: str = "text"
    backends: tuple[str, ...] = BACKENDS
    batch_sizes: tuple[int, ...] = (1, 4, 16)
    repeats: int = 3  # timed repetitions of every series; the median is reported
    warmup: int = 3  # untimed calls before each series
    max_rows: int = 5000  # the first N non-empty texts of FILE (0: all)
    latency_calls: int = 100  # at most this many timed calls per batch size and repeat
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # every backend's threads and the matmul peak's; None: every usable core
    matmul_n: int = MATMUL_N  # size of the square matmul that measures the peak (tests use a small one)


@dataclass
class Spread:
    """Median of repeated measurements, with the extremes, so a reader sees the run-to-run noise."""

    median: float
    min: float
    max: float
    values: list[float]

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values), [float(v) for v in values])


@dataclass
class Latency:
    """Per-call latency at one batch size (all timed calls of all repeats pooled for the percentiles)."""

    batch_size: int
    calls: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rows_per_s: Spread  # batch_size x calls / wall time, per repeat


@dataclass
class BackendResult:
    """One backend's figures, or why it did not run (``status`` ``skipped`` or ``failed``)."""

    name: str
    status: str  # ok | skipped | failed
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # providers, precision, threads, file
    bulk: dict[str, Any] | None = None  # rows_per_s / tokens_per_s / seconds (Spread), padding, batches
    latency: list[Latency] = field(default_factory=list)
    compute: dict[str, Any] | None = None  # executed FLOPs, achieved FLOP/s, fraction of the peak
    memory: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchReport:
    """Everything one ``clsrun bench`` run measured; ``bench.json`` is ``asdict`` of it."""

    config: dict[str, Any]
    machine: dict[str, Any]
    versions: dict[str, str]
    inputs: dict[str, Any]  # rows, tokens, mean/max length, truncated rows
    peak: dict[str, Any]  # measured matmul peaks, FLOP/s
    results: list[BackendResult]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------
# Machine, versions, matmul peak


def machine_info(device: str) -> dict[str, Any]:
    """CPU model, cores, memory and GPU of this machine."""
    from clsrun.runtime.machine import cpu_info, default_threads

    info: dict[str, Any] = {
        "cpu": cpu_info().model,
        "logical_cores": os.cpu_count(),
        "usable_cores": default_threads(),
        "platform": platform.platform(),
        "device": device,
        "gpu": None,
    }
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
    return info


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose speed is measured."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("clsrun", "numpy", "onnxruntime", "onnxruntime-gpu", "torch", "transformers", "tokenizers"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _best_seconds(fn: Callable[[], Any], tries: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_matmul_peak(device: str, threads: int, n: int = MATMUL_N, tries: int = 5) -> dict[str, Any]:
    """FLOP/s of an ``n x n`` matmul: numpy and torch fp32 (and bf16/fp16 where they are fast).

    The best of ``tries`` is the peak (noise only ever makes a run slower). ``peak["fp32"]`` etc. are the
    larger of the libraries' figures, the reference each backend's achieved FLOP/s is divided by.
    """
    import torch
    from threadpoolctl import threadpool_limits

    flops = 2.0 * n**3
    measured: dict[str, float] = {}
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    with threadpool_limits(threads):
        measured["numpy_fp32"] = flops / _best_seconds(lambda: a @ b, tries)
    torch.set_num_threads(threads)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if device == "cuda":
        dtypes["fp16"] = torch.float16
    elif not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        dtypes.pop("bf16")
    for name, dtype in dtypes.items():
        ta = torch.from_numpy(a).to(device=device, dtype=dtype)
        tb = torch.from_numpy(b).to(device=device, dtype=dtype)

        def mm(ta: Any = ta, tb: Any = tb) -> None:
            torch.matmul(ta, tb)
            if device == "cuda":
                torch.cuda.synchronize()

        measured[f"torch_{name}"] = flops / _best_seconds(mm, tries)
    peak = {
        "fp32": max(measured["numpy_fp32"], measured["torch_fp32"]),
        **{k: measured[f"torch_{k}"] for k in ("bf16", "fp16") if f"torch_{k}" in measured},
    }
    return {"matmul_n": n, "threads": threads, "device": device, "measured": measured, "peak": peak}


def load_average() -> float | None:
    """The machine's 1-minute load average (None where the OS has none): how much other work competed."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


# ---------------------------------------------------------------------------------------------------------
# FLOPs of the model, from the eager PyTorch model


def flops_model(
    bundle: Bundle, input_names: tuple[str, ...], lengths: list[int]
) -> Callable[[int, int], float]:
    """``f(B, T)``: matmul + convolution FLOPs of one ``(B, T)`` forward pass, fitted from counts.

    ``torch.utils.flop_counter`` counts the eager model at three lengths (batch 1); FLOPs of these models
    are a quadratic in ``T`` (attention is ``T^2``; convolutions and dense layers are linear) and
    linear in ``B``, so the exact quadratic through the three points gives every shape without running it.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from clsrun.trainer.models import load_model  # type: ignore[import-not-found,unused-ignore]

    model = load_model(bundle).eval()
    points = sorted(set(lengths))
    counts = []
    for t in points:
        feed = {name: torch.ones((1, t), dtype=torch.int64) for name in input_names}
        if "token_type_ids" in feed:
            feed["token_type_ids"] = torch.zeros((1, t), dtype=torch.int64)
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            model(**feed)
        counts.append(float(counter.get_total_flops()))
    degree = min(2, len(points) - 1)
    coeffs = np.polyfit(np.asarray(points, dtype=np.float64), np.asarray(counts), degree)
    del model

    def f(batch: int, length: int) -> float:
        return batch * max(float(np.polyval(coeffs, length)), 0.0)

    return f


# ---------------------------------------------------------------------------------------------------------
# Memory


@contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """Sample this process's RSS every 5 ms; the dict gets ``baseline_mib`` and ``peak_mib`` at exit."""
    import psutil

    proc = psutil.Process()
    out = {"baseline_mib": proc.memory_info().rss / 2**20}
    peak = [out["baseline_mib"]]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            peak[0] = max(peak[0], proc.memory_info().rss / 2**20)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        out["peak_mib"] = max(peak[0], proc.memory_info().rss / 2**20)


# ---------------------------------------------------------------------------------------------------------
# The shared inputs


@dataclass
class Inputs:
    """The texts every backend scores, normalised and tokenized once."""

    raw: list[str]  # as in FILE (the predict path reads them from a file again)
    texts: list[str]  # normalised (what the encoder and the pipeline see)
    tokens: Tokens
    bulk_batches: list[np.ndarray]  # the length-sorted, token-budget batches `predict` would plan
    path: Path  # FILE
    text_col: str
    whole_file: bool  # every row of FILE was taken (no --max-rows cut): the predict path scores FILE itself


def load_inputs(bundle: Bundle, cfg: BenchConfig) -> Inputs:
    """Read the first ``max_rows`` non-empty texts of FILE, normalise, tokenize and plan bulk batches."""
    from clsrun.runtime.batching import BatchOptions, plan_batches
    from clsrun.runtime.readers import iter_texts
    from clsrun.runtime.textnorm import normalize

    raw: list[str] = []
    texts: list[str] = []
    whole_file = True
    for text in iter_texts(cfg.data, cfg.text_col):
        if cfg.max_rows and len(texts) >= cfg.max_rows:
            whole_file = False
            break
        if text is None:
            continue
        norm = normalize(text, bundle.spec.normalization)
        if norm:
            raw.append(text)
            texts.append(norm)
    if not texts:
        raise InputError(f"{cfg.data}: no non-empty texts in column {cfg.text_col!r}")
    encoder = make_encoder(bundle)
    tokens = encoder.tokenize(texts)
    batching = BatchOptions().resolved(bundle.spec.kind, "cuda" if cfg.device == "cuda" else "cpu")
    assert batching.batch_tokens is not None
    batches = plan_batches(tokens.lengths, batching.batch_tokens, batching.max_batch_rows, sort=True)
    return Inputs(raw, texts, tokens, batches, cfg.data, cfg.text_col, whole_file)


# ---------------------------------------------------------------------------------------------------------
# Backends: each turns "score these rows of the shared inputs" into a call


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


def _classifier(bundle: Bundle, variant: Variant) -> Any:
    """The runtime's classifier for ``variant``; what it cannot run is a reason, not a failure."""
    from clsrun.runtime.classifier import Classifier

    try:
        return Classifier.load(bundle, variant)
    except ClsrunError as e:
        raise BackendUnavailable(str(e)) from e


def _rows_call(clf: Any, inputs: Inputs) -> CallRows:
    encoder, tokens = clf.encoder, inputs.tokens

    def call(rows: np.ndarray) -> None:
        clf.run(encoder.pad(tokens, rows))  # logits come back as host numpy: device work is finished

    return call


def open_backend(
    name: str, bundle: Bundle, inputs: Inputs, device: str, threads: int, workdir: Path
) -> Backend:
    """Load backend ``name``; raise :class:`BackendUnavailable` with the reason when it cannot run here."""
    if name.startswith("onnx-"):
        precision = name.split("-", 1)[1]
        if precision == "fp16" and device != "cuda":
            raise BackendUnavailable(
                "fp16 is benchmarked on CUDA only (onnxruntime's CPU kernels emulate it)"
            )
        if precision == "int8" and device == "cuda":
            raise BackendUnavailable(
                "int8 is benchmarked on CPU only (no fast int8 kernels on the CUDA provider)"
            )
        # streams=1: these backends call the runner from one thread, one batch at a time
        clf = _classifier(bundle, Variant("onnx", precision, device, threads, streams=1))  # type: ignore[arg-type]
        return Backend(clf.describe(), call=_rows_call(clf, inputs), precision=precision)
    if name in ("torch-fp32", "torch-bf16"):
        import torch

        if name == "torch-bf16":
            if device == "cuda" and not torch.cuda.is_bf16_supported():
                raise BackendUnavailable("this GPU has no bf16 support")
            if device == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
                raise BackendUnavailable("this CPU has no fast bf16 (it needs AVX512-BF16 or AMX)")
        precision = name.split("-", 1)[1]
        clf = _classifier(bundle, Variant("torch", precision, device, threads, streams=1))  # type: ignore[arg-type]
        details = clf.describe()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        return Backend(
            details, call=_rows_call(clf, inputs), precision=details["precision"], torch_cuda=device == "cuda"
        )
    if name == "pipeline":
        return _pipeline_backend(bundle, inputs, device, threads)
    if name == "predict":
        return _predict_backend(bundle, inputs, device, threads, workdir)
    raise UsageError(f"--backends: unknown backend {name!r}; choose from {', '.join(BACKENDS)}")


def timing_pipeline(bundle: Bundle, device: str) -> Any:
    """``transformers.pipeline("text-classification")`` on the bundle, to time what a transformers user runs.

    A mean-pooling bundle refuses ``BertForSequenceClassification`` on purpose (no stock class computes
    its head, see ``clsrun.trainer.bert_folder``); for timing, that class is built on the bundle's encoder
    with a new head (``ignore_mismatched_sizes``): the same network to within one small layer, so the same
    cost, but not clsrun's labels. Nothing from the folder runs (``trust_remote_code=False``).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    safe = {"local_files_only": True, "trust_remote_code": False}
    model = AutoModelForSequenceClassification.from_pretrained(
        bundle.root, ignore_mismatched_sizes=bundle.spec.model.get("pooling") == "mean", **safe
    )
    tokenizer = AutoTokenizer.from_pretrained(bundle.root, **safe)
    return pipeline(
        "text-classification", model=model, tokenizer=tokenizer, device=0 if device == "cuda" else -1
    )


def _pipeline_backend(bundle: Bundle, inputs: Inputs, device: str, threads: int) -> Backend:
    if bundle.spec.kind != "bert":
        raise BackendUnavailable(
            f"a {bundle.spec.kind} bundle is not a Hugging Face model; the pipeline runs BERT bundles only"
        )
    import torch

    torch.set_num_threads(threads)
    pipe = timing_pipeline(bundle, device)
    texts, max_length = inputs.texts, bundle.spec.max_length

    def call(rows: np.ndarray) -> None:
        batch = [texts[i] for i in rows]
        pipe(batch, batch_size=len(batch), truncation=True, max_length=max_length)

    details = {"backend": "transformers.pipeline", "precision": "fp32", "device": device, "threads": threads}
    return Backend(details, call=call, torch_cuda=device == "cuda")


def _predict_backend(bundle: Bundle, inputs: Inputs, device: str, threads: int, workdir: Path) -> Backend:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from clsrun.runtime.readers import ReadOptions
    from clsrun.runtime.score import score_file

    clf = _classifier(bundle, Variant(device=device, threads=threads))  # type: ignore[arg-type]
    if inputs.whole_file:  # literally the file a user would run `clsrun predict` on
        source, text_col = inputs.path, inputs.text_col
    else:  # the first --max-rows texts, as a file of their own
        source, text_col = workdir / "bench_input.csv", "text"
        pacsv.write_csv(pa.table({"text": inputs.raw}), source)
    target = workdir / "bench_input.scores.csv"

    def bulk() -> dict[str, Any]:
        manifest: dict[str, Any] = score_file(source, target, clf, ReadOptions(text_col)).manifest
        return manifest

    return Backend({**clf.describe(), "input": str(source)}, bulk=bulk, precision=clf.choice.precision)


# ---------------------------------------------------------------------------------------------------------
# Timing


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_bulk(backend: Backend, inputs: Inputs, cfg: BenchConfig) -> dict[str, Any]:
    """Run every planned batch ``repeats`` times after a warm-up; rows/s and tokens/s per repeat."""
    rows = len(inputs.texts)
    real_tokens = int(inputs.tokens.lengths.sum())
    batches = inputs.bulk_batches
    padded = sum(int(inputs.tokens.lengths[b].max()) * len(b) for b in batches)
    seconds: list[float] = []
    manifests: list[dict[str, Any]] = []
    cold: dict[str, Any] | None = None
    if backend.bulk is not None:
        # Warm-up: one whole run, kept apart. It is what a fresh `clsrun predict` process sees (cold
        # session arena and caches), so it is the figure to compare with a separate run on a short file.
        cold = backend.bulk()
        for _ in range(cfg.repeats):
            t0 = time.perf_counter()
            manifests.append(backend.bulk())
            seconds.append(time.perf_counter() - t0)
    else:
        assert backend.call is not None
        # Warm-up on short, middle and long batches, so every kernel shape class has been seen once.
        picks = sorted({0, len(batches) // 2, len(batches) - 1})[: max(cfg.warmup, 1)]
        for i in picks:
            backend.call(batches[i])
        for _ in range(cfg.repeats):
            t0 = time.perf_counter()
            for b in batches:
                backend.call(b)
            seconds.append(time.perf_counter() - t0)
    out: dict[str, Any] = {
        "rows": rows,
        "tokens": real_tokens,
        "padded_tokens": int(padded),
        "padding_efficiency": real_tokens / max(padded, 1),
        "batches": len(batches),
        "seconds": Spread.of(seconds),
        "rows_per_s": Spread.of([rows / s for s in seconds]),
        "tokens_per_s": Spread.of([real_tokens / s for s in seconds]),
    }
    if manifests and cold is not None:
        out["manifest_rows_per_s"] = Spread.of([float(m["rows_per_s"]) for m in manifests])
        out["cold_run_rows_per_s"] = float(cold["rows_per_s"])
        out["padding_efficiency"] = None  # the file path plans its own windows; see the model backends
    return out


def time_latency(backend: Backend, inputs: Inputs, cfg: BenchConfig, batch_size: int) -> Latency | None:
    """Per-call latency of consecutive rows in file order (as requests arrive), ``batch_size`` at a time."""
    assert backend.call is not None
    n = len(inputs.texts) // batch_size
    if n == 0:
        return None
    calls = min(n, cfg.latency_calls)
    groups = [np.arange(i * batch_size, (i + 1) * batch_size) for i in range(calls)]
    for g in groups[: cfg.warmup]:
        backend.call(g)
    pooled: list[float] = []
    rates: list[float] = []
    for _ in range(cfg.repeats):
        t_start = time.perf_counter()
        for g in groups:
            t0 = time.perf_counter()
            backend.call(g)
            pooled.append(time.perf_counter() - t0)
        rates.append(calls * batch_size / (time.perf_counter() - t_start))
    return Latency(
        batch_size,
        calls,
        p50_ms=_pct(pooled, 50) * 1e3,
        p95_ms=_pct(pooled, 95) * 1e3,
        p99_ms=_pct(pooled, 99) * 1e3,
        rows_per_s=Spread.of(rates),
    )


def compute_figures(
    inputs: Inputs,
    bulk: dict[str, Any],
    flops: Callable[[int, int], float] | None,
    peak: dict[str, Any],
    precision: str,
) -> dict[str, Any] | None:
    """Executed FLOPs of the bulk batches, achieved FLOP/s (median run) and its fraction of the peak."""
    if flops is None:
        return None
    lengths = inputs.tokens.lengths
    executed = sum(flops(len(b), int(lengths[b].max())) for b in inputs.bulk_batches)
    achieved = executed / bulk["seconds"].median
    key = precision if precision in peak["peak"] else "fp32"
    return {
        "flops": executed,
        "flops_per_row": executed / len(lengths),
        "achieved_flop_per_s": achieved,
        "peak_key": key,
        "peak_flop_per_s": peak["peak"][key],
        "fraction_of_peak": achieved / peak["peak"][key],
        "note": "int8 multiply-adds counted as FLOPs against the fp32 peak" if precision == "int8" else None,
    }


# ---------------------------------------------------------------------------------------------------------
# The whole run


def passive_openmp() -> str:
    """Make PyTorch's OpenMP workers sleep when idle, as the runtime's onnxruntime sessions do.

    By default OpenMP workers spin between parallel regions. On a machine whose cores are shared with
    other work (two cores and a busy neighbour measured 785 rows/s for eager fp32 spinning against 6,100
    passive on the default model) spinning measures contention, not the model. The variable only takes
    effect before torch loads OpenMP, so it is set before the first torch import; a value the user set
    wins. Returns the policy in force, recorded in the report.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return os.environ.get("OMP_WAIT_POLICY", "(unset: OpenMP default, set after torch was imported)")


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchReport:
    """Measure every backend of ``cfg`` on the same inputs; a backend that cannot run records why."""
    from clsrun.runtime.machine import default_threads

    unknown = [b for b in cfg.backends if b not in BACKENDS]
    if unknown:
        raise UsageError(f"--backends: unknown {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    if cfg.repeats < 1 or any(b < 1 for b in cfg.batch_sizes):
        raise UsageError("--repeats and --batch-sizes must be positive")
    say = progress or (lambda _msg: None)
    omp_policy = passive_openmp()
    device = resolve_device(cfg.device, "torch")  # the matmul peak, the pipeline and eager run on torch
    threads = cfg.threads or default_threads()
    bundle = Bundle.load(cfg.bundle)
    inputs = load_inputs(bundle, cfg)
    say(
        f"{len(inputs.texts):,} texts, {int(inputs.tokens.lengths.sum()):,} tokens; measuring the matmul peak"
    )
    peak = measure_matmul_peak(device, threads, cfg.matmul_n)
    encoder = make_encoder(bundle)
    try:
        probe = [8, max(bundle.spec.max_length // 2, 9), bundle.spec.max_length]
        flops: Callable[[int, int], float] | None = flops_model(bundle, encoder.input_names, probe)
        flops_note = None
    except Exception as e:  # FLOP counting is a report extra: never let it stop the measurements
        flops, flops_note = None, f"FLOPs not counted: {type(e).__name__}: {e}"
    results = []
    with tempfile.TemporaryDirectory(prefix="clsrun-bench-") as tmp:
        for name in cfg.backends:
            say(f"{name} ...")
            results.append(_measure(name, bundle, inputs, cfg, device, threads, Path(tmp), flops, peak))
            if results[-1].status == "ok":
                gc.collect()  # free this backend's model before the next one's memory is measured
    lengths = inputs.tokens.lengths
    return BenchReport(
        config={
            **asdict(cfg),
            "bundle": str(cfg.bundle),
            "data": str(cfg.data),
            "device": device,
            "threads": threads,
            "omp_wait_policy": omp_policy,
        },
        machine=machine_info(device),
        versions=library_versions(),
        inputs={
            "rows": len(inputs.texts),
            "tokens": int(lengths.sum()),
            "mean_length": float(lengths.mean()),
            "max_length": int(lengths.max()),
            "truncated_rows": int(inputs.tokens.truncated.sum()),
            "bundle_kind": bundle.spec.kind,
            "bundle_max_length": bundle.spec.max_length,
            "bulk_batches": len(inputs.bulk_batches),
            "flops_note": flops_note,
        },
        peak=peak,
        results=results,
    )


def _measure(
    name: str,
    bundle: Bundle,
    inputs: Inputs,
    cfg: BenchConfig,
    device: str,
    threads: int,
    workdir: Path,
    flops: Callable[[int, int], float] | None,
    peak: dict[str, Any],
) -> BackendResult:
    """One backend, start to finish; errors become a ``failed`` result with the message."""
    result = BackendResult(name, "ok")
    # The machine's load when this backend starts: backends run one after another, so on shared cores a
    # change of load between them shows up here instead of being mistaken for a backend difference. (A
    # short matmul probe was tried first: on a busy 2-core machine it swung 4-263 GFLOP/s, useless.)
    result.details["load_average_1min"] = load_average()
    try:
        with peak_rss() as rss:
            backend = open_backend(name, bundle, inputs, device, threads, workdir)
            result.details = {**backend.details, **result.details}
            result.bulk = time_bulk(backend, inputs, cfg)
            if backend.call is not None:
                for size in cfg.batch_sizes:
                    lat = time_latency(backend, inputs, cfg, size)
                    if lat is not None:
                        result.latency.append(lat)
            else:
                result.details["latency"] = "not measured: the file path is a bulk job"
        result.memory = {
            "peak_rss_mib": rss["peak_mib"],
            "above_baseline_mib": rss["peak_mib"] - rss["baseline_mib"],
        }
        if backend.torch_cuda:
            import torch

            result.memory["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result.compute = compute_figures(inputs, result.bulk, flops, peak, backend.precision)
        del backend
    except BackendUnavailable as e:
        result.status, result.reason = "skipped", str(e)
    except Exception as e:  # a backend that breaks must not take the others with it: report it
        result.status, result.reason = (
            "failed",
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
        )
    return result
