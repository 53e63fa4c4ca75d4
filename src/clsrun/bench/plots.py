"""The bench's two plots: rows/s against batch size, and latency percentiles per batch size.

- ``throughput_vs_batch.png``: rows/s against batch size per backend (log-log), bulk as a dashed level.
- ``latency_percentiles.png``: p50/p95/p99 latency per backend, one panel per batch size (log scale).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clsrun.bench.run import BenchReport


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
    sizes = sorted({x.batch_size for r in ok for x in r.latency})
    if not sizes:  # nothing measured (every batch size above the rows read): say so, no made-up panel
        _nothing_measured(path, "no latency measured: every --batch-sizes value is above the rows read")
        return
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


def _nothing_measured(path: Path, why: str) -> None:
    """A plot that says why it holds no data (the file the report links to still exists)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2), dpi=120)
    ax.axis("off")
    ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
