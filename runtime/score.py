"""Scoring a file on this machine: claim the output, run the pipeline, assemble, publish, manifest.

    claim.py     the output checked and locked (one writer per output) before the model loads
    partial.py   the checkpoint: a new one, or with ``--resume`` the interrupted run's
    pipeline.py  reader -> inference streams -> writer threads; each finished window a durable part
    here         the parts assembled into the output under a temporary name and renamed, then the
                 manifest; the checkpoint removed; the lock released

The output appears under its final name only when complete. A stop request (SIGINT/SIGTERM through
``stopping.cooperative``) is honoured at the pipeline's safe points and between the parts of the final
assembly, raising :class:`~clsrun.runtime.errors.Interrupted` with the rows saved: the checkpoint is
always resumable and no temporary file is left. Once the output is renamed into place the run is done:
the manifest, the clean-up and the lock release complete whatever arrives, and the run returns normally.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from clsrun import __version__
from clsrun.runtime.bundle import DEFAULT_MODEL_ABOUT, default_model_path
from clsrun.runtime.claim import OutputClaim, default_output, manifest_path
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.errors import (
    InputError,
    Interrupted,
    OutputExistsError,
    StorageError,
    UsageError,
    needs_room,
    storage_problem,
)
from clsrun.runtime.files import atomic_write_text
from clsrun.runtime.fingerprint import written_to
from clsrun.runtime.input_files import ReadOptions
from clsrun.runtime.partial import PartialOutput, describe_changes
from clsrun.runtime.pipeline import Pipeline, Progress
from clsrun.runtime.readers import RecordStream, open_records
from clsrun.runtime.row_errors import check_error_rate, diagnose
from clsrun.runtime.stopping import StopRequest
from clsrun.runtime.writers import TableFile, output_format, warn_formula_labels, write_atomically

__all__ = [
    "OutputOptions",
    "Progress",
    "RunResult",
    "ScoreResult",
    "default_output",
    "interrupted",
    "manifest_path",
    "open_input",
    "score_file",
]


@dataclass(frozen=True)
class OutputOptions:
    """What the output holds, what may be replaced, and when the run fails (``clsrun predict`` options)."""

    probs: bool = False  # --probs: one prob_<label> column per label
    resume: bool = False  # --resume: continue an interrupted run of the same input, model and options
    overwrite: bool = (
        False  # --overwrite: replace an existing output, discard an interrupted run's checkpoint
    )
    max_error_rate: float | None = (
        None  # --max-error-rate: above this share of error rows, exit 4 (None: no limit)
    )

    def __post_init__(self) -> None:
        if self.max_error_rate is not None and not 0.0 <= self.max_error_rate <= 1.0:
            raise UsageError(f"--max-error-rate {self.max_error_rate}: must be a fraction between 0 and 1")


@dataclass
class RunResult:
    """What a scoring run did, on either engine; ``manifest`` is what it wrote beside its output."""

    output: Path | str
    manifest: dict[str, Any]

    @property
    def rows(self) -> int:
        return int(self.manifest["rows_read"])

    def warnings(self) -> list[str]:
        """Lines worth a user's attention although the run succeeded: most rows failed for one reason."""
        cause = diagnose(self.manifest)
        return [cause] if cause else []


@dataclass
class ScoreResult(RunResult):
    """What a local run did; ``manifest`` is what was written to ``OUTPUT.manifest.json``."""

    output: Path
    manifest_path: Path
    already_complete: bool = False  # --resume found this job's output finished: nothing was scored

    def summary(self) -> str:
        """The one line ``clsrun predict`` prints when done: this run's rows and rate."""
        m = self.manifest
        if self.already_complete:
            return (
                f"{self.output}: already complete ({m['rows_read']:,} rows, {m['ok']:,} ok, {m['error']:,} "
                "error); nothing to do (--overwrite scores it again)"
            )
        counts = f"{m['ok']:,} ok, {m['error']:,} error, {m['truncated']:,} truncated"
        resumed = int(m.get("resumed_from_row", 0))
        rows = (
            f"{m['rows_read'] - resumed:,} rows, continuing from row {resumed:,} ({m['rows_read']:,} in all: "
            f"{counts})"
            if resumed
            else f"{m['rows_read']:,} rows ({counts})"
        )
        threads = f"{m['threads']} thread{'s' if m['threads'] != 1 else ''}"
        streams = f"{m['streams']} stream{'s' if m['streams'] != 1 else ''}"
        model = Path(m["bundle"])
        about = DEFAULT_MODEL_ABOUT if model == default_model_path().absolute() else f"model {model}"
        return (
            f"scored {rows} -> {self.output} in {m['wall_s']:.1f}s, {m['rows_per_s']:,.0f} rows/s "
            f"({m['backend']} {m['precision']} {m['device']}, {threads}, {streams}; {about})"
        )


def open_input(path: Path | str, read: ReadOptions = ReadOptions()) -> RecordStream:
    """Open and check the input (format, columns, first chunk): call it before loading the model."""
    return open_records(path, read)


def score_file(
    input: Path | str | RecordStream,
    output: Path | str | OutputClaim | None,
    classifier: Classifier,
    read: ReadOptions = ReadOptions(),
    options: OutputOptions = OutputOptions(),
    progress: Progress | None = None,
    stop: StopRequest | None = None,
) -> ScoreResult:
    """Score every row of ``input`` into ``output`` (default ``INPUT_STEM.scores.csv``); the local engine.

    ``input`` may be a stream already opened with :func:`open_input` with the same ``read`` options (the
    CLI opens it before loading the model, so a bad file fails fast), and ``output`` an output already
    claimed with ``OutputClaim.take`` (the CLI claims it before loading the model, too). Batching is the
    classifier's. Per-row problems become ``status=error`` rows; the output appears under its final name
    only when complete, with ``OUTPUT.manifest.json`` beside it. The output is locked for the run (a
    second run on it is refused); an existing output or checkpoint is replaced only with
    ``options.overwrite``. With ``options.resume``, an interrupted run continues from its last
    checkpoint, and a run that already completed (same input, model and options) returns its manifest
    without scoring again. ``stop``: set it (from a signal handler or another thread) to stop at the
    next safe point with :class:`Interrupted`.
    """
    stream = input if isinstance(input, RecordStream) else open_input(input, read)
    if isinstance(output, OutputClaim):
        return _score_claimed(stream, output, classifier, read, options, progress, stop or StopRequest())
    bundle = classifier.bundle.root
    with OutputClaim.take(stream.path, output, options.resume, options.overwrite, bundle) as claim:
        return _score_claimed(stream, claim, classifier, read, options, progress, stop or StopRequest())


def _score_claimed(
    stream: RecordStream,
    claim: OutputClaim,
    classifier: Classifier,
    read: ReadOptions,
    options: OutputOptions,
    progress: Progress | None,
    stop: StopRequest,
) -> ScoreResult:
    """:func:`score_file` once its output is claimed."""
    out = claim.path
    described = classifier.describe()
    state = _run_state(stream, classifier, described, read, options)
    finished = _finished_run(out, state, options)
    if finished is not None:  # a retried job whose run already completed: nothing left to do
        return finished
    if stop.is_set():
        raise interrupted(stop)
    warn_formula_labels(classifier.labels, output_format(out))
    started = time.perf_counter()
    _require_held(claim)  # before the checkpoint is touched: --overwrite would clear another run's
    partial = _checkpoint(out, state, options, progress)
    resumed_rows = partial.rows_done
    schema = classifier.output_schema(options.probs, read.id_col is not None)
    # A run from the first row writes its output as it goes; a resumed one assembles it from the parts.
    streamed: TableFile | None = None
    try:
        if not resumed_rows:  # opening it writes (a header): a full disk is already said here
            streamed = TableFile(out, schema, partial.folder)
        pipeline = Pipeline(
            classifier, partial, options.probs, progress, stop, None if streamed is None else streamed.write
        )
        _run_unchanged(pipeline, stream, resumed_rows, partial)
        if pipeline.stopped:
            raise interrupted(stop, partial, pipeline.stuck)
        _require_held(claim, partial)
        claim.refuse_manifest_taken()
        partial.mark_publishing()
        manifest_path(out).unlink(missing_ok=True)  # a crash from here on leaves no manifest of another job
        if streamed is None:
            write_atomically(out, schema, _assembled(partial, stop), tmp_dir=partial.folder)
        elif stop.is_set():  # between the last window and publishing: the parts hold every row
            raise interrupted(stop, partial)
        else:
            streamed.publish()
    except OSError as e:
        raise _write_failure(e, claim, partial) from e
    finally:
        if streamed is not None:
            streamed.discard()
    # Published: from here on the run completes, whatever signal arrives (it is only noted).
    wall = time.perf_counter() - started
    manifest = {
        **_manifest(stream.path, out, state, described, partial, resumed_rows, wall),
        "max_error_rate": options.max_error_rate,
    }
    target = _write_manifest(out, manifest, partial)
    partial.remove()
    check_error_rate(manifest, options.max_error_rate)
    return ScoreResult(out, manifest, target)


def _checkpoint(
    out: Path, state: dict[str, Any], options: OutputOptions, progress: Progress | None
) -> PartialOutput:
    """The run's checkpoint: new, or the one a resumed run continues (said, and checked that the output
    path holds nothing this job may not replace)."""
    partial = PartialOutput.open(out, state, options.resume, restart=options.overwrite)
    if partial.rows_done:
        _refuse_unasked_replace(out, partial)
        if progress is not None:
            progress.resumed(partial.rows_done)
    return partial


def _refuse_unasked_replace(out: Path, partial: PartialOutput) -> None:
    """Refuse to resume a job whose output path, empty when it started without --overwrite, now holds a
    file: put there since (by a person or another program), it is not this job's to replace. ``--resume``
    alone replaced it; whether it was protected depended on whether the kill came before any window was
    checkpointed. Checkpoints written before this was recorded resume as before, and so does a run killed
    once it began publishing (the file there is then its own)."""
    state = partial.state
    if out.exists() and state.get("replaces", True) is False and not state.get("publishing"):
        raise OutputExistsError(
            f"--out {out}: a file appeared there after this job started (none was there, and --overwrite was "
            "not given); move it away and --resume, or add --overwrite to score again from the first row"
        )


def _write_manifest(out: Path, manifest: dict[str, Any], partial: PartialOutput) -> Path:
    """Write ``OUT.manifest.json`` beside the published ``out``; returns its path.

    A published output has its manifest beside it: when the manifest cannot be written (a full disk), the
    output is taken back, so the run ends as one stopped before publishing (every row checkpointed;
    ``--resume`` publishes both), not as a complete file under a failed exit that the same command then
    refuses for its checkpoint."""
    target = manifest_path(out)
    try:
        atomic_write_text(target, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", partial.folder)
    except OSError as e:
        out.unlink(missing_ok=True)
        raise _storage_failure(e, out, partial) from e
    return target


def _write_failure(error: OSError, claim: OutputClaim, partial: PartialOutput) -> OSError | StorageError:
    """What a failed write while scoring means for the run (:func:`_storage_failure`); an error that is no
    known storage problem may be a write into a folder that went since the run locked it: that is said."""
    failure = _storage_failure(error, claim.path, partial)
    if failure is error:
        _require_held(claim, partial)
    return failure


def _require_held(claim: OutputClaim, partial: PartialOutput | None = None) -> None:
    """Stop the run (exit 1) when its output's folder was moved or replaced since it was locked; the
    checkpoint is left as it is (it may be another run's now)."""
    lost = claim.lost()
    if lost is None:
        return
    if partial is None or not partial.rows_done:
        where = ""
    elif partial.folder.is_dir():
        where = f"; {partial.rows_done:,} rows are saved in {partial.folder}"
    else:
        where = "; the checkpoint went with the folder"
    failure = StorageError(f"{lost}{where}; run the same command again (with --resume to keep saved rows)")
    failure.exit_code = 1
    raise failure


def _assembled(partial: PartialOutput, stop: StopRequest) -> Iterator[pa.Table]:
    """The parts in order for the final file, looking at the stop request before each one."""
    for table in partial.tables():
        if stop.is_set():
            raise interrupted(stop, partial)
        yield table


def interrupted(
    stop: StopRequest, partial: PartialOutput | None = None, stuck: list[str] | None = None
) -> Interrupted:
    """The error a stopped run ends with, in one line: what is saved, and how to go on. ``partial``: the
    checkpoint (None before scoring started); one without rows is removed, so nothing is left behind."""
    signum = stop.signum or signal.SIGINT
    rows = 0 if partial is None else partial.rows_done
    if partial is None:
        said = f"interrupted by {stop.name} before scoring started; nothing new was saved"
    elif not rows:
        partial.remove()  # nothing to resume: leave nothing behind
        said = f"interrupted by {stop.name} before any row was saved; nothing was written"
    else:
        said = (
            f"interrupted by {stop.name}: {rows:,} rows are saved in {partial.folder}; run the same command "
            f"with --resume to continue from row {rows:,}"
        )
    if stuck:
        said += f" (the {', '.join(stuck)} thread(s) did not stop in time and were abandoned)"
    return Interrupted(signum, said)


def _storage_failure(error: OSError, out: Path, partial: PartialOutput) -> OSError | StorageError:
    """A full disk or a refused write while scoring, said as what it means for this run: the output it was
    writing, how many rows the checkpoint holds and how to go on (a checkpoint without rows is removed, as
    :func:`interrupted` does). Other ``OSError``s stay as they are.

    The file system's own error names no file when a write to an open file fails, and the one file it
    would name is a part inside the checkpoint folder, not what the user asked for.
    """
    known = storage_problem(error)
    if known is None and isinstance(error, FileNotFoundError) and _checkpoint_gone(error, partial):
        # its folder renamed or removed under the run (the checkpoint with it): nothing here to resume
        failure = StorageError(
            f"{out}: its folder (or its checkpoint folder) was moved or removed while scoring into it "
            f"({error.strerror}: {error.filename}); nothing was published: run it again"
        )
        failure.exit_code = 1
        return failure
    if known is None:
        return error
    reason, exit_code = known
    first = "make room" if needs_room(error) else "once it can be written again"
    rows = partial.rows_done
    if rows:
        fix = (
            f"{rows:,} rows are saved in {partial.folder}; {first}, then run the same command with --resume "
            f"to continue from row {rows:,}"
        )
    else:
        partial.remove()  # nothing to resume: leave nothing behind
        fix = f"no row was saved; {first}, run it again"
    failure = StorageError(f"{out}: {reason} while scoring into it; {fix}")
    failure.exit_code = exit_code
    return failure


def _checkpoint_gone(error: FileNotFoundError, partial: PartialOutput) -> bool:
    """Whether a file the run expected is missing because its checkpoint folder went (moved, renamed or
    removed, perhaps made again by a later write): the folder is not there, or the file was in it."""
    if not partial.folder.is_dir():
        return True
    named = error.filename  # the file's path as opened: absolute where the folder is relative, or the reverse
    return isinstance(named, str) and os.path.abspath(os.path.dirname(named)) == os.path.abspath(
        partial.folder
    )


def _finished_run(out: Path, state: dict[str, Any], options: OutputOptions) -> ScoreResult | None:
    """For ``--resume`` without checkpointed rows: the result of a completed run of the same job (output
    and matching manifest present), judged again against ``options.max_error_rate`` (exit 4 is not lost on
    a retry); None when there is no output to resume. Another job's output needs ``--overwrite``. A
    checkpoint without rows is what a run killed while removing it after publishing leaves: it goes."""
    if not options.resume or PartialOutput.checkpointed_rows(out):
        return None
    target = manifest_path(out)
    manifest = _read_manifest(out)
    same = manifest is not None and all(manifest.get(k) == state[k] for k in _JOB_KEYS)
    if manifest is None or not same:
        if out.exists() and not options.overwrite:
            raise OutputExistsError(_other_output(out, state))
        return None
    changed = _output_changed(out, manifest)
    if changed is not None and options.overwrite:
        return None
    if changed is not None:
        raise OutputExistsError(f"--out {out}: {changed}; add --overwrite to score it again")
    check_error_rate(manifest, options.max_error_rate)
    PartialOutput.discard_leftover(out)
    return ScoreResult(out, manifest, target, already_complete=True)


def _output_changed(out: Path, manifest: dict[str, Any]) -> str | None:
    """How the output found beside its manifest differs from what the manifest says was published: copied
    from another job's (``output`` names another file), or cut short, edited or replaced (its size, then
    its modification time: an edit that keeps the size, a label changed), else None. Manifests written
    before ``output_bytes`` / ``output_mtime_ns`` were recorded are checked by what they hold."""
    named = manifest.get("output")  # as given then, maybe relative to another folder: the names must agree
    if named is not None and Path(named).name != out.name:
        return f"its manifest was written for another output ({named})"
    found = out.stat()
    recorded = manifest.get("output_bytes")
    if recorded is not None and found.st_size != recorded:
        return f"holds {found.st_size:,} bytes where its run published {recorded:,}: it was changed since"
    mtime = manifest.get("output_mtime_ns")
    if mtime is not None and found.st_mtime_ns != mtime:
        return "was modified since its run published it (its modification time is not the one recorded)"
    return None


def _run_unchanged(
    pipeline: Pipeline, stream: RecordStream, resumed_rows: int, partial: PartialOutput
) -> None:
    """Run ``pipeline`` over ``stream``, then make sure the file was not written to meanwhile. A file that
    fails to parse halfway is checked too: a write under the reader is the likelier cause, and its line
    (with the checkpoint discarded) tells the user what to do, where the parse error would mislead. Either
    way a file that cannot be read to its end leaves no checkpoint."""
    try:
        pipeline.run(stream, resumed_rows)
    except InputError:
        _require_unchanged(stream.path, stream.fingerprint, partial)
        # The checkpoint is of no use: the same file stops at the same place again, and --resume refuses a
        # corrected one (another fingerprint); kept, it would only make the corrected run ask for --overwrite.
        partial.remove()
        raise
    if not pipeline.stopped:
        _require_unchanged(stream.path, stream.fingerprint, partial)


def _require_unchanged(path: Path, fingerprint: dict[str, Any], partial: PartialOutput) -> None:
    """Refuse to publish the rows of an input that was written to while it was read: they may be a mix of
    its old and new contents, row counts included. The checkpoint holds such rows too, so it goes."""
    head = written_to(path, fingerprint, "scored")
    if head is not None:
        partial.remove()
        raise InputError(
            f"{head}; nothing was published and the saved rows were discarded: score it again once it is complete"
        )


_JOB_KEYS = ("input_fingerprint", "bundle_digest", "options", "variant")  # what makes two runs the same job


def _read_manifest(out: Path) -> dict[str, Any] | None:
    target = manifest_path(out)
    if not (out.is_file() and target.is_file()):
        return None
    try:
        manifest = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _other_output(out: Path, state: dict[str, Any]) -> str:
    """Why ``--resume`` will not keep or replace the output found at ``out``."""
    manifest = _read_manifest(out)
    if manifest is None:
        why = f"and has no {manifest_path(out).name} (not a clsrun output, or an unfinished one)"
    else:
        old = {k: manifest.get(k) for k in ("input", *_JOB_KEYS)}
        new = {k: state.get(k) for k in ("input", *_JOB_KEYS)}
        why = f"from another job ({'; '.join(describe_changes(old, new)) or 'a different run'})"
    return f"--out {out}: exists, {why}; add --overwrite to replace it"


def _run_state(
    stream: RecordStream,
    classifier: Classifier,
    described: dict[str, Any],
    read: ReadOptions,
    output: OutputOptions,
) -> dict[str, Any]:
    """What the output depends on: a ``--resume`` whose state differs is refused (``partial.py``)."""
    batching = classifier.batching
    return {
        "input": str(stream.path.resolve()),
        "input_fingerprint": stream.fingerprint,  # taken when the stream opened, before any row was read
        "bundle_digest": classifier.bundle.digest,
        "variant": {k: described[k] for k in ("backend", "precision", "device", "file")},
        "options": {
            "text_col": read.text_col,
            "id_col": read.id_col,
            "probs": output.probs,
            "window": batching.window,
            "sort": batching.sort,
            "batch_tokens": batching.batch_tokens,
            "max_batch_rows": batching.max_batch_rows,
            "max_text_bytes": read.max_text_bytes,
            "delimiter": read.delimiter,
            "tsv_quotes": read.tsv_quotes,
        },
    }


def _manifest(
    path: Path,
    out: Path,
    state: dict[str, Any],
    described: dict[str, Any],
    partial: PartialOutput,
    resumed_rows: int,
    wall: float,
) -> dict[str, Any]:
    """``OUTPUT.manifest.json``: counts, what ran, the options, and the speed of this run."""
    rows = partial.rows_done
    return {
        "clsrun_version": __version__,
        "input": state["input"],  # resolved: a later --resume from another folder compares the same path
        "input_fingerprint": state["input_fingerprint"],
        # absolute, like input and bundle: not relative to the caller's folder
        "output": os.path.abspath(out),
        # a --resume of the finished job checks the output is still this (size and modification time)
        "output_bytes": (published := out.stat()).st_size,
        "output_mtime_ns": published.st_mtime_ns,
        "rows_read": rows,
        "ok": sum(p.ok for p in partial.parts),
        "error": sum(p.error for p in partial.parts),
        "truncated": sum(p.truncated for p in partial.parts),
        "error_reasons": partial.reasons(),  # error rows per reason (row_errors.reason_kind), most first
        "resumed_from_row": resumed_rows,
        "bundle": os.path.abspath(described["bundle"]),
        "bundle_digest": described["bundle_digest"],
        "backend": described["backend"],
        "precision": described["precision"],
        "device": described["device"],
        "threads": described["threads"],
        "streams": described["streams"],
        "variant_file": described["file"],
        "providers": described["providers"],
        "choice_reason": described["reason"],  # why this variant ran (auto: the measured speeds)
        "options": state["options"],
        "variant": state["variant"],
        "wall_s": round(wall, 3),
        "rows_per_s": round((rows - resumed_rows) / wall, 1) if wall > 0 else 0.0,
    }
