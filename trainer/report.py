"""The validation report written into a bundle: metrics, and the confusion matrix as CSV and PNG.

Metrics come from :mod:`clsrun.runtime.metrics` (scikit-learn), the same code ``clsrun eval`` uses, so a
bundle's recorded numbers and a later ``clsrun eval`` on its validation rows agree.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from clsrun.runtime.errors import file_errors_of
from clsrun.runtime.metrics import ClassificationReport, report_from_indices

CONFUSION_CSV = "confusion_matrix.csv"
CONFUSION_PNG = "confusion_matrix.png"


def validation_report(logits: np.ndarray, targets: np.ndarray, labels: list[str]) -> ClassificationReport:
    """Metrics of ``argmax(logits)`` ``(N, C)`` against ``targets`` ``(N,)`` over the whole validation set."""
    return report_from_indices(targets.tolist(), logits.argmax(axis=-1).tolist(), labels)


def write_confusion_csv(path: Path, report: ClassificationReport) -> None:
    """Rows: true label; columns: predicted label; first row and column hold the label names."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["true\\predicted", *report.labels])
        for name, row in zip(report.labels, report.confusion, strict=True):
            w.writerow([name, *row])


# The heat map of many labels: counts written in the cells up to this many labels, names on the axes up to
# this many, and the figure no wider than this (confusion_matrix.csv always holds every count).
MAX_COUNTED_CELLS = 30
MAX_LABELLED_TICKS = 100
MAX_FIGURE_INCHES = 24.0


def write_confusion_png(path: Path, report: ClassificationReport) -> None:
    """A heat map of the confusion matrix, counts in the cells, rows normalised for the colour."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    counts = np.asarray(report.confusion, dtype=np.int64)  # (C, C)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # (C, C) row-normalised
    n = len(report.labels)
    # Capped: a figure that grows with the labels takes minutes and gigapixels at a few hundred of them
    size = min(max(4.0, 0.6 * n + 2.5), MAX_FIGURE_INCHES)
    fig, ax = plt.subplots(figsize=(size, size * 0.85), dpi=100)
    try:
        im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
        if n <= MAX_LABELLED_TICKS:
            ax.set_xticks(range(n), report.labels, rotation=45, ha="right")
            ax.set_yticks(range(n), report.labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"validation: accuracy {report.accuracy:.3f}, macro-F1 {report.macro_f1:.3f}")
        cells = [(i, j) for i in range(n) for j in range(n)] if n <= MAX_COUNTED_CELLS else []
        for i, j in cells:  # with more labels the counts are in confusion_matrix.csv only
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
            )
        colorbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        colorbar.set_label("share of the true label's rows")
        fig.tight_layout()
        with file_errors_of(path):
            fig.savefig(path)
    finally:
        plt.close(fig)


def write_report_files(out: Path, report: ClassificationReport) -> None:
    """``confusion_matrix.csv`` and ``confusion_matrix.png`` in the bundle folder ``out``."""
    write_confusion_csv(out / CONFUSION_CSV, report)
    write_confusion_png(out / CONFUSION_PNG, report)
