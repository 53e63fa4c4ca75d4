"""Writing a :class:`~clsrun.bench.run.BenchReport`: ``bench.json``, ``bench.md`` and two PNG plots.

- ``bench.json``: every figure, the machine, the library versions and the configuration.
- ``bench.md``: a header on machine, inputs and the matmul peak; one table of bulk throughput, latency at
  batch 1, padding, FLOP/s and memory per backend; notes that say how each column was measured and why a
  figure may surprise (a fraction of the peak above 100 %, a pipeline that runs another head); latency
  percentiles at every batch size; the backends that did not run, with why. Every figure in it can be
  explained from the file itself.
- ``throughput_vs_batch.png`` and ``latency_percentiles.png``: ``plots.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clsrun.bench.memory import SAMPLE_SECONDS
from clsrun.bench.plots import plot_latency, plot_throughput
from clsrun.bench.run import BenchReport
from clsrun.runtime.files import atomic_write_text

JSON_FILE = "bench.json"
MARKDOWN_FILE = "bench.md"
THROUGHPUT_PNG = "throughput_vs_batch.png"
LATENCY_PNG = "latency_percentiles.png"
PIPELINE_MARK = "‡"  # a pipeline row that runs another head than clsrun
PEAK_MARK = "†"  # a FLOP/s fraction with a note (int8, or above the peak)


def _si(value: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"


def _load(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _spread(s: dict[str, Any], fmt: str = ",.0f") -> str:
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}–{s['max']:{fmt}})"


def _header(data: dict[str, Any]) -> str:
    """One paragraph: bundle, inputs, machine, settings and the matmul peak."""
    m, cfg, inp, peak = data["machine"], data["config"], data["inputs"], data["peak"]
    gpu = f", GPU {m['gpu']['name']}" if m.get("gpu") else ""
    peaks = ", ".join(f"{k} {_si(v)}FLOP/s" for k, v in peak["peak"].items())
    return (
        f"**{Path(cfg['bundle']).name}** ({inp['bundle_kind']}) on `{Path(cfg['data']).name}`: "
        f"{inp['rows']:,} texts, {inp['tokens']:,} tokens (mean {inp['mean_length']:.0f}, "
        f"{inp['truncated_rows']:,} truncated to {inp['bundle_max_length']}). "
        f"{m['cpu']}, {m['usable_cores']} cores{gpu}; device {cfg['device']}, {cfg['threads']} threads, "
        f"OMP_WAIT_POLICY {cfg.get('omp_wait_policy')}; median of {cfg['repeats']} runs (min–max). "
        f"Matmul peak ({peak['matmul_n']}x{peak['matmul_n']}, best of {peak.get('tries', '?')}, load avg "
        f"{_load(peak.get('load_average_1min'))}): {peaks}."
    )


def _row(r: dict[str, Any], notes: dict[str, str]) -> str:
    """One backend's line of the main table; its notes are added to ``notes`` (mark -> text)."""
    bulk = r["bulk"]
    lat1 = next((x for x in r["latency"] if x["batch_size"] == 1), None)
    lat = f"{lat1['p50_ms']:.2f} / {lat1['p95_ms']:.2f} / {lat1['p99_ms']:.2f}" if lat1 else "–"
    pad = f"{bulk['padding_efficiency']:.2f}" if bulk.get("padding_efficiency") is not None else "–"
    comp = r.get("compute")
    flops = f"{_si(comp['achieved_flop_per_s'])} ({100 * comp['fraction_of_peak']:.1f}%)" if comp else "–"
    if comp and comp.get("note"):
        flops += f" {_mark(notes, PEAK_MARK, comp['note'])}"
    label = r["name"]
    if r["name"] == "predict":
        label = f"predict ({r['details'].get('precision', '')})"
    if r["details"].get("same_head_as_clsrun") is False:
        label += f" {_mark(notes, PIPELINE_MARK, r['details']['head'])}"
    return (
        f"| {label} | {_spread(bulk['rows_per_s'])} | {_spread(bulk['tokens_per_s'])} | {lat} | {pad} | "
        f"{flops} | {r['memory'].get('peak_rss_mib', 0):,.0f} | {_load(r['details'].get('load_average_1min'))} |"
    )


def _mark(notes: dict[str, str], symbol: str, text: str) -> str:
    """The footnote mark for ``text``: ``symbol``, doubled for each other note already using it."""
    for mark, known in notes.items():
        if known == text:
            return mark
    mark = symbol * (1 + sum(1 for m in notes if m.startswith(symbol)))
    notes[mark] = text
    return mark


def _legend(data: dict[str, Any]) -> list[str]:
    """How each column of the main table was measured."""
    cfg, inp, cores = data["config"], data["inputs"], data["machine"]["usable_cores"]
    return [
        f"- rows/s, tokens/s: all {inp['rows']:,} texts in the batches `clsrun predict` plans for the backend "
        f"({inp['bulk_batches']:,} length-sorted, token-budget batches; a sparse graph's unpadded batches and "
        "OpenVINO's padded widths are their own plans), run once per timed run after a warm-up; median "
        f"(min–max) of {cfg['repeats']} runs. Tokenization is done before the clock starts. predict: the "
        "whole `clsrun predict` path (read, encode, batch, infer, write) on a file holding the same texts, "
        "timed around each run.",
        "- p50 / p95 / p99 ms @1: latency of one call at batch size 1 (consecutive rows in file order), "
        "every call of every run pooled; other batch sizes below.",
        "- padding eff.: real tokens / padded tokens of those batches (1.00: no padding, as a sparse graph "
        "takes them); the predict path "
        "plans its own windows (–).",
        "- FLOP/s: matmul and convolution FLOPs of the padded batches, counted on the eager PyTorch model, "
        "divided by the median seconds; in brackets, the share of the matmul peak of the backend's precision.",
        f"- peak RSS MiB: the process's largest resident memory while the backend loaded and ran, read every "
        f"{SAMPLE_SECONDS * 1000:g} ms; it includes what the process held before (inputs, earlier backends).",
        f"- load avg: the machine's 1-minute load average as each backend started ({cores} cores); backends "
        "run one after another, so a change means other work competed with some of them.",
    ]


def _latency_table(data: dict[str, Any]) -> list[str]:
    """p50 / p95 / p99 ms and rows/s of every backend at every batch size."""
    sizes = sorted({x["batch_size"] for r in data["results"] for x in r["latency"]})
    if not sizes:
        return []
    lines = [
        "",
        "Latency by batch size (consecutive rows in file order): p50 / p95 / p99 ms, rows/s",
        "",
        "| backend | " + " | ".join(f"batch {b}" for b in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for r in data["results"]:
        if r["status"] != "ok" or not r["latency"]:
            continue
        by = {x["batch_size"]: x for x in r["latency"]}
        cells = [
            f"{by[b]['p50_ms']:.2f} / {by[b]['p95_ms']:.2f} / {by[b]['p99_ms']:.2f}, "
            f"{by[b]['rows_per_s']['median']:,.0f}"
            if b in by
            else "–"
            for b in sizes
        ]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return lines


def to_markdown(report: BenchReport) -> str:
    """The report as Markdown: the header, the main table with its notes, latency, what did not run."""
    data = report.to_json()
    lines = [
        _header(data),
        "",
        "| backend | rows/s (bulk) | tokens/s | p50 / p95 / p99 ms @1 | padding eff. | FLOP/s (% peak) "
        "| peak RSS MiB | load avg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes: dict[str, str] = {}
    lines += [_row(r, notes) for r in data["results"] if r["status"] == "ok"]
    lines += ["", *_legend(data), *(f"- {mark} {text}." for mark, text in notes.items())]
    if data["inputs"].get("flops_note"):
        lines.append(f"- {data['inputs']['flops_note']}")
    lines += _latency_table(data)
    skipped = [r for r in data["results"] if r["status"] != "ok"]
    if skipped:
        lines += ["", "Not measured:", ""]
        lines += [f"- **{r['name']}** ({r['status']}): {r['reason']}" for r in skipped]
    return "\n".join(lines) + "\n"


# Every file write_report writes into the --out folder.
REPORT_FILES = (JSON_FILE, MARKDOWN_FILE, THROUGHPUT_PNG, LATENCY_PNG)


def write_report(report: BenchReport, out_dir: Path | str) -> dict[str, Path]:
    """Write the JSON, the Markdown table and both plots into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / JSON_FILE,
        "markdown": out / MARKDOWN_FILE,
        "throughput_png": out / THROUGHPUT_PNG,
        "latency_png": out / LATENCY_PNG,
    }
    atomic_write_text(paths["json"], json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(paths["markdown"], to_markdown(report))
    plot_throughput(report, paths["throughput_png"])
    plot_latency(report, paths["latency_png"])
    return paths
