"""`clsrun predict INPUT`: score every row of a file with a model bundle (the default model without --model).

The command maps its flags to the library's option groups and calls ``clsrun.runtime.predict.predict_file``;
the progress bar (:class:`ScoringBar`) is the only thing it adds.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from clsrun.runtime.cli.app import app, reports_errors
from clsrun.runtime.cli.options import (
    AUTO,
    TEXT_COL,
    WINDOW,
    BackendOpt,
    BatchTokens,
    Compile,
    Delimiter,
    DeviceOpt,
    IdCol,
    Model,
    PrecisionOpt,
    Quiet,
    Streams,
    TextCol,
    Threads,
    TsvQuotes,
    Window,
    flag,
)
from clsrun.runtime.errors import UsageError

if TYPE_CHECKING:
    from types import TracebackType

    from clsrun.runtime.readers import RecordStream

Engine = Literal["local", "ray"]


@app.command("predict")
@reports_errors
def predict(
    input: Annotated[
        str,
        typer.Argument(
            help="File to score: .csv, .tsv, .jsonl or .parquet, optionally .gz. Streamed, never loaded "
            "whole. With --engine ray also a folder, a glob ('in/*.parquet') or a URI (s3://, gs://, hdfs://)."
        ),
    ],
    model: Model = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="Output file: .csv, .tsv, .jsonl, .json (also written as JSON Lines) or .parquet; never "
            "'-' (it appears only once complete). Default: INPUT_STEM.scores.csv next to the input. Locked "
            "while a run writes it: a second run on the same --out is refused (exit 2). With --engine ray "
            "(required there): a folder of part files plus _manifest.json; its extension picks the parts' "
            "format (scores.csv/), Parquet without one; locked the same way on a local disk, not on s3://, "
            "gs:// or hdfs:// (no lock spans a cluster's storage: give each job its own --out).",
        ),
    ] = None,
    text_col: TextCol = TEXT_COL,
    id_col: IdCol = None,
    delimiter: Delimiter = None,
    tsv_quotes: TsvQuotes = False,
    backend: BackendOpt = AUTO,
    precision: PrecisionOpt = AUTO,
    device: DeviceOpt = AUTO,
    threads: Threads = None,
    streams: Streams = None,
    compile: Compile = False,
    resume: Annotated[
        bool,
        flag(
            "--resume",
            help="Continue an interrupted run (Ctrl-C, SIGTERM, even kill -9) from its last checkpoint; the "
            "result is identical to an uninterrupted run. Refused if the input, model or options changed. "
            "When the same job already finished, says so and scores nothing (safe for retried jobs).",
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        flag(
            "--overwrite",
            help="Replace an existing --out, and discard an interrupted run's checkpoint. Without it both "
            "are refused (exit 2), so a rerun never silently replaces a result or throws away scored rows.",
        ),
    ] = False,
    max_error_rate: Annotated[
        float | None,
        typer.Option(
            "--max-error-rate",
            min=0.0,
            max=1.0,
            metavar="FRACTION",
            help="Fail (exit 4) when more than this share of rows could not be scored, e.g. 0.01; the output "
            "and manifest are still written, so a scheduler can tell a bad input from a crash (exit 1). "
            "Default: no limit (per-row errors never fail the run).",
        ),
    ] = None,
    probs: Annotated[bool, flag("--probs", help="Add a prob_<label> column for every label.")] = False,
    batch_tokens: BatchTokens = None,
    window: Window = WINDOW,
    quiet: Quiet = False,
    engine: Annotated[
        Engine,
        typer.Option(
            "--engine",
            help="local: this machine, one file, resumable. ray: Ray Data over many files and machines "
            "(needs the ray extra); a failed job leaves no output and is rerun whole, and "
            "starting Ray costs seconds, so it pays off only for inputs one machine cannot finish in time.",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray cluster to join: 'auto' (this node belongs to one) or 'ray://host:10001'. Default: "
            "start a local Ray on this machine (the same command works on a laptop and on a cluster).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Ray model actors (each loads the model once). More workers score faster until the "
            "cluster's CPUs/GPUs are used up; each one holds a copy of the model in memory. Default: 2.",
        ),
    ] = None,
    cpus_per_worker: Annotated[
        float | None,
        typer.Option(
            "--cpus-per-worker",
            min=0.01,
            help="Ray CPUs reserved per worker; also its inference threads (at least 1). More threads per "
            "worker cut latency per block; more workers with fewer threads usually give more rows/s. "
            "Default: 1.",
        ),
    ] = None,
    gpus_per_worker: Annotated[
        float | None,
        typer.Option(
            "--gpus-per-worker",
            min=0.0,
            help="Ray GPUs per worker (0.5 puts two workers on a GPU); above 0 the model runs on CUDA. "
            "Default: 0.",
        ),
    ] = None,
    preserve_order: Annotated[
        bool,
        flag(
            "--preserve-order",
            help="Ray: number the part files in input order. Slower: a finished block waits for the ones "
            "before it.",
        ),
    ] = False,
) -> None:
    """Score INPUT: one output row per input row, in order, with label, score, status and error.

    Every input record gives one output row: rows with empty, null or undecodable text, the wrong number
    of fields, or over the size caps are kept in place with status=error and a reason (exit code 0, or 4
    above --max-error-rate); when most rows fail for one reason, one warning says the likely cause and fix.
    A file that cannot be parsed at all (no header, no text column, a quote never closed) exits with code
    2, and no output is published.

    Ctrl-C (SIGINT), SIGTERM or SIGHUP stops the run at the next window: exit 130, 143 or 129, one line
    saying how many rows are saved; the same command with --resume continues. A signal that arrives once
    the output is complete changes nothing: the run finishes its clean-up and exits 0. A second signal ends
    the process at once (still resumable).
    """
    from clsrun.runtime import stopping

    with stopping.cooperative() as stop:  # imports too: a signal is only noted until a safe point
        from clsrun.runtime.batching import BatchOptions
        from clsrun.runtime.input_files import ReadOptions, parse_delimiter
        from clsrun.runtime.predict import predict_file
        from clsrun.runtime.score import OutputOptions
        from clsrun.runtime.variant import Variant

        ray = None
        if engine == "local":
            from clsrun.runtime.arrow_probe import answer_pandas_probe
            from clsrun.runtime.heap import keep_freed_memory

            answer_pandas_probe()
            keep_freed_memory()
        given = {"--address": address, "--workers": workers, "--cpus-per-worker": cpus_per_worker}
        given |= {"--gpus-per-worker": gpus_per_worker, "--preserve-order": preserve_order or None}
        if engine == "local":
            ray_only(given)
        if engine == "ray":  # Ray runs its own threads and processes: a stop raises, as in other commands
            from clsrun.runtime.ray_engine.engine import RayOptions

            base = RayOptions(address, preserve_order=preserve_order, quiet=quiet)  # its defaults
            ray = replace(
                base,
                workers=base.workers if workers is None else workers,
                cpus_per_worker=base.cpus_per_worker if cpus_per_worker is None else cpus_per_worker,
                gpus_per_worker=base.gpus_per_worker if gpus_per_worker is None else gpus_per_worker,
            )
        with stopping.raising() if ray is not None else nullcontext():
            result = predict_file(
                input,
                out,
                model,
                Variant(backend, precision, device, threads, streams, compile),
                ReadOptions(text_col, id_col, delimiter=parse_delimiter(delimiter), tsv_quotes=tsv_quotes),
                BatchOptions(window, batch_tokens),
                OutputOptions(probs, resume, overwrite, max_error_rate),
                ray,
                progress=None if quiet or not sys.stderr.isatty() else ScoringBar,
                stop=stop,
            )
    for line in result.warnings():
        typer.echo(f"warning: {line}", err=True)
    if not quiet:
        typer.echo(result.summary(), err=True)


def ray_only(given: Mapping[str, object]) -> None:
    """Refuse options of the Ray engine given to the local one, which would ignore them (as Ray refuses
    --resume and --streams): a job meant for a cluster then ran on one machine, silently."""
    named = [flag for flag, value in given.items() if value is not None]
    if named:
        raise UsageError(f"{', '.join(named)}: options of --engine ray; the local engine has none of them")


class ScoringBar:
    """The tqdm bar on stderr: rows written of the input's rows, rows/s and the time left.

    The total comes from the stream (:meth:`RecordStream.progress`), asked once per window written: exact
    for Parquet; for CSV/TSV/JSONL estimated from the bytes read until the whole file is read (the
    description says "~est." until then) and corrected as the reading goes.
    """

    def __init__(self, stream: RecordStream, file: Any = None) -> None:
        from tqdm import tqdm

        from clsrun.runtime.terminal import bar_geometry

        self.stream = stream
        first = stream.progress()
        self.exact = first.exact
        out = file or sys.stderr
        self.bar = tqdm(
            total=first.total_rows,
            desc=_bar_label(first.exact),
            unit=" rows",
            unit_scale=True,
            file=out,
            smoothing=0.1,
            **bar_geometry(out),  # a terminal that reports no size still gets a drawn bar
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

    def __enter__(self) -> ScoringBar:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _bar_label(exact: bool) -> str:
    return "scoring" if exact else "scoring (~est.)"
