"""bench.md explains every figure it shows: how each column was measured, and notes for figures that surprise."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import numpy as np

from clsrun.bench import BackendResult, BenchReport
from clsrun.bench.flops import ABOVE_PEAK_NOTE, INT8_NOTE, compute_figures
from clsrun.bench.inputs import Planned
from clsrun.bench.report import to_markdown
from clsrun.bench.timing import Spread
from clsrun.runtime.encode import Tokens


def _inputs() -> Planned:
    """Four rows of lengths 2..5 in two padded batches (widths 3 and 5: 16 padded tokens)."""
    tokens = cast(Tokens, SimpleNamespace(lengths=np.array([2, 3, 4, 5])))
    return Planned(tokens, [np.array([0, 1]), np.array([2, 3])], padded=True)


def _bulk(seconds: float) -> dict[str, Any]:
    return {"seconds": Spread.of([seconds])}


def test_a_fraction_above_the_peak_carries_a_note_and_int8_always_does() -> None:
    flops = lambda rows, length: 100.0 * rows * length  # noqa: E731
    peak = {"peak": {"fp32": 1000.0}}
    fast = compute_figures(_inputs(), _bulk(1.0), flops, peak, "fp32")  # 1,600 FLOPs in 1 s: 160 %
    assert fast is not None and fast["fraction_of_peak"] > 1 and fast["note"] == ABOVE_PEAK_NOTE
    slow = compute_figures(_inputs(), _bulk(10.0), flops, peak, "fp32")
    assert slow is not None and slow["fraction_of_peak"] < 1 and slow["note"] is None
    int8 = compute_figures(_inputs(), _bulk(10.0), flops, peak, "int8")
    assert int8 is not None and int8["note"] == INT8_NOTE and int8["peak_key"] == "fp32"


def _result(name: str, fraction: float, note: str | None, **details: Any) -> BackendResult:
    rate = {"median": 100.0, "min": 90.0, "max": 110.0, "values": [100.0]}
    bulk = {"rows_per_s": rate, "tokens_per_s": rate, "padding_efficiency": 0.9}
    compute = {"achieved_flop_per_s": 2e9, "fraction_of_peak": fraction, "note": note}
    return BackendResult(
        name, "ok", details={"load_average_1min": 1.5, **details}, bulk=bulk, compute=compute,
        memory={"peak_rss_mib": 300.0},
    )  # fmt: skip


def _report(results: list[BackendResult]) -> BenchReport:
    return BenchReport(
        config={"bundle": "b", "data": "d.csv", "repeats": 3, "device": "cpu", "threads": 2, "omp_wait_policy": "PASSIVE"},
        machine={"cpu": "CPU", "usable_cores": 2, "gpu": None},
        versions={},
        inputs={"rows": 4, "tokens": 14, "mean_length": 3.5, "truncated_rows": 0, "bundle_max_length": 8,
                "bundle_kind": "bert", "bulk_batches": 2, "flops_note": None},
        peak={"matmul_n": 256, "tries": 5, "load_average_1min": 1.2, "peak": {"fp32": 1e9}},
        results=results,
    )  # fmt: skip


def test_markdown_explains_each_column_and_marks_what_needs_a_note() -> None:
    head = "not clsrun's head: transformers' BertForSequenceClassification ...; speed reference only"
    md = to_markdown(
        _report(
            [
                _result("pipeline", 0.5, None, same_head_as_clsrun=False, head=head),
                _result("torch-fp32", 1.097, ABOVE_PEAK_NOTE),
                _result("onnx-int8", 2.0, INT8_NOTE),
            ]
        )
    )
    assert "| pipeline ‡ |" in md and f"- ‡ {head}." in md
    assert "(109.7%) †" in md and f"- † {ABOVE_PEAK_NOTE}." in md
    assert "(200.0%) ††" in md and f"- †† {INT8_NOTE}." in md  # a second note gets its own mark
    for column in ("rows/s, tokens/s:", "p50 / p95 / p99 ms @1:", "padding eff.:", "FLOP/s:", "peak RSS MiB:",
                   "load avg:"):  # fmt: skip
        assert f"- {column}" in md, column
    assert "Matmul peak (256x256, best of 5, load avg 1.2)" in md


def test_a_pipeline_with_clsruns_head_needs_no_note() -> None:
    md = to_markdown(
        _report([_result("pipeline", 0.5, None, same_head_as_clsrun=True, head="clsrun's head")])
    )
    assert "| pipeline |" in md and "‡" not in md
