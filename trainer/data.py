"""Training data: read the labelled file, hold out a stratified validation split (or read ``--val-data``).

Both files go through :func:`clsrun.runtime.labelled.read_labelled`, the reader the runtime uses, so
training sees the text exactly as scoring will. Texts stay raw here; trainers normalise them (the raw
validation rows are what the bundle keeps in ``validation.jsonl.gz``, and scoring normalises again).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clsrun.runtime.bundle import sha256_file
from clsrun.runtime.errors import InputError, UsageError, clipped
from clsrun.runtime.labelled import read_labelled

DEFAULT_VAL_SPLIT = 0.1  # share of the training file held out when no validation file is given
SHARED_VAL_WARN = 0.1  # share of --val-data rows that are also training rows from which training warns
# A label column with at least this many distinct values, and more distinct values than half its rows,
# holds texts or ids, not labels (the columns swapped, or the wrong one named): no classifier learns a
# class from one or two rows each.
LABELS_LIKE_TEXTS_MIN = 50

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataOptions:
    """Where the labelled rows are: the columns, and a validation file or the share of DATA held out."""

    val_data: Path | None = None  # labelled validation file (--val-data); None: hold out val_split of DATA
    val_split: float | None = (
        None  # share of DATA held out, stratified (--val-split); None: DEFAULT_VAL_SPLIT
    )
    text_col: str = "text"  # column holding the text (--text-col)
    label_col: str = "label"  # column holding the label (--label-col)

    def validate(self) -> DataOptions:
        """One :class:`UsageError` naming each offending flag. Returns self."""
        problems = []
        if self.val_data is not None and self.val_split is not None:
            problems.append("give either --val-data or --val-split, not both")
        if self.val_split is not None and not 0 < self.val_split < 1:
            problems.append(f"--val-split must be between 0 and 1 (exclusive), got {self.val_split!r}")
        if problems:
            raise UsageError("; ".join(problems))
        return self

    def load(self, data: Path | str, seed: int) -> Split:
        """Read ``data`` (and the validation file) into a :class:`Split`; ``seed`` drives the split."""
        split = DEFAULT_VAL_SPLIT if self.val_split is None else self.val_split
        return load_split(data, self.val_data, split, seed, self.text_col, self.label_col)


@dataclass
class Split:
    """Training and validation rows, and where they came from. ``labels`` is the model's output order."""

    train_texts: list[str]
    train_labels: list[str]
    val_texts: list[str]
    val_labels: list[str]
    labels: list[str]  # sorted distinct training labels
    data_file: Path
    data_sha256: str
    val_file: Path | None = None  # --val-data, when given
    val_sha256: str | None = None
    val_split: float | None = None  # the held-out fraction, when no --val-data
    text_col: str = "text"  # the columns read (--text-col / --label-col): eval of the same file names them
    label_col: str = "label"

    def train_targets(self) -> np.ndarray:
        """(N,) int64 label index of each training row."""
        index = {name: i for i, name in enumerate(self.labels)}
        return np.fromiter(
            (index[x] for x in self.train_labels), dtype=np.int64, count=len(self.train_labels)
        )

    def val_targets(self) -> np.ndarray:
        """(N_val,) int64 label index of each validation row."""
        index = {name: i for i, name in enumerate(self.labels)}
        return np.fromiter((index[x] for x in self.val_labels), dtype=np.int64, count=len(self.val_labels))

    def to_json(self) -> dict[str, Any]:
        """Where the data came from, for ``training`` in ``clsrun.json``."""
        return {
            "data_file": str(self.data_file),
            "data_sha256": self.data_sha256,
            "val_data_file": None if self.val_file is None else str(self.val_file),
            "val_data_sha256": self.val_sha256,
            "val_split": self.val_split,
            "text_col": self.text_col,
            "label_col": self.label_col,
            "train_rows": len(self.train_texts),
            "val_rows": len(self.val_texts),
            "label_counts": dict(sorted(Counter(self.train_labels).items())),
        }


def stratified_split(labels: list[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)``: hold out ``fraction`` of every label's rows (sklearn, seeded).

    Raises :class:`UsageError` naming ``--val-split`` when a label has a single row or the fraction leaves
    fewer validation rows than labels.
    """
    from sklearn.model_selection import train_test_split

    counts = Counter(labels)
    lonely = sorted(name for name, n in counts.items() if n < 2)
    if lonely:
        raise UsageError(
            f"--val-split: label(s) {', '.join(map(repr, lonely[:10]))} have a single row; a stratified "
            "split needs at least 2 rows per label (add rows, or give --val-data)"
        )
    _require_rows_per_label(len(labels), len(counts), fraction)
    index = np.arange(len(labels))
    try:
        train_idx, val_idx = train_test_split(index, test_size=fraction, random_state=seed, stratify=labels)
    except ValueError as e:
        raise UsageError(f"--val-split {fraction}: {e}") from e
    # The split fills the held-out side first: a large share can leave a rare label no training row, which
    # the model then never learns (it failed later as "unexpected KeyError" naming the label).
    untrained = sorted(set(counts) - {labels[i] for i in train_idx})
    if untrained:
        rows = ", ".join(f"{name!r} ({counts[name]} rows)" for name in untrained[:10])
        raise UsageError(
            f"--val-split {fraction:g} holds out every row of label(s) {rows}, leaving none to train on; "
            "a smaller --val-split keeps one, or give --val-data FILE"
        )
    return np.sort(train_idx), np.sort(val_idx)


def _require_rows_per_label(rows: int, n_labels: int, fraction: float) -> None:
    """Refuse a ``fraction`` that leaves either side with fewer rows than labels (a stratified split needs a
    row of every label on both), saying which shares work, in place of scikit-learn's own words. Its
    counts: ``ceil(fraction * rows)`` held out, the rest kept."""
    held = math.ceil(fraction * rows)
    if held >= n_labels and rows - held >= n_labels:
        return
    # the held-out shares that leave both sides enough, rounded inwards so that both ends work
    low, high = math.ceil(1000 * n_labels / rows) / 1000, math.floor(1000 * (rows - n_labels) / rows) / 1000
    said = (
        f"holds out {held} of {rows} rows"
        if held < n_labels
        else f"keeps {rows - held} of {rows} rows for training"
    )
    works = (
        f"give --val-split between {low:g} and {high:g}, or --val-data FILE"
        if low <= high
        else f"{rows} rows cannot hold a row of each label on both sides: add rows or give --val-data FILE"
    )
    raise UsageError(f"--val-split {fraction:g} {said}, fewer than the {n_labels} labels; {works}")


def _require_labels(path: Path, labels: list[str], text_col: str, label_col: str) -> None:
    """Refuse a label column whose values are nearly all different (:data:`LABELS_LIKE_TEXTS_MIN`): it
    holds texts or ids, most often because ``--text-col`` and ``--label-col`` were given the other way
    round, which would otherwise train a model of one class per row (or fail later on the split)."""
    distinct = len(set(labels))
    if distinct < LABELS_LIKE_TEXTS_MIN or distinct * 2 <= len(labels):
        return
    example = max(labels[:100], key=len)
    raise InputError(
        f"{path}: column {label_col!r} (--label-col) has {distinct:,} different values in {len(labels):,} "
        f"rows (such as {clipped(example)!r}): texts or ids, not labels. Are --text-col ({text_col!r}) and "
        "--label-col swapped?"
    )


# The most common label at least this many times the rarest: labels are imbalanced, and a run that does not
# say --class-weights weighs them (``imbalance``). Without weights a model learns to seldom predict the rare
# label (the n-gram model on inews_zh recalled 26 % of its negative rows: README), and accuracy hides it.
IMBALANCE_RATIO = 4


def imbalance(labels: list[str]) -> str | None:
    """How the training ``labels`` are imbalanced (:data:`IMBALANCE_RATIO`) in words, or None when they
    are not: ``'negative' has 578 of the 5,355 training rows, 4.6x fewer than 'neutral'``."""
    counts = Counter(labels).most_common()
    if len(counts) < 2:
        return None
    (common, most), (rare, least) = counts[0], counts[-1]
    if most < IMBALANCE_RATIO * least:
        return None
    return f"{rare!r} has {least:,} of the {len(labels):,} training rows, {most / least:.1f}x fewer than {common!r}"


def _warn_shared_rows(source: str, train_texts: list[str], val_texts: list[str], why: str = "") -> None:
    """Warn when a tenth or more of the validation texts are training texts (the same file given twice, a
    split that leaked, or a file that repeats its texts so the held-out share holds copies of training
    rows): early stopping and the recorded scores would then measure memory, not accuracy. ``source``:
    ``--val-data FILE`` or ``--val-split``; ``why``: what follows the count (`` (the file repeats ...)``)."""
    seen = set(train_texts)
    shared = sum(t in seen for t in val_texts)
    if val_texts and shared / len(val_texts) >= SHARED_VAL_WARN:
        log.warning(
            "%s: %d of its %d rows are also training rows%s: validation scores will overstate "
            "accuracy on new text",
            source,
            shared,
            len(val_texts),
            why,
        )


def _warn_unvalidated(labels: list[str], val_labels: list[str], val_data: Path | str | None) -> None:
    """One line naming the labels without a validation row: each one's report row reads 0.0000 with support
    0, and macro-F1 leaves it out."""
    unseen = sorted(set(labels) - set(val_labels))
    if not unseen:
        return
    why, fix = (
        (f"--val-data {val_data} has none", "a --val-data file with such rows would")
        if val_data is not None
        else ("too few rows to hold one out", "a larger --val-split or --val-data with such rows would")
    )
    log.warning(
        "label(s) %s have no validation row (%s): validation says nothing about them; %s",
        ", ".join(map(repr, unseen[:10])),
        why,
        fix,
    )


def load_split(
    data: Path | str,
    val_data: Path | str | None = None,
    val_split: float = DEFAULT_VAL_SPLIT,
    seed: int = 42,
    text_col: str = "text",
    label_col: str = "label",
) -> Split:
    """Read ``data`` and either read ``val_data`` or hold out a stratified ``val_split`` of ``data``.

    Rows with an empty text or label are dropped (see ``read_labelled``). A validation label never seen in
    training is an :class:`InputError` naming ``--val-data``; fewer than two labels is an :class:`InputError`.
    """
    data = Path(data)
    rows = read_labelled(data, text_col, label_col)
    _require_labels(data, rows.labels, text_col, label_col)
    if val_data is not None:
        val_path = Path(val_data)
        val_rows = read_labelled(val_path, text_col, label_col)
        train_t, train_l, val_t, val_l = rows.texts, rows.labels, val_rows.texts, val_rows.labels
        unseen = sorted(set(val_l) - set(train_l))
        if unseen:
            raise InputError(
                f"--val-data {val_path}: label(s) {', '.join(map(repr, unseen[:10]))} never occur in {data}"
            )
        _warn_shared_rows(f"--val-data {val_path}", train_t, val_t)
    else:
        train_idx, val_idx = stratified_split(rows.labels, val_split, seed)
        train_t = [rows.texts[i] for i in train_idx]
        train_l = [rows.labels[i] for i in train_idx]
        val_t = [rows.texts[i] for i in val_idx]
        val_l = [rows.labels[i] for i in val_idx]
        _warn_shared_rows("--val-split", train_t, val_t, " (the file repeats those texts)")
    labels = sorted(set(train_l))
    if len(labels) < 2:
        raise InputError(f"{data}: column {label_col!r} has {len(labels)} distinct label(s); need at least 2")
    _warn_unvalidated(labels, val_l, val_data)
    return Split(
        train_texts=train_t,
        train_labels=train_l,
        val_texts=val_t,
        val_labels=val_l,
        labels=labels,
        data_file=data,
        data_sha256=sha256_file(data),
        val_file=None if val_data is None else Path(val_data),
        val_sha256=None if val_data is None else sha256_file(Path(val_data)),
        val_split=None if val_data is not None else val_split,
        text_col=text_col,
        label_col=label_col,
    )
