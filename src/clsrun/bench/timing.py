"""Timing a backend: bulk throughput over predict's batches, and latency of consecutive rows per batch size.

Every series is warmed up first (untimed), then repeated; the median is reported with min and max
(:class:`Spread`), so a reader sees the run-to-run noise. On CUDA each call returns host numpy, so the
device work is finished when the clock stops.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from clsrun.bench.backends import Backend
from clsrun.bench.config import BenchConfig
from clsrun.bench.inputs import Inputs, Planned, shared_plan


@dataclass
class Spread:
    """Median of repeated measurements, with the extremes."""

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


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def plan_of(backend: Backend, inputs: Inputs) -> Planned:
    """The rows ``backend`` runs: its classifier's own plan, or the shared one."""
    return backend.planned or shared_plan(inputs)


def _time_calls(backend: Backend, batches: list[np.ndarray], cfg: BenchConfig) -> list[float]:
    """Seconds of each repeat of every bulk batch, after a warm-up on short, middle and long batches (so
    every kernel shape class has been seen once)."""
    assert backend.call is not None
    for i in sorted({0, len(batches) // 2, len(batches) - 1})[: max(cfg.warmup, 1)]:
        backend.call(batches[i])
    seconds = []
    for _ in range(cfg.repeats):
        t0 = time.perf_counter()
        for b in batches:
            backend.call(b)
        seconds.append(time.perf_counter() - t0)
    return seconds


def _time_runs(backend: Backend, cfg: BenchConfig) -> tuple[list[float], dict[str, Any]]:
    """Seconds of each repeat of the whole predict path, and what its manifests say. The warm-up run is
    kept apart: it is what a fresh ``clsrun predict`` process sees (cold session arena and caches)."""
    assert backend.bulk is not None
    cold = backend.bulk()
    seconds, manifests = [], []
    for _ in range(cfg.repeats):
        t0 = time.perf_counter()
        manifests.append(backend.bulk())
        seconds.append(time.perf_counter() - t0)
    return seconds, {
        "manifest_rows_per_s": Spread.of([float(m["rows_per_s"]) for m in manifests]),
        "cold_run_rows_per_s": float(cold["rows_per_s"]),
        "padding_efficiency": None,  # the file path plans its own windows; see the model backends
    }


def time_bulk(backend: Backend, inputs: Inputs, cfg: BenchConfig) -> dict[str, Any]:
    """Run every batch the backend plans (or the whole predict path) ``repeats`` times after a warm-up;
    rows/s and tokens/s per repeat, and the padding of those batches."""
    rows = len(inputs.texts)
    real_tokens = int(inputs.tokens.lengths.sum())
    planned = plan_of(backend, inputs)
    padded = planned.padded_tokens()
    out: dict[str, Any] = {
        "rows": rows,
        "tokens": real_tokens,
        "padded_tokens": padded,
        "padding_efficiency": int(planned.tokens.lengths.sum()) / max(padded, 1),
        "batches": len(planned.batches),
        "padded_batches": planned.padded,
    }
    if backend.bulk is not None:
        seconds, extra = _time_runs(backend, cfg)
        out.update(extra)
    else:
        seconds = _time_calls(backend, planned.batches, cfg)
    out["seconds"] = Spread.of(seconds)
    out["rows_per_s"] = Spread.of([rows / s for s in seconds])
    out["tokens_per_s"] = Spread.of([real_tokens / s for s in seconds])
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
