"""``run_bench``: measure every requested backend on the same inputs, one after another, into a report.

Order of a run: the inputs (``inputs.py``), the matmul peak (``machine.py``), the FLOP model
(``flops.py``), then each backend in turn (``backends.py``), timed (``timing.py``) inside a memory sampler
(``memory.py``). A backend that cannot run, or that breaks, is recorded with its reason and the others go on.
"""

from __future__ import annotations

import gc
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clsrun.bench.backends import Backend, BackendUnavailable, open_backend
from clsrun.bench.config import BenchConfig
from clsrun.bench.flops import FlopsOf, compute_figures, flops_model
from clsrun.bench.inputs import Inputs, load_inputs
from clsrun.bench.machine import (
    library_versions,
    load_average,
    machine_info,
    measure_matmul_peak,
    passive_openmp,
)
from clsrun.bench.memory import peak_rss
from clsrun.bench.timing import Latency, plan_of, time_bulk, time_latency
from clsrun.runtime.bundle import Bundle
from clsrun.runtime.encode import make_encoder

log = logging.getLogger(__name__)


@dataclass
class BackendResult:
    """One backend's figures, or why it did not run (``status`` ``skipped`` or ``failed``)."""

    name: str
    status: str  # ok | skipped | failed
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # providers, precision, threads, file, head
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


@dataclass
class _Run:
    """What every backend of one run shares."""

    bundle: Bundle
    inputs: Inputs
    cfg: BenchConfig
    device: str
    threads: int
    workdir: Path
    flops: FlopsOf | None
    peak: dict[str, Any]


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchReport:
    """Measure every backend of ``cfg`` on the same inputs; a backend that cannot run records why."""
    from clsrun.runtime.machine import default_threads
    from clsrun.runtime.variant import resolve_device

    cfg.validate()
    say = progress or (lambda _msg: None)
    omp_policy = passive_openmp()
    device = resolve_device(cfg.device, "torch")  # the matmul peak, the pipeline and eager run on torch
    threads = cfg.threads or default_threads()
    bundle = Bundle.load(cfg.bundle)
    inputs = load_inputs(bundle, cfg, device)
    say(
        f"{len(inputs.texts):,} texts, {int(inputs.tokens.lengths.sum()):,} tokens; measuring the matmul peak"
    )
    too_big = [size for size in cfg.batch_sizes if size > len(inputs.texts)]
    if too_big:  # a call of that many rows cannot be made from the texts read: said, not silently skipped
        log.warning(
            "--batch-sizes %s: more rows than the %d texts read (raise --max-rows or give more rows); "
            "no latency is measured at %s",
            ",".join(map(str, too_big)),
            len(inputs.texts),
            "that size" if len(too_big) == 1 else "those sizes",
        )
    peak = measure_matmul_peak(device, threads, cfg.matmul_n)
    flops, flops_note = _flops(bundle)
    results = []
    with tempfile.TemporaryDirectory(prefix="clsrun-bench-") as tmp:
        run = _Run(bundle, inputs, cfg, device, threads, Path(tmp), flops, peak)
        for name in cfg.backends:
            say(f"{name} ...")
            results.append(_measure(name, run))
            if results[-1].status == "ok":
                gc.collect()  # free this backend's model before the next one's memory is measured
    settings = {"device": device, "threads": threads, "omp_wait_policy": omp_policy}
    config = {**asdict(cfg), "bundle": str(cfg.bundle), "data": str(cfg.data), **settings}
    return BenchReport(
        config, machine_info(device), library_versions(), _describe(inputs, bundle, flops_note), peak, results
    )


def _flops(bundle: Bundle) -> tuple[FlopsOf | None, str | None]:
    """The FLOP model of the bundle, or None and why not: FLOP counting is a report extra and never stops
    the measurements."""
    probe = [8, max(bundle.spec.max_length // 2, 9), bundle.spec.max_length]
    try:
        return flops_model(bundle, make_encoder(bundle).input_names, probe), None
    except Exception as e:
        return None, f"FLOPs not counted: {type(e).__name__}: {e}"


def _describe(inputs: Inputs, bundle: Bundle, flops_note: str | None) -> dict[str, Any]:
    """The report's ``inputs``: what was scored."""
    lengths = inputs.tokens.lengths
    return {
        "rows": len(inputs.texts),
        "tokens": int(lengths.sum()),
        "mean_length": float(lengths.mean()),
        "max_length": int(lengths.max()),
        "truncated_rows": int(inputs.tokens.truncated.sum()),
        "bundle_kind": bundle.spec.kind,
        "bundle_max_length": bundle.spec.max_length,
        "bulk_batches": len(inputs.bulk_batches),
        "flops_note": flops_note,
    }


def _measure(name: str, run: _Run) -> BackendResult:
    """One backend, start to finish; errors become a ``failed`` result with the message."""
    result = BackendResult(name, "ok")
    # The machine's load when this backend starts: backends run one after another, so on shared cores a
    # change of load between them shows up here instead of being mistaken for a backend difference.
    result.details["load_average_1min"] = load_average()
    try:
        with peak_rss() as rss:
            backend = open_backend(name, run.bundle, run.inputs, run.device, run.threads, run.workdir)
            result.details = {**backend.details, **result.details}
            _time(backend, result, run)
        result.memory = {
            "peak_rss_mib": rss["peak_mib"],
            "above_baseline_mib": rss["peak_mib"] - rss["baseline_mib"],
        }
        if backend.torch_cuda:
            import torch

            result.memory["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        assert result.bulk is not None
        planned = plan_of(backend, run.inputs)
        result.compute = compute_figures(planned, result.bulk, run.flops, run.peak, backend.precision)
    except BackendUnavailable as e:
        result.status, result.reason = "skipped", str(e)
    except Exception as e:  # a backend that breaks must not take the others with it: report it
        first = str(e).splitlines()[0] if str(e) else ""
        result.status, result.reason = "failed", f"{type(e).__name__}: {first}"
    return result


def _time(backend: Backend, result: BackendResult, run: _Run) -> None:
    """Bulk throughput, then latency at every batch size (model backends only)."""
    result.bulk = time_bulk(backend, run.inputs, run.cfg)
    if backend.call is None:
        result.details["latency"] = "not measured: the file path is a bulk job"
        return
    for size in run.cfg.batch_sizes:
        latency = time_latency(backend, run.inputs, run.cfg, size)
        if latency is not None:
            result.latency.append(latency)
