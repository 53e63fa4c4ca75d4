"""``clsrun predict`` as one library call: check the input, load the model, score on the chosen engine.

:func:`predict_file` is what the command calls. With ``ray=None`` it runs the local engine
(``score.score_file``: one file, resumable); with :class:`~clsrun.runtime.ray_engine.engine.RayOptions`
it runs on Ray Data (``ray_engine.engine.score_with_ray``: files, folders, globs, URIs). Either result has
a ``summary()`` line and the manifest that was written.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from clsrun.runtime.batching import BatchOptions
from clsrun.runtime.bundle import SPEC_FILE, default_model_path
from clsrun.runtime.claim import OutputClaim
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.errors import UsageError
from clsrun.runtime.input_files import ReadOptions, require_file
from clsrun.runtime.readers import RecordStream
from clsrun.runtime.score import (
    OutputOptions,
    Progress,
    ScoreResult,
    interrupted,
    open_input,
    score_file,
)
from clsrun.runtime.stopping import StopRequest
from clsrun.runtime.unreadable import SAMPLE_ROWS, warn_unreadable
from clsrun.runtime.variant import Variant

if TYPE_CHECKING:
    from clsrun.runtime.ray_engine.engine import RayOptions, RayScoreResult

# Makes the progress reporter once the input is open (a bar's total comes from the stream); used as a
# context manager around the run, so the reporter is closed however the run ends.
ProgressFactory = Callable[[RecordStream], AbstractContextManager[Progress]]


def predict_file(
    input: str | Path,
    out: str | Path | None = None,
    model: str | Path | None = None,
    variant: Variant = Variant(),
    read: ReadOptions = ReadOptions(),
    batching: BatchOptions = BatchOptions(),
    output: OutputOptions = OutputOptions(),
    ray: RayOptions | None = None,
    progress: ProgressFactory | None = None,
    stop: StopRequest | None = None,
) -> ScoreResult | RayScoreResult:
    """Score every row of ``input`` with ``model`` (None: the default model) into ``out``.

    Local engine: ``out`` defaults to ``INPUT_STEM.scores.csv`` next to the input; a file that cannot be
    read at all, and an output that cannot be written as asked (locked by another run, or existing without
    ``output.overwrite``), fail before the model loads. ``stop`` (set by a signal through
    ``stopping.cooperative``) is looked at before and after the model loads and at every safe point of the
    run, which then ends with :class:`Interrupted`. Ray (``ray`` given): ``out`` is a folder and required;
    ``progress`` and ``stop`` are not used (Ray shows its own progress unless ``ray.quiet``).
    """
    if ray is not None:
        from clsrun.runtime.ray_engine.engine import score_with_ray

        if out is None:
            raise UsageError("--engine ray needs --out FOLDER (e.g. --out scores.parquet)")
        return score_with_ray(str(input), out, model, variant, read, batching, output, ray)
    _check_local_paths(Path(input), out)
    stop = stop or StopRequest()
    # Whole-file problems: exit 2 before the model loads. Closed here if the run ends before its reader
    # thread (which closes it) starts: the output is locked, or the model cannot load.
    with (
        open_input(input, read) as stream,
        OutputClaim.take(
            stream.path, out, output.resume, output.overwrite, Path(model or default_model_path())
        ) as claim,
    ):
        _honour(stop)
        classifier = Classifier.load(model, variant, batching)
        warn_unreadable(stream.path, model, classifier, stream.first_texts(SAMPLE_ROWS))
        _honour(stop)
        with progress(stream) if progress is not None else nullcontext(None) as reporter:
            return score_file(stream, claim, classifier, read, output, reporter, stop)


def _honour(stop: StopRequest) -> None:
    """Before scoring starts nothing is saved: a stop ends the run at once."""
    if stop.is_set():
        raise interrupted(stop)


def _check_local_paths(input: Path, out: str | Path | None) -> None:
    """The local engine scores one file into one file (INPUT and --out may be folders only on Ray)."""
    if input.is_dir() and (input / SPEC_FILE).is_file():  # `clsrun predict BUNDLE ...`: the model first
        raise UsageError(
            f"{input}: is a model bundle, not a file to score; give it with --model "
            f"(clsrun predict FILE --model {input})"
        )
    if input.is_dir():
        raise UsageError(
            f"{input}: is a folder; the local engine scores one file (--engine ray reads folders)"
        )
    require_file(input)
    if out is not None and str(out).strip() and Path(out).is_dir():  # an empty --out is said so by claim.py
        raise UsageError(f"--out {out}: is a folder; the local engine writes one file")
