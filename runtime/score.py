"""Scoring a file: a bounded three-stage pipeline, crash-safe parts, an atomic output and its manifest.

    reader thread:  read chunk -> regroup into windows -> normalise, tokenize, sort, plan -> pad batches
                        | queue of at most ``max(PREFETCH_BATCHES, streams)`` padded batches
    inference:      ``classifier.streams`` threads (the calling thread and streams - 1 more), each taking
                    the next batch and running it through the model (onnxruntime releases the GIL); the
                    stream that finishes a window's last batch passes the window on
                        | queue of at most ``PENDING_WINDOWS`` finished windows
    writer thread:  windows back in input order -> softmax, output table -> fsynced part + journal line
                    (``partial.py``)

then the parts are assembled into the output under a temporary name and renamed, and the manifest is
written. The queues are what keep memory flat: the reader can never be more than a couple of batches
ahead of the model, and at most ``streams + PENDING_WINDOWS`` windows are between being read and being
written (the reader waits for a slot before it starts a window; the writer frees it), so the windows
that finish before an earlier one, and wait for it in the writer, are bounded too.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from clsrun import __version__
from clsrun.runtime.batching import windows
from clsrun.runtime.classifier import Classifier, Prepared
from clsrun.runtime.errors import InternalError, UsageError
from clsrun.runtime.files import atomic_write_text
from clsrun.runtime.partial import PartialOutput, input_fingerprint
from clsrun.runtime.readers import ReadOptions, RecordStream, open_records
from clsrun.runtime.writers import output_format, write_atomically

PREFETCH_BATCHES = 2  # padded batches waiting for the model: enough to hide reading and tokenizing
PENDING_WINDOWS = 2  # finished windows waiting for the writer


@dataclass(frozen=True)
class OutputOptions:
    """What the output holds and whether an interrupted run is continued (``clsrun predict`` options)."""

    probs: bool = False  # --probs: one prob_<label> column per label
    resume: bool = False  # --resume: continue an interrupted run of the same input, model and options
    overwrite: bool = (
        False  # --overwrite: replace an existing output, discard an interrupted run's checkpoint
    )


class Progress(Protocol):
    """Told how scoring advances (a progress bar); passed to :func:`score_file` as an argument."""

    def resumed(self, rows: int) -> None:
        """Once, before scoring: rows a ``--resume`` run found already done (not part of this run's rate)."""
        ...

    def update(self, rows: int) -> None:
        """``rows`` more rows written."""
        ...


@dataclass
class RunResult:
    """What a scoring run did, on either engine; ``manifest`` is what it wrote beside its output."""

    output: Path | str
    manifest: dict[str, Any]

    @property
    def rows(self) -> int:
        return int(self.manifest["rows_read"])


@dataclass
class ScoreResult(RunResult):
    """What a local run did; ``manifest`` is what was written to ``OUTPUT.manifest.json``."""

    output: Path
    manifest_path: Path

    def summary(self) -> str:
        """The one line ``clsrun predict`` prints when done."""
        m = self.manifest
        return (
            f"scored {m['rows_read']} rows ({m['ok']} ok, {m['error']} error, {m['truncated']} truncated) -> "
            f"{self.output} in {m['wall_s']:.1f}s, {m['rows_per_s']:.0f} rows/s "
            f"({m['backend']} {m['precision']} {m['device']}, {m['threads']} threads, {m['streams']} streams)"
        )


def default_output(input_path: Path) -> Path:
    """``INPUT_STEM.scores.csv`` next to the input (``reviews.csv.gz`` -> ``reviews.scores.csv``)."""
    name = input_path.name
    for suffix in (".gz", ".csv", ".tsv", ".jsonl", ".json", ".parquet"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return input_path.with_name(f"{name}.scores.csv")


def manifest_path(output: Path) -> Path:
    return output.with_name(output.name + ".manifest.json")


def open_input(path: Path | str, read: ReadOptions = ReadOptions()) -> RecordStream:
    """Open and check the input (format, columns, first chunk): call it before loading the model."""
    return open_records(path, read)


class _Countdown:
    """Batches of one window not yet scored; shared by the streams that score them."""

    def __init__(self, n: int) -> None:
        self.left = n
        self._lock = threading.Lock()

    def finish_one(self) -> bool:
        """Count one batch as scored; True for the window's last one."""
        with self._lock:
            self.left -= 1
            return self.left == 0


class _Pipeline:
    """The threads of one run; any stage's exception stops the others and is re-raised."""

    def __init__(
        self, classifier: Classifier, partial: PartialOutput, probs: bool, progress: Progress | None
    ) -> None:
        self.clf = classifier
        self.partial = partial
        self.probs = probs
        self.progress = progress
        self.streams = max(1, classifier.streams)
        self.batches: queue.Queue[Any] = queue.Queue(maxsize=max(PREFETCH_BATCHES, self.streams))
        self.finished: queue.Queue[Any] = queue.Queue(maxsize=PENDING_WINDOWS)
        self.window_slots = threading.Semaphore(self.streams + PENDING_WINDOWS)
        self.stop = threading.Event()
        self.failure: BaseException | None = None

    def _put(self, q: queue.Queue[Any], item: Any) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue[Any]) -> Any:
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as e:
                self.failure = self.failure or e
                self.stop.set()

        return run

    def _slot(self) -> bool:
        """Wait for room for one more window in flight; False when the run stops."""
        while not self.stop.is_set():
            if self.window_slots.acquire(timeout=0.1):
                return True
        return False

    def _read(self, stream: RecordStream, skip: int) -> None:
        for window in windows(stream.chunks(skip), self.clf.batching.window):
            if not self._slot():
                return
            prepared = self.clf.prepare(window)
            countdown = _Countdown(max(1, len(prepared.batches)))
            if not prepared.batches and not self._put(self.batches, (prepared, None, countdown)):
                return
            for batch in prepared.batches:
                if not self._put(self.batches, (prepared, (batch, self.clf.pad(prepared, batch)), countdown)):
                    return
        self._put(self.batches, None)

    def _infer(self) -> None:
        """One stream: score batches until the reader's end mark, which it leaves for the other streams."""
        while True:
            item = self._get(self.batches)
            if item is None:
                self._put(self.batches, None)
                return
            prepared, work, countdown = item
            if work is not None:
                batch, inputs = work
                prepared.logits[batch] = self.clf.run(inputs)  # (B, C); streams write disjoint rows
            if countdown.finish_one() and not self._put(self.finished, prepared):
                return

    def _write(self, skip: int) -> None:
        """Write windows in input order: with several streams a later window can finish first."""
        expected = skip  # the first window starts where the reader started
        held: dict[int, Prepared] = {}
        while True:
            prepared: Prepared | None = self._get(self.finished)
            if prepared is None:
                if held and not self.stop.is_set():
                    raise InternalError(f"windows at rows {sorted(held)} finished, row {expected} never did")
                return
            held[prepared.start] = prepared
            while expected in held:
                ready = held.pop(expected)
                expected += len(ready)
                self._write_window(ready)
                self.window_slots.release()

    def _write_window(self, prepared: Prepared) -> None:
        table = self.clf.finish(prepared, with_probs=self.probs)
        n_error = sum(1 for e in prepared.errors if e)
        self.partial.add(table, prepared.start, len(prepared) - n_error, n_error, prepared.truncated)
        if self.progress is not None:
            self.progress.update(len(prepared))

    def run(self, stream: RecordStream, skip: int) -> None:
        reader = threading.Thread(target=self._guard(lambda: self._read(stream, skip)), name="clsrun-read")
        writer = threading.Thread(target=self._guard(lambda: self._write(skip)), name="clsrun-write")
        others = [
            threading.Thread(target=self._guard(self._infer), name=f"clsrun-infer-{i}")
            for i in range(1, self.streams)
        ]
        for thread in (reader, writer, *others):
            thread.start()
        try:
            self._guard(self._infer)()  # stream 0 runs in the calling thread
            for thread in others:
                thread.join()
            self._put(self.finished, None)  # every stream is done: nothing more for the writer
        except BaseException:  # KeyboardInterrupt in the main thread: stop the others, then re-raise
            self.stop.set()
            raise
        finally:
            for thread in others:
                thread.join()
            writer.join()
            if self.failure is not None:
                self.stop.set()
            reader.join()
        if self.failure is not None:
            raise self.failure


def _finished_run(out: Path, state: dict[str, Any]) -> ScoreResult | None:
    """The result of a completed run of the same job (output and matching manifest present), else None."""
    target = manifest_path(out)
    if not (out.is_file() and target.is_file()):
        return None
    try:
        manifest = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = all(
        manifest.get(k) == state[k] for k in ("input_fingerprint", "bundle_digest", "options", "variant")
    )
    return ScoreResult(out, manifest, target) if same else None


def score_file(
    input: Path | str | RecordStream,
    output: Path | str | None,
    classifier: Classifier,
    read: ReadOptions = ReadOptions(),
    options: OutputOptions = OutputOptions(),
    progress: Progress | None = None,
) -> ScoreResult:
    """Score every row of ``input`` into ``output`` (default ``INPUT_STEM.scores.csv``); the local engine.

    ``input`` may be a stream already opened with :func:`open_input` with the same ``read`` options (the
    CLI opens it before loading the model, so a bad file fails fast). Batching is the classifier's.
    Per-row problems become ``status=error`` rows; the output appears under its final name only when
    complete, with ``OUTPUT.manifest.json`` beside it. With ``options.resume``, an interrupted run
    continues from its last checkpoint, and a run that already completed (same input, model and options)
    returns its manifest without scoring again.
    """
    stream = input if isinstance(input, RecordStream) else open_input(input, read)
    out = Path(output) if output is not None else default_output(stream.path)
    output_format(out)  # refuse an unknown extension before any work
    if out.resolve() == stream.path.resolve():
        raise UsageError(f"--out {out}: is the input file itself")
    described = classifier.describe()
    state = _run_state(stream.path, classifier, described, read, options)
    if options.resume and not PartialOutput.folder_for(out).exists():
        finished = _finished_run(out, state)
        if finished is not None:  # a retried job whose run already completed: nothing left to do
            return finished
    started = time.perf_counter()
    partial = PartialOutput.open(out, state, options.resume, restart=options.overwrite)
    resumed_rows = partial.rows_done
    if resumed_rows and progress is not None:
        progress.resumed(resumed_rows)
    _Pipeline(classifier, partial, options.probs, progress).run(stream, resumed_rows)
    schema = classifier.output_schema(options.probs, read.id_col is not None)
    write_atomically(out, schema, partial.tables(), tmp_dir=partial.folder)
    wall = time.perf_counter() - started
    manifest = _manifest(stream.path, out, state, described, partial, resumed_rows, wall)
    target = manifest_path(out)
    atomic_write_text(target, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", partial.folder)
    partial.remove()
    return ScoreResult(out, manifest, target)


def _run_state(
    path: Path, classifier: Classifier, described: dict[str, Any], read: ReadOptions, output: OutputOptions
) -> dict[str, Any]:
    """What the output depends on: a ``--resume`` whose state differs is refused (``partial.py``)."""
    batching = classifier.batching
    return {
        "input": str(path.resolve()),
        "input_fingerprint": input_fingerprint(path),
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
        "input": str(path),
        "input_fingerprint": state["input_fingerprint"],
        "output": str(out),
        "rows_read": rows,
        "ok": sum(p.ok for p in partial.parts),
        "error": sum(p.error for p in partial.parts),
        "truncated": sum(p.truncated for p in partial.parts),
        "resumed_from_row": resumed_rows,
        "bundle": described["bundle"],
        "bundle_digest": described["bundle_digest"],
        "backend": described["backend"],
        "precision": described["precision"],
        "device": described["device"],
        "threads": described["threads"],
        "streams": described["streams"],
        "variant_file": described["file"],
        "providers": described["providers"],
        "options": state["options"],
        "variant": state["variant"],
        "wall_s": round(wall, 3),
        "rows_per_s": round((rows - resumed_rows) / wall, 1) if wall > 0 else 0.0,
    }
