"""``clsrun eval``: score a labelled file with a bundle and report how well the predictions match.

Reads the file with the same reader as training (``labelled.read_labelled``), refuses labels the model
does not know before scoring anything, predicts through the runtime's :class:`Classifier` (so the
numbers are those of the variant ``clsrun predict`` would run), and computes the metrics with
``clsrun.runtime.metrics`` (scikit-learn underneath).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clsrun.runtime.errors import InputError
from clsrun.runtime.variant import Variant

if TYPE_CHECKING:
    from clsrun.runtime.metrics import ClassificationReport


UNSCORED = "(unscored)"  # the predicted label of a row the model could not score (empty after normalising)


def unscored_label(taken: Sequence[str]) -> str:
    """:data:`UNSCORED`, or with ``*`` added until no label in ``taken`` is spelled so: a bundle may have a
    label "(unscored)", whose own predictions were counted as unscored rows and whose true rows that could
    not be scored as right."""
    name, labels = UNSCORED, set(taken)
    while name in labels:
        name += "*"
    return name


@dataclass
class EvalReport:
    """Everything ``clsrun eval`` prints; :meth:`to_json` is what ``--json`` writes."""

    data: str
    bundle: str
    model: dict[str, Any]  # Classifier.describe(): backend, precision, device, threads, file, ...
    unscored: int  # rows the model could not score: predicted as `unscored_as`, so they count as wrong
    seconds: float
    rows_per_s: float
    metrics: ClassificationReport  # labels in model order; confusion[true][predicted]
    warnings: list[str] = field(default_factory=list)  # e.g. the data is the training data (overlap.py)
    left_out: list[str] = field(default_factory=list)  # rows of the file not scored at all (logged as read)
    unscored_as: str = UNSCORED  # their predicted label in the metrics (:func:`unscored_label`)

    def to_json(self) -> dict[str, Any]:
        """Run facts and every metric at the top level (``accuracy``, ``macro_f1``, ``per_class``, ...)."""
        run = {k: v for k, v in asdict(self).items() if k != "metrics"}
        return {**run, **self.metrics.to_json()}

    def to_text(self) -> str:
        """What was scored with what, then the metrics report (headline, per-class table, confusion)."""
        m = self.model
        lines = [
            f"data:   {self.data}",
            f"model:  {self.bundle} ({m.get('backend')} {m.get('precision')} on {m.get('device')}, "
            f"{m.get('threads')} threads; {self.rows_per_s:,.0f} rows/s)",
        ]
        if self.unscored:
            lines.append(
                f"{self.unscored:,} rows could not be scored: counted as wrong ({self.unscored_as!r})"
            )
        return "\n".join([*lines, "", self.metrics.to_text()])


def evaluate(
    bundle: Path | str,
    data: Path | str,
    variant: Variant = Variant(),
    text_col: str = "text",
    label_col: str = "label",
) -> EvalReport:
    """Score ``data`` with ``bundle`` and compute accuracy, macro P/R/F1, per-class scores and confusion.

    ``variant``: what to run (default: what ``clsrun predict`` runs). Raises :class:`InputError` when the
    file holds labels the model does not know (listing them all), before any scoring is done. The
    report's ``warnings`` say when ``data`` is, or overlaps, the bundle's training data.
    """
    from clsrun.runtime.classifier import Classifier
    from clsrun.runtime.labelled import read_labelled
    from clsrun.runtime.metrics import classification_report
    from clsrun.runtime.overlap import overlap_warning

    rows = read_labelled(data, text_col=text_col, label_col=label_col)
    clf = Classifier.load(bundle, variant)
    known = set(clf.labels)
    unknown = sorted({y for y in rows.labels if y not in known})
    if unknown:
        raise InputError(
            f"{data}: column {label_col!r} holds labels the model does not know: "
            f"{', '.join(repr(u) for u in unknown[:10])}{' ...' if len(unknown) > 10 else ''} "
            f"({len(unknown)} such label{'s' if len(unknown) != 1 else ''}, on "
            f"{sum(1 for y in rows.labels if y not in known):,} rows); the model's labels are "
            f"{', '.join(repr(x) for x in clf.labels)}"
        )
    start = time.perf_counter()
    predictions = clf.predict(rows.texts)
    seconds = time.perf_counter() - start
    placeholder = unscored_label([*clf.labels, *rows.labels])
    scored = predictions.ok.tolist()
    predicted = [label if ok else placeholder for label, ok in zip(predictions.labels, scored, strict=True)]
    return EvalReport(
        data=str(data),
        bundle=str(bundle),
        model=clf.describe(),
        unscored=scored.count(False),
        seconds=seconds,
        rows_per_s=len(rows.texts) / max(seconds, 1e-9),
        metrics=classification_report(rows.labels, predicted, clf.labels, averaged_over=clf.labels),
        warnings=[
            w for w in [overlap_warning(clf.bundle, Path(data), rows.texts, (text_col, label_col))] if w
        ],
        left_out=rows.left_out,
        unscored_as=placeholder,
    )
