"""`clsrun eval BUNDLE DATA`: accuracy, macro P/R/F1, per-class report and confusion matrix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from clsrun.runtime.cli.app import app, reports_errors
from clsrun.runtime.cli.options import (
    AUTO,
    LABEL_COL,
    TEXT_COL,
    BackendOpt,
    DeviceOpt,
    LabelCol,
    PrecisionOpt,
    Streams,
    TextCol,
    Threads,
    flag,
)


@app.command("eval")
@reports_errors
def eval_command(
    bundle: Annotated[Path, typer.Argument(help="Model bundle folder (from `clsrun train`).")],
    data: Annotated[
        Path,
        typer.Argument(exists=True, help="Labelled file: .csv, .tsv, .jsonl or .parquet, optionally .gz."),
    ],
    precision: PrecisionOpt = AUTO,
    backend: BackendOpt = AUTO,
    device: DeviceOpt = AUTO,
    threads: Threads = None,
    streams: Streams = None,
    text_col: TextCol = TEXT_COL,
    label_col: LabelCol = LABEL_COL,
    as_json: Annotated[
        bool,
        flag("--json", help="Print the report as JSON (for scripts) instead of text (for people)."),
    ] = False,
) -> None:
    """Score a labelled file: accuracy, macro precision/recall/F1, per-class report, confusion matrix.

    Scores with the variant `clsrun predict` would run unless --precision/--backend say otherwise (name a
    precision to see what quantisation costs in accuracy). Labels in the file that the model does not
    know are an error (exit 2). A warning says when DATA is the training file, or when many of its rows
    are training rows (the scores would overstate accuracy on new text).
    """
    from clsrun.runtime.errors import UsageError
    from clsrun.runtime.evaluate import evaluate
    from clsrun.runtime.variant import Variant

    if data.is_dir():  # typer's own words were "File 'my_model' is a directory", with no word of the order
        swapped = bundle.is_file()
        raise UsageError(
            f"{data}: is a folder, not a labelled file"
            + (f"; the bundle comes first: clsrun eval {data} {bundle}" if swapped else "")
        )
    report = evaluate(
        bundle, data, Variant(backend, precision, device, threads, streams), text_col, label_col
    )
    for line in report.warnings:
        typer.echo(f"warning: {line}", err=True)
    typer.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2) if as_json else report.to_text())
