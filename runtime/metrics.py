"""Classification metrics (scikit-learn): accuracy, macro and weighted precision/recall/F1, per class, and the
confusion matrix, with a text and a JSON form. Used by training (validation report) and ``clsrun eval``.

No torch here: a scoring-only install runs ``clsrun eval``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class ClassMetrics:
    """Precision, recall, F1 and support (true rows) of one label."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class ClassificationReport:
    """Metrics of predicted against true labels. ``confusion[i][j]``: rows of true ``labels[i]`` predicted
    as ``labels[j]``."""

    labels: list[str]
    rows: int
    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    weighted_precision: float
    weighted_recall: float
    weighted_f1: float
    per_class: dict[str, ClassMetrics]
    confusion: list[list[int]]

    def summary(self) -> dict[str, float]:
        """The headline numbers (what ``clsrun.json`` keeps next to the per-class report)."""
        return {
            "accuracy": self.accuracy,
            "macro_precision": self.macro_precision,
            "macro_recall": self.macro_recall,
            "macro_f1": self.macro_f1,
            "weighted_precision": self.weighted_precision,
            "weighted_recall": self.weighted_recall,
            "weighted_f1": self.weighted_f1,
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> str:
        """A readable report: headline numbers, a per-class table and the confusion matrix."""
        width = max(12, *(len(x) for x in self.labels))
        lines = [
            f"rows {self.rows}   accuracy {self.accuracy:.4f}",
            f"macro    precision {self.macro_precision:.4f}  recall {self.macro_recall:.4f}  "
            f"f1 {self.macro_f1:.4f}",
            f"weighted precision {self.weighted_precision:.4f}  recall {self.weighted_recall:.4f}  "
            f"f1 {self.weighted_f1:.4f}",
            "",
            f"{'label':<{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}",
        ]
        for name in self.labels:
            m = self.per_class[name]
            lines.append(f"{name:<{width}} {m.precision:9.4f} {m.recall:9.4f} {m.f1:9.4f} {m.support:8d}")
        lines += ["", "confusion matrix (rows: true label, columns: predicted)"]
        cell = max(7, *(len(x) for x in self.labels), *(len(str(v)) for row in self.confusion for v in row))
        lines.append(" " * width + " " + " ".join(f"{x:>{cell}}" for x in self.labels))
        for name, row in zip(self.labels, self.confusion, strict=True):
            lines.append(f"{name:<{width}} " + " ".join(f"{v:>{cell}d}" for v in row))
        return "\n".join(lines)


def classification_report(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    labels: Sequence[str] | None = None,
    averaged_over: Sequence[str] | None = None,
) -> ClassificationReport:
    """Compare label strings. ``labels`` fixes the order (e.g. the model's labels); labels seen in the
    data but not in ``labels`` are appended, so a true label the model cannot predict still counts.
    ``averaged_over``: the classes the macro and weighted averages may be over (default: all of them); a
    prediction that is no class (``clsrun eval``'s unscored rows) then counts as a miss of the true class
    without being a class of its own, whose zero recall would pull every macro average down. Of those, the
    averages take the classes that occur, as true labels or as predictions (scikit-learn's own default): a
    model label with neither (a rare class absent from a validation split) has no precision or recall to
    average, and counting it as 0 would report a perfect model at a macro-F1 of 0.5."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    order = list(labels or [])
    for name in sorted(set(y_true) | set(y_pred)):
        if name not in order:
            order.append(name)
    kw: dict[str, Any] = {"labels": order, "zero_division": 0}
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, **kw)
    present = set(y_true) | set(y_pred)
    candidates = list(averaged_over) if averaged_over is not None else order
    over = {"labels": [name for name in candidates if name in present], "zero_division": 0}
    averaged = {
        avg: precision_recall_fscore_support(y_true, y_pred, average=avg, **over)[:3]
        if len(y_true) and over["labels"]
        else (0.0, 0.0, 0.0)
        for avg in ("macro", "weighted")
    }
    cm = confusion_matrix(y_true, y_pred, labels=order) if len(y_true) else [[0] * len(order)] * len(order)
    return ClassificationReport(
        labels=order,
        rows=len(y_true),
        accuracy=float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        macro_precision=float(averaged["macro"][0]),
        macro_recall=float(averaged["macro"][1]),
        macro_f1=float(averaged["macro"][2]),
        weighted_precision=float(averaged["weighted"][0]),
        weighted_recall=float(averaged["weighted"][1]),
        weighted_f1=float(averaged["weighted"][2]),
        per_class={
            name: ClassMetrics(float(p[i]), float(r[i]), float(f[i]), int(s[i]))
            for i, name in enumerate(order)
        },
        confusion=[[int(v) for v in row] for row in cm],
    )


def report_from_indices(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]
) -> ClassificationReport:
    """The same report from label indices into ``labels`` (e.g. targets and argmax of logits)."""
    return classification_report([labels[int(i)] for i in y_true], [labels[int(i)] for i in y_pred], labels)
