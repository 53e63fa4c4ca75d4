"""The validation report written into a bundle: metrics, and the confusion matrix as CSV and PNG.

Metrics come from :mod:`clsrun.runtime.metrics` (scikit-learn), the same code ``clsrun eval`` uses, so a
bundle's recorded numbers and a later ``clsrun eval`` on its validation rows agree.
"""

from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from clsrun.runtime.errors import file_errors_of
from clsrun.runtime.metrics import ClassificationReport, report_from_indices

log = logging.getLogger(__name__)

CONFUSION_CSV = "confusion_matrix.csv"
CONFUSION_PNG = "confusion_matrix.png"


def validation_report(logits: np.ndarray, targets: np.ndarray, labels: list[str]) -> ClassificationReport:
    """Metrics of ``argmax(logits)`` ``(N, C)`` against ``targets`` ``(N,)`` over the whole validation set."""
    return report_from_indices(targets.tolist(), logits.argmax(axis=-1).tolist(), labels)


def write_confusion_csv(path: Path, report: ClassificationReport) -> None:
    """Rows: true label; columns: predicted label; first row and column hold the label names, neutralised
    as ``clsrun predict`` writes CSV cells (a label ``=cmd()`` is a formula when the file is opened)."""
    from clsrun.runtime.writers import neutralise_formulas

    names = neutralise_formulas(pa.table({"label": list(report.labels)})).column(0).to_pylist()
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["true\\predicted", *names])
        for name, row in zip(names, report.confusion, strict=True):
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
    with (
        warnings.catch_warnings(record=True) as said,
        plt.rc_context({"font.family": _fonts_for(report.labels)}),
    ):
        warnings.simplefilter("always")
        _draw_confusion(plt, path, report, counts, share, size)
    if any("missing from font" in str(w.message) for w in said):  # matplotlib's own lines, one per glyph
        log.warning(
            "%s: no installed font draws some characters of the labels (drawn as boxes); %s has the names",
            path.name,
            CONFUSION_CSV,
        )


# Font families that draw Chinese, Japanese and Korean, where one is installed (DejaVu Sans, matplotlib's
# own, draws none of them).
_CJK_FONTS = (
    "Noto Sans CJK",
    "Noto Sans SC",
    "Source Han Sans",
    "WenQuanYi",
    "SimHei",
    "Droid Sans Fallback",
)


def _fonts_for(labels: list[str]) -> list[str]:
    """matplotlib's font families for ``labels``: its default, preceded by a CJK font when a label needs one
    and one is installed."""
    from matplotlib import font_manager

    default = ["DejaVu Sans"]
    if all(label.isascii() for label in labels):
        return default
    installed = {f.name for f in font_manager.fontManager.ttflist}
    cjk = [name for name in installed if any(name.startswith(family) for family in _CJK_FONTS)]
    return sorted(cjk)[:1] + default


def _draw_confusion(
    plt: Any, path: Path, report: ClassificationReport, counts: np.ndarray, share: np.ndarray, size: float
) -> None:
    n = len(report.labels)
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
