"""`clsrun predict INPUT`: score every row of a file with a model bundle (the default model without --model)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from clsrun.runtime.cli.app import app, reports_errors

if TYPE_CHECKING:
    from clsrun.runtime.readers import RecordStream
    from clsrun.runtime.score import ScoreOptions


@app.command("predict")
@reports_errors
def predict(
    input: str = typer.Argument(
        ...,
        help="File to score: .csv, .tsv, .jsonl or .parquet, optionally .gz. Streamed, never loaded whole. "
        "With --engine ray also a folder, a glob ('in/*.parquet') or a URI (s3://, gs://, hdfs://).",
    ),
    model: Path | None = typer.Option(
        None, "--model", file_okay=False, help="Model bundle folder. Default: the model shipped with clsrun."
    ),
    out: str | None = typer.Option(
        None,
        "--out",
        help="Output file (.csv, .jsonl or .parquet). Default: INPUT_STEM.scores.csv next to the input. "
        "With --engine ray (required there): a folder of part files plus _manifest.json; its extension "
        "picks the parts' format (scores.csv/), Parquet without one.",
    ),
    text_col: str = typer.Option("text", "--text-col", help="Column (or JSON field) holding the text."),
    id_col: str | None = typer.Option(
        None, "--id-col", help="Column copied to the output's id column. Default: the 0-based row number."
    ),
    backend: str = typer.Option(
        "auto",
        "--backend",
        help="auto|onnx|torch. auto runs the exported ONNX model (fast, no torch needed) and falls back "
        "to eager PyTorch only for a bundle never exported; torch is slower and needs clsrun\\[train].",
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
    streams: int | None = typer.Option(
        None,
        "--streams",
        min=1,
        help="Batches scored at once, each on threads/streams cores, sharing one copy of the model. "
        "Default: one per thread for ONNX on CPU (no hand-offs between threads inside each batch: "
        "faster, measured in the README), one on CUDA and for the torch backend. Each stream holds one "
        "batch of activations in memory.",
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
        "use more memory and, past a point, run slower (a BERT batch's activations fall out of the CPU "
        "caches). Default: 32768 for a char-CNN; for BERT 1024 on CPU, 8192 on CUDA.",
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
    # -- --engine ray: runtime/ray_engine/ ---------------------------------------------------------
    engine: str = typer.Option(
        "local",
        "--engine",
        help="local|ray. local: this machine, one file, resumable. ray: Ray Data over many files and "
        "machines (needs the ray extra, clsrun\\[ray]); a failed job leaves no output and is rerun whole, and starting Ray "
        "costs seconds, so it pays off only for inputs one machine cannot finish in time.",
    ),
    address: str | None = typer.Option(
        None,
        "--address",
        help="Ray cluster to join: 'auto' (this node belongs to one) or 'ray://host:10001'. Default: start "
        "a local Ray on this machine (the same command works on a laptop and on a cluster).",
    ),
    workers: int = typer.Option(
        2,
        "--workers",
        min=1,
        help="Model actors (each loads the model once). More workers score faster until the cluster's "
        "CPUs/GPUs are used up; each one holds a copy of the model in memory.",
    ),
    cpus_per_worker: float = typer.Option(
        1.0,
        "--cpus-per-worker",
        min=0.01,
        help="Ray CPUs reserved per worker; also its inference threads (at least 1). More threads per "
        "worker cut latency per block; more workers with fewer threads usually give more rows/s.",
    ),
    gpus_per_worker: float = typer.Option(
        0.0,
        "--gpus-per-worker",
        min=0.0,
        help="Ray GPUs per worker (0.5 puts two workers on a GPU); above 0 the model runs on CUDA.",
    ),
    preserve_order: bool = typer.Option(
        False,
        "--preserve-order",
        help="Number the part files in input order. Slower: a finished block waits for the ones before it.",
    ),
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
    if engine != "local":
        if streams is not None:
            from clsrun.runtime.errors import UsageError

            raise UsageError("--streams is for the local engine; on Ray, --workers sets how many run at once")
        ray_settings = (address, workers, cpus_per_worker, gpus_per_worker, preserve_order)
        _predict_ray(
            engine, input, out, model, options, (backend, precision, device, threads), ray_settings, quiet
        )
        return
    _check_local_paths(input, out)
    stream = open_input(input, options)  # whole-file problems: exit 2 before the model loads
    classifier = Classifier.load(
        model, backend=backend, precision=precision, device=device, threads=threads, streams=streams
    )
    bar = None
    if not quiet and sys.stderr.isatty():
        bar = ScoringBar(stream)
        options.progress, options.progress_resumed = bar.update, bar.resumed
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
            f"({m['backend']} {m['precision']} {m['device']}, {m['threads']} threads, {m['streams']} streams)",
            err=True,
        )


class ScoringBar:
    """The tqdm bar on stderr: rows written of the input's rows, rows/s and the time left.

    The total comes from the stream (:meth:`RecordStream.progress`), asked once per window written: exact
    for Parquet; for CSV/TSV/JSONL estimated from the bytes read until the whole file is read (the
    description says "~est." until then) and corrected as the reading goes.
    """

    def __init__(self, stream: RecordStream, file: Any = None) -> None:
        from tqdm import tqdm

        self.stream = stream
        first = stream.progress()
        self.exact = first.exact
        self.bar = tqdm(
            total=first.total_rows,
            desc=_bar_label(first.exact),
            unit=" rows",
            unit_scale=True,
            file=file or sys.stderr,
            smoothing=0.1,
        )

    def _retotal(self, written: int) -> None:
        progress = self.stream.progress()
        if progress.total_rows is not None:  # never under the rows written (an estimate can be, briefly)
            self.bar.total = max(progress.total_rows, written)
        if progress.exact != self.exact:
            self.exact = progress.exact
            self.bar.set_description_str(_bar_label(progress.exact), refresh=False)

    def update(self, rows: int) -> None:
        """``rows`` more rows written."""
        self._retotal(self.bar.n + rows)
        self.bar.update(rows)

    def resumed(self, rows: int) -> None:
        """Rows a --resume run found done: shown as done, left out of rows/s and the time left."""
        self.bar.n = self.bar.initial = self.bar.last_print_n = rows  # what tqdm(initial=rows) sets
        self._retotal(rows)
        self.bar.refresh()

    def close(self) -> None:
        self._retotal(self.bar.n)
        self.bar.close()


def _bar_label(exact: bool) -> str:
    return "scoring" if exact else "scoring (~est.)"


# -- --engine ray: the command maps options to clsrun.runtime.ray_engine.engine.score_with_ray -----------
def _check_local_paths(input: str, out: str | None) -> None:
    """What typer checked for the local engine before INPUT and --out could be folders or URIs."""
    from clsrun.runtime.errors import InputError, UsageError

    if not Path(input).exists():
        raise InputError(f"{input}: file not found")
    if Path(input).is_dir():
        raise UsageError(
            f"{input}: is a folder; the local engine scores one file (--engine ray reads folders)"
        )
    if out is not None and Path(out).is_dir():
        raise UsageError(f"--out {out}: is a folder; the local engine writes one file")


def _predict_ray(
    engine: str,
    input: str,
    out: str | None,
    model: Path | None,
    score: ScoreOptions,
    variant: tuple[str, str, str, int | None],
    ray_settings: tuple[str | None, int, float, float, bool],
    quiet: bool,
) -> None:
    """``--engine ray``: Ray is imported inside ``score_with_ray``; without it, a one-line error."""
    from clsrun.runtime.errors import UsageError
    from clsrun.runtime.ray_engine.engine import RayOptions, score_with_ray

    if engine != "ray":
        raise UsageError(f"--engine {engine!r}: choose local or ray")
    address, workers, cpus, gpus, preserve_order = ray_settings
    backend, precision, device, threads = variant
    if out is None:
        raise UsageError("--engine ray needs --out FOLDER (e.g. --out scores.parquet)")
    options = RayOptions(
        score=score,
        address=address,
        workers=workers,
        cpus_per_worker=cpus,
        gpus_per_worker=gpus,
        preserve_order=preserve_order,
        backend=backend,
        precision=precision,
        device=device,
        threads=threads,
        quiet=quiet,
    )
    result = score_with_ray(input, out, model, options)
    if not quiet:
        m = result.manifest
        typer.echo(
            f"scored {m['rows_read']} rows from {len(m['files'])} file(s) ({m['ok']} ok, {m['error']} error) -> "
            f"{result.output} ({len(m['parts'])} parts) in {m['wall_s']:.1f}s, {m['rows_per_s']:.0f} rows/s "
            f"on {workers} Ray workers ({m['backend']} {m['precision']} {m['device']})",
            err=True,
        )
