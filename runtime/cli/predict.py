"""`clsrun predict INPUT`: score every row of a file with a model bundle (the default model without --model)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from clsrun.runtime.cli.app import app, reports_errors


@app.command("predict")
@reports_errors
def predict(
    input: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        help="File to score: .csv, .tsv, .jsonl or .parquet, optionally .gz. Streamed, never loaded whole.",
    ),
    model: Path | None = typer.Option(
        None, "--model", file_okay=False, help="Model bundle folder. Default: the model shipped with clsrun."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        dir_okay=False,
        help="Output file (.csv, .jsonl or .parquet). Default: INPUT_STEM.scores.csv next to the input.",
    ),
    text_col: str = typer.Option("text", "--text-col", help="Column (or JSON field) holding the text."),
    id_col: str | None = typer.Option(
        None, "--id-col", help="Column copied to the output's id column. Default: the 0-based row number."
    ),
    backend: str = typer.Option(
        "auto",
        "--backend",
        help="auto|onnx|torch. auto runs the exported ONNX model (fast, no torch needed) and falls back "
        "to eager PyTorch only for a bundle never exported; torch is slower and needs clsrun[train].",
    ),
    precision: str = typer.Option(
        "auto",
        "--precision",
        help="auto|fp32|fp16|int8. Only variants that passed the export accuracy gate can run. auto: int8 on "
        "CPU (fastest, within the gate's accuracy drop of fp32), fp16 on CUDA; fp32 is the exact reference.",
    ),
    device: str = typer.Option(
        "auto", "--device", help="auto|cpu|cuda. auto uses CUDA when onnxruntime-gpu is installed."
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        min=1,
        help="Inference threads. Default: the cores this process may use. Fewer leaves cores for other jobs "
        "(reading and writing run in two more, mostly idle, threads).",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue an interrupted run (even one killed with kill -9) from its last checkpoint; the "
        "result is identical to an uninterrupted run. Refused if the input, model or options changed.",
    ),
    probs: bool = typer.Option(False, "--probs", help="Add a prob_<label> column for every label."),
    batch_tokens: int | None = typer.Option(
        None,
        "--batch-tokens",
        min=1,
        help="Padded tokens per batch (rows x longest row). Bigger batches amortise per-call overhead but "
        "use more memory and, past a point, run no faster. Default: 32768 for a char-CNN, 8192 for BERT.",
    ),
    window: int = typer.Option(
        8192,
        "--window",
        min=1,
        help="Rows read ahead and sorted by length before batching; also the unit of a --resume checkpoint. "
        "Bigger windows pad less (similar lengths meet) but hold more rows in memory and redo more "
        "work after a crash.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary line."),
) -> None:
    """Score INPUT: one output row per input row, in order, with label, score, status and error.

    Rows with empty, null or undecodable text are kept with status=error and a reason (exit code 0).
    A file that cannot be read at all, or lacks the text column, exits with code 2 before the model loads.
    """
    from clsrun.runtime.classifier import Classifier
    from clsrun.runtime.score import ScoreOptions, open_input, score_file

    options = ScoreOptions(
        text_col=text_col, id_col=id_col, probs=probs, resume=resume, batch_tokens=batch_tokens, window=window
    )
    stream = open_input(input, options)  # whole-file problems: exit 2 before the model loads
    classifier = Classifier.load(model, backend=backend, precision=precision, device=device, threads=threads)
    bar = None
    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit=" rows", unit_scale=True, desc="scoring", file=sys.stderr, smoothing=0.1)
        options.progress = bar.update
    try:
        result = score_file(stream, out, classifier, options)
    finally:
        if bar is not None:
            bar.close()
    if not quiet:
        m = result.manifest
        typer.echo(
            f"scored {m['rows_read']} rows ({m['ok']} ok, {m['error']} error, {m['truncated']} truncated) -> "
            f"{result.output} in {m['wall_s']:.1f}s, {m['rows_per_s']:.0f} rows/s "
            f"({m['backend']} {m['precision']} {m['device']}, {m['threads']} threads)",
            err=True,
        )
