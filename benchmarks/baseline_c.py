"""The TF-IDF + logistic-regression baseline of ``clsrun train`` at several C: what the README's "C=10 rather
than scikit-learn's C=1" figures rest on.

    .venv/bin/python benchmarks/baseline_c.py [--data-dir ../shared/datasets] [--c-values 1,10]

For each of ``reviews_zh_train.csv``, ``inews_zh_train.csv`` and ``bbc_en_train.csv`` it builds the split
that ``clsrun train DATA --model ngram`` uses when no flag says otherwise, through the same calls
(``TrainConfig.for_kind("ngram")`` for the seed and class weights, ``DataOptions().load``: a stratified
``DEFAULT_VAL_SPLIT`` of DATA held out, seed 42), normalises the texts as ``train()`` hands them to the
baseline (``Normalization()``), and fits :func:`clsrun.trainer.baseline.fit_baseline` once per C, with
``balanced`` as training sets it (``--class-weights none`` by default: not balanced). C is the module's
constant ``clsrun.trainer.baseline.C``, set here before each fit; the fit runs in this process on one
thread, as training's does in its own. Prints a markdown table (validation accuracy, macro-F1, seconds
to vectorise, fit and score), then the last C minus the first, in points.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from clsrun.runtime.bundle import Normalization
from clsrun.runtime.textnorm import normalize_many
from clsrun.trainer import baseline
from clsrun.trainer.baseline import BaselineResult, fit_baseline
from clsrun.trainer.config import TrainConfig
from clsrun.trainer.data import DataOptions

DATASETS = ("reviews_zh_train.csv", "inews_zh_train.csv", "bbc_en_train.csv")
DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"


@dataclass(frozen=True)
class Row:
    """One baseline fit: which data, at which C, and what it scored."""

    dataset: str
    c: float
    result: BaselineResult


def c_values(text: str) -> list[float]:
    """``"1,10"`` -> ``[1.0, 10.0]`` (argparse type of ``--c-values``)."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from e
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"need one or more C > 0, got {text!r}")
    return values


def measure(path: Path, cs: list[float]) -> list[Row]:
    """Fit the baseline on ``path``'s default ``clsrun train --model ngram`` split at each C in ``cs``."""
    config = TrainConfig.for_kind("ngram")  # the defaults --model ngram trains with (seed, class weights)
    split = DataOptions().validate().load(path, config.seed)
    norm = Normalization()  # train() hands the baseline the default normalisation, whatever the kind
    train_texts, val_texts = normalize_many(split.train_texts, norm), normalize_many(split.val_texts, norm)
    name = path.name.removesuffix("_train.csv")
    print(
        f"{name}: {len(split.train_texts):,} training rows, {len(split.val_texts):,} validation rows "
        f"(val_split {split.val_split}, seed {config.seed}, balanced {config.class_weights == 'auto'})",
        flush=True,
    )
    rows = []
    for c in cs:
        baseline.C = c  # fit_baseline reads the module constant at call time
        result = fit_baseline(
            train_texts,
            split.train_targets(),
            val_texts,
            split.val_targets(),
            config.class_weights == "auto",
        )
        rows.append(Row(name, c, result))
        print(f"  {result.recipe}: {result.seconds:.1f} s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder of the three CSV files")
    ap.add_argument("--c-values", type=c_values, default=c_values("1,10"), help="comma-separated C values")
    args = ap.parse_args()
    rows = [row for file in DATASETS for row in measure(args.data_dir / file, args.c_values)]
    print("\n| dataset | C | validation accuracy | macro-F1 | fit s |")
    print("|---|---|---|---|---|")
    for row in rows:
        r = row.result
        print(f"| {row.dataset} | {row.c:g} | {r.accuracy:.4f} | {r.macro_f1:.4f} | {r.seconds:.1f} |")
    first, last = args.c_values[0], args.c_values[-1]
    if first != last:
        print(f"\nC={last:g} minus C={first:g}, points:")
        by = {(row.dataset, row.c): row.result for row in rows}
        for name in dict.fromkeys(row.dataset for row in rows):
            low, high = by[name, first], by[name, last]
            print(
                f"- {name}: accuracy {100 * (high.accuracy - low.accuracy):+.2f}, "
                f"macro-F1 {100 * (high.macro_f1 - low.macro_f1):+.2f}"
            )


if __name__ == "__main__":
    main()
