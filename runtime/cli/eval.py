"""`clsrun eval BUNDLE DATA`: accuracy, macro P/R/F1, per-class report and confusion matrix."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from clsrun.runtime.cli.app import app, reports_errors


@app.command("eval")
@reports_errors
def eval_command(
    bundle: Path = typer.Argument(..., help="Model bundle folder (from `clsrun train`)."),
    data: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        help="Labelled file: .csv, .tsv, .jsonl or .parquet, optionally .gz.",
    ),
    precision: str = typer.Option(
        "auto",
        "--precision",
        help="auto|fp32|fp16|int8: the variant to evaluate. auto is what `clsrun predict` runs; name one "
        "to see what quantisation costs in accuracy.",
    ),
    backend: str = typer.Option(
        "auto",
        "--backend",
        help="auto|onnx|torch: onnx scores the exported graph (what predict runs); torch the eager "
        "model (needs clsrun\\[train], slower, the reference the export gate compares with).",
    ),
    device: str = typer.Option("auto", "--device", help="auto|cpu|cuda: where the model runs."),
    threads: int = typer.Option(
        0, "--threads", help="Inference threads; 0 uses every core this process may use."
    ),
    text_col: str = typer.Option("text", "--text-col", help="Column holding the text."),
    label_col: str = typer.Option("label", "--label-col", help="Column holding the true label."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the report as JSON (for scripts) instead of text (for people)."
    ),
) -> None:
    """Score a labelled file: accuracy, macro precision/recall/F1, per-class report, confusion matrix.

    Scores with the variant `clsrun predict` would run unless --precision/--backend say otherwise. Labels in the file that the model does not know are an error (exit 2).
    """
    from clsrun.runtime.evaluate import evaluate

    report = evaluate(
        bundle,
        data,
        text_col=text_col,
        label_col=label_col,
        backend=backend,
        precision=precision,
        device=device,
        threads=threads or None,
    )
    if as_json:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        typer.echo(report.to_text())
