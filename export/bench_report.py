"""Writing a :class:`~clsrun.export.bench.BenchReport`: ``bench.json``, ``bench.md`` and two PNG plots.

- ``bench.json``: every figure, the machine, the library versions and the configuration.
- ``bench.md``: one table of bulk throughput, latency at batch 1, padding, FLOP/s and memory per
  backend, one of latency percentiles at every batch size, and the backends that did not run, with why.
- ``throughput_vs_batch.png``: rows/s against batch size per backend (log-log), bulk as a dashed level.
- ``latency_percentiles.png``: p50/p95/p99 latency per backend, one panel per batch size (log scale).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clsrun.export.bench import BenchReport

JSON_FILE = "bench.json"
MARKDOWN_FILE = "bench.md"
THROUGHPUT_PNG = "throughput_vs_batch.png"
LATENCY_PNG = "latency_percentiles.png"


def _si(value: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"


def _load(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _spread(s: dict[str, Any], fmt: str = ",.0f") -> str:
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}–{s['max']:{fmt}})"


def to_markdown(report: BenchReport) -> str:
    """The report as Markdown: a header line on machine and inputs, then the tables."""
    data = report.to_json()
    m, cfg, inp = data["machine"], data["config"], data["inputs"]
    gpu = f", GPU {m['gpu']['name']}" if m.get("gpu") else ""
    peak = data["peak"]["peak"]
    lines = [
        f"**{Path(cfg['bundle']).name}** ({inp['bundle_kind']}) on `{Path(cfg['data']).name}`: "
        f"{inp['rows']:,} texts, {inp['tokens']:,} tokens (mean {inp['mean_length']:.0f}, "
        f"{inp['truncated_rows']:,} truncated to {inp['bundle_max_length']}). "
        f"{m['cpu']}, {m['usable_cores']} cores{gpu}; device {cfg['device']}, {cfg['threads']} threads, "
        f"OMP_WAIT_POLICY {cfg.get('omp_wait_policy')}; "
        f"median of {cfg['repeats']} runs (min–max). Matmul peak: "
        + ", ".join(f"{k} {_si(v)}FLOP/s" for k, v in peak.items())
        + ".",
        "",
        "| backend | rows/s (bulk) | tokens/s | p50 / p95 / p99 ms @1 | padding eff. | FLOP/s (% peak) | peak RSS MiB "
        "| load avg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    skipped = []
    footnotes: set[str] = set()
    for r in data["results"]:
        if r["status"] != "ok":
            skipped.append(r)
            continue
        bulk = r["bulk"]
        lat1 = next((x for x in r["latency"] if x["batch_size"] == 1), None)
        lat = f"{lat1['p50_ms']:.2f} / {lat1['p95_ms']:.2f} / {lat1['p99_ms']:.2f}" if lat1 else "–"
        pad = f"{bulk['padding_efficiency']:.2f}" if bulk.get("padding_efficiency") is not None else "–"
        comp = r.get("compute")
        flops = f"{_si(comp['achieved_flop_per_s'])} ({100 * comp['fraction_of_peak']:.1f}%)" if comp else "–"
        if comp and comp.get("note"):
            flops += " †"
            footnotes.add(f"† {comp['note']}: int8 units do more per cycle, so this can pass 100%.")
        label = f"{r['name']} ({r['details'].get('precision', '')})" if r["name"] == "predict" else r["name"]
        lines.append(
            f"| {label} | {_spread(bulk['rows_per_s'])} | {_spread(bulk['tokens_per_s'])} | {lat} | {pad} | "
            f"{flops} | {r['memory'].get('peak_rss_mib', 0):,.0f} | "
            f"{_load(r['details'].get('load_average_1min'))} |"
        )
    footnotes.add(
        f"load avg: the machine's 1-minute load average as each backend started ({m['usable_cores']} cores); "
        "backends run one after another, so a change means other work competed with some of them."
    )
    lines += ["", *sorted(footnotes)]
    sizes = sorted({x["batch_size"] for r in data["results"] for x in r["latency"]})
    if sizes:
        lines += [
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
    if skipped:
        lines += ["", "Not measured:", ""]
        lines += [f"- **{r['name']}** ({r['status']}): {r['reason']}" for r in skipped]
    return "\n".join(lines) + "\n"


def plot_throughput(report: BenchReport, path: Path) -> None:
    """rows/s against batch size, one line per backend; bulk (token-budget batches) as a dashed level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for i, r in enumerate(x for x in report.results if x.status == "ok"):
        color = f"C{i}"
        if r.latency:
            sizes = [x.batch_size for x in r.latency]
            rates = [x.rows_per_s.median for x in r.latency]
            lows = [x.rows_per_s.median - x.rows_per_s.min for x in r.latency]
            highs = [x.rows_per_s.max - x.rows_per_s.median for x in r.latency]
            ax.errorbar(sizes, rates, yerr=[lows, highs], marker="o", capsize=3, color=color, label=r.name)
        if r.bulk is not None:
            level = r.bulk["rows_per_s"].median
            style = "-." if not r.latency else "--"
            ax.axhline(level, linestyle=style, linewidth=1, color=color, label=f"{r.name}: bulk")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # labels even when under one decade
    sizes_all = sorted({x.batch_size for r in report.results for x in r.latency})
    if sizes_all:
        ax.set_xticks(sizes_all)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("batch size (rows per call)")
    ax.set_ylabel("throughput (rows/s, median; bars: min–max)")
    cfg = report.config
    ax.set_title(
        f"{Path(cfg['bundle']).name}: throughput vs batch size ({cfg['device']}, {cfg['threads']} threads)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def plot_latency(report: BenchReport, path: Path) -> None:
    """p50/p95/p99 per backend as grouped bars, one panel per batch size, log-scale milliseconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ok = [r for r in report.results if r.status == "ok" and r.latency]
    sizes = sorted({x.batch_size for r in ok for x in r.latency}) or [1]
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(
        1, len(sizes), figsize=(4.2 * len(sizes), 4.5), dpi=120, squeeze=False, sharey=True
    )
    pcts = (("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99"))
    width = 0.8 / len(pcts)
    for ax, size in zip(axes[0], sizes, strict=True):
        xs = np.arange(len(ok))
        for j, (attr, label) in enumerate(pcts):
            values = [next((getattr(x, attr) for x in r.latency if x.batch_size == size), np.nan) for r in ok]
            ax.bar(xs + (j - 1) * width, values, width, label=label, color=f"C{j}")
        ax.set_xticks(xs, [r.name for r in ok], rotation=30, ha="right")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"batch size {size}")
        ax.grid(True, axis="y", which="both", alpha=0.3)
    axes[0][0].set_ylabel("latency per call (ms, log scale)")
    axes[0][0].legend(title="percentile")
    fig.suptitle(f"{Path(report.config['bundle']).name}: latency percentiles ({report.config['device']})")
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


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
    paths["json"].write_text(
        json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    paths["markdown"].write_text(to_markdown(report), encoding="utf-8")
    plot_throughput(report, paths["throughput_png"])
    plot_latency(report, paths["latency_png"])
    return paths
