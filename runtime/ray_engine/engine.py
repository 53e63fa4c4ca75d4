"""Scale-out scoring on Ray Data: ``clsrun predict INPUT --engine ray``; this module is the driver.

One row's path (every stage runs the local engine's code; ``stages.py`` places it on Ray):

    driver      ``inputs.resolve_inputs``: folder, glob or list, any pyarrow filesystem -> sorted
                files; the bundle is loaded and verified here, so a bad one fails before anything runs
    read task   ``stages.FileReader``: the local reader and its windows, one Ray row per window
    actor       ``stages.ScoreActor``: ``Classifier`` loaded once per actor, window by window
    write task  ``stages.make_datasink``: one part file per task, in a staging folder next to OUT
    driver      check every input row came back exactly once, write ``_manifest.json``, rename to OUT

Ids: the ``--id-col`` value; else, for a single input file, the 0-based row number (as the local engine);
for several files ``"<file>:<row>"``, where ``<file>`` is the file's path relative to the deepest folder
holding all input files and ``<row>`` its 0-based row number in that file. A global row number would need
every file's row count before scoring starts, i.e. a second full read of the input.

Exactly once: a part is named after its write task (``part-00012.csv``) and written under a temporary
name, so a task that Ray retries after a worker died rewrites the same part; the driver publishes only the
parts that successful tasks reported, checks each file's row numbers are ``0..n-1`` with none missing or
repeated, and renames the staging folder to OUT only then.

Ray is imported lazily: ``import clsrun.runtime.ray_engine.engine`` works without the ``ray`` extra.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import posixpath
import re
import shutil
import signal
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from clsrun import __version__
from clsrun.runtime import stopping
from clsrun.runtime.batching import BatchOptions
from clsrun.runtime.bundle import Bundle
from clsrun.runtime.claim import check_out_name
from clsrun.runtime.errors import (
    ClsrunError,
    InputError,
    InternalError,
    OutputExistsError,
    UsageError,
    require,
    storage_error,
)
from clsrun.runtime.files import atomic_fs_write_text
from clsrun.runtime.fingerprint import written_to
from clsrun.runtime.input_files import ReadOptions
from clsrun.runtime.outlock import OutputLock
from clsrun.runtime.ray_engine.inputs import InputFiles, open_location, resolve_inputs
from clsrun.runtime.ray_engine.stages import (
    ActorConfig,
    BundleRef,
    FileTally,
    ScoreActor,
    empty_part,
    make_datasink,
    make_datasource,
    pack_bundle,
)
from clsrun.runtime.readers import open_records
from clsrun.runtime.row_errors import check_error_rate
from clsrun.runtime.score import OutputOptions, RunResult
from clsrun.runtime.unreadable import SAMPLE_ROWS, warn_unreadable
from clsrun.runtime.variant import Variant
from clsrun.runtime.writers import output_format, output_schema, warn_formula_labels

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"  # inside OUT; the leading "_" keeps it out of pyarrow / Spark / Ray readers
# Ray block size while a job runs: a few windows per block, so that even a single big file spreads
# over every worker; Ray's default (128 MiB) would give one file's first million rows to one actor.
DEFAULT_BLOCK_BYTES = 8 << 20
# Read and write tasks are light next to the model: a fraction of a CPU lets them run beside actors
# that hold whole CPUs (with 1 CPU each they would wait forever for a CPU the actors never release).
IO_TASK_CPUS = 0.25


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run on Ray. What is scored, and how, are the local engine's option groups
    (:class:`Variant`, :class:`ReadOptions`, :class:`BatchOptions`, :class:`OutputOptions`)."""

    address: str | None = None  # --address: None starts a local Ray; "auto" / "ray://host:port" joins one
    workers: int = 2  # --workers: model actors, each loads the bundle once
    cpus_per_worker: float = 1.0  # --cpus-per-worker: Ray CPUs per actor (and its inference threads)
    gpus_per_worker: float = 0.0  # --gpus-per-worker: Ray GPUs per actor; > 0 runs the model on CUDA
    preserve_order: bool = False  # --preserve-order: parts in input order (slower: blocks wait in line)
    block_bytes: int = DEFAULT_BLOCK_BYTES  # Ray's target block size during the job (whole windows)
    ship_bundle: bool | None = None  # send the bundle's files through Ray; None: only when joining a cluster
    quiet: bool = False  # no Ray progress bars

    def __post_init__(self) -> None:
        problems = []
        if self.workers < 1:
            problems.append(f"--workers {self.workers}: must be at least 1")
        if not 0 < self.cpus_per_worker < math.inf:  # nan fails every comparison
            problems.append(f"--cpus-per-worker {self.cpus_per_worker}: must be a positive number")
        if not 0 <= self.gpus_per_worker < math.inf:
            problems.append(f"--gpus-per-worker {self.gpus_per_worker}: must be a number, 0 or more")
        if self.block_bytes < 1:
            problems.append(f"block_bytes {self.block_bytes}: must be positive")
        if problems:
            raise UsageError("; ".join(problems))

    def cluster(self) -> str | None:
        """The Ray cluster to join: ``--address``, else ``RAY_ADDRESS`` (which `ray job submit` sets for its
        job), else None: start a local Ray."""
        return self.address or os.environ.get("RAY_ADDRESS") or None

    def worker_variant(self, variant: Variant) -> Variant:
        """What each actor runs: on CUDA when it holds a GPU, its CPUs as threads, one batch at a time."""
        device = "cuda" if self.gpus_per_worker > 0 and variant.device == "auto" else variant.device
        threads = variant.threads or max(1, int(self.cpus_per_worker))
        return replace(variant, device=device, threads=threads, streams=1)


@dataclass
class RayScoreResult(RunResult):
    """What a Ray run did; ``manifest`` is what was written to ``OUT/_manifest.json``."""

    output: str

    def summary(self) -> str:
        """The one line ``clsrun predict --engine ray`` prints when done."""
        m = self.manifest
        return (
            f"scored {m['rows_read']:,} rows from {len(m['files'])} file(s) ({m['ok']:,} ok, {m['error']:,} "
            f"error) -> {self.output} ({len(m['parts'])} parts) in {m['wall_s']:.1f}s, {m['rows_per_s']:,.0f} rows/s "
            f"on {m['ray']['workers']} Ray workers ({m['backend']} {m['precision']} {m['device']})"
        )


# -- the driver ------------------------------------------------------------------------------------
def _import_ray() -> Any:
    require("ray", "ray")
    import ray
    import ray.data  # needs the ray[data] extra (pandas, pyarrow)

    return ray


def _connect(ray: Any, options: RayOptions) -> bool:
    """Start or join Ray; True when this call did (and so must shut it down)."""
    if ray.is_initialized():
        return False
    level = logging.ERROR if options.quiet else logging.WARNING  # --quiet: not Ray's start-up notes either
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": level}
    # RAY_ADDRESS (set by `ray job submit` for its job) names a cluster as --address does: joined, with
    # nothing of the local start (ray.init refuses num_cpus for a cluster it joins).
    address = options.cluster()
    where = (
        f"--address {options.address}" if options.address else f"RAY_ADDRESS={address}" if address else None
    )
    if address is None:
        # A laptop run: a Ray of its own ("local"; without an address ray.init joins the cluster a `ray start`
        # on this host left in /tmp/ray, and then refuses num_cpus), with enough logical CPUs for the actors
        # plus the read and write tasks.
        kwargs["address"] = "local"
        needed = options.workers * options.cpus_per_worker + 2 * IO_TASK_CPUS
        cores = os.cpu_count() or 1
        kwargs["num_cpus"] = max(cores, int(np.ceil(needed)))  # GPUs: as Ray detects them
        if options.workers * options.cpus_per_worker > cores:  # runs, but shares the cores: say so
            log.warning(
                "--workers %d x --cpus-per-worker %g asks for more CPUs than this machine's %d: the local Ray "
                "runs them on %d cores (each worker holds a copy of the model); fewer workers score as fast",
                options.workers, options.cpus_per_worker, cores, cores,
            )  # fmt: skip
    else:
        kwargs["address"] = address
    # Ray's native failure handler (absl's) also takes SIGTERM, and a SIGTERM while ray.init runs then
    # aborted the driver with a stack dump (exit 134) instead of clsrun's stop; a user's setting is kept.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    try:
        with stopping.kept():  # ray.init takes SIGTERM for itself
            ray.init(**kwargs)
    except SystemExit as e:
        # A SIGTERM during ray.init, through the handler it sets (sys.exit(15)): a stop of ours.
        if e.code != signal.SIGTERM:
            raise
        with contextlib.suppress(Exception):
            ray.shutdown()  # what it started so far (its processes would linger otherwise)
        raise stopping.Stop(signal.SIGTERM) from None
    except (ConnectionError, RuntimeError, ValueError, OSError) as e:
        said = " ".join(str(e).split()) or type(e).__name__
        if where is None:  # a failure of the local start (a socket path too long under RAY_TMPDIR, ...)
            raise UsageError(f"cannot start a local Ray: {said}") from e
        raise UsageError(f"{where}: cannot join the Ray cluster: {said}") from e
    return True


def _check_resources(ray: Any, options: RayOptions) -> None:
    """Refuse, rather than hang, when the cluster cannot hold the actors plus a read and a write task."""
    have = ray.cluster_resources()
    need_cpu = options.workers * options.cpus_per_worker + 2 * IO_TASK_CPUS
    if have.get("CPU", 0) < need_cpu:
        raise UsageError(
            f"--workers {options.workers} x --cpus-per-worker {options.cpus_per_worker} leaves no room for "
            f"reading and writing on a Ray cluster of {have.get('CPU', 0):g} CPUs (needs {need_cpu:g}); "
            f"use fewer workers or fewer CPUs per worker"
        )
    need_gpu = options.workers * options.gpus_per_worker
    if need_gpu > have.get("GPU", 0):
        raise UsageError(
            f"--workers {options.workers} x --gpus-per-worker {options.gpus_per_worker} needs {need_gpu:g} "
            f"GPUs; the Ray cluster has {have.get('GPU', 0):g}"
        )


def _clsrun_cause(e: BaseException, where: str) -> ClsrunError | None:
    """The clsrun error behind a Ray exception (Ray wraps task errors, sometimes twice), if any; a file
    system refusal (full disk, permission) becomes its one-line :class:`StorageError` naming ``where``
    (the output being written: Ray Data rewrites the error's own file name and message).

    A ``RayTaskError`` is also an instance of the class it wraps, with Ray's whole report as its text:
    the error Ray keeps in its ``cause`` is taken instead, so the message is the task's own.
    """
    seen: set[int] = set()
    stack: list[BaseException | None] = [e]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        inner = getattr(cur, "cause", None)
        if isinstance(inner, BaseException):
            stack.append(inner)
            continue
        if isinstance(cur, ClsrunError):
            cur.args = (str(cur).splitlines()[0],)  # Ray Data appends its retry advice to the message
            return cur
        if isinstance(cur, OSError) and (typed := storage_error(cur, where)) is not None:
            return typed
        stack += [cur.__cause__, cur.__context__]
    return _named_in_report(str(e))


# The last line of a worker's traceback that names a clsrun error: "clsrun.runtime.errors.UsageError: ..."
_CLSRUN_LINE = re.compile(r"^(clsrun(?:\.\w+)+)\.(\w+): (.+)$", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _named_in_report(report: str) -> ClsrunError | None:
    """The clsrun error a Ray report names in its text, rebuilt. Why by its text: Ray Data wraps an error of
    a model actor in ``UserCodeException(...) from error``, and the ``from`` does not survive the trip to
    the driver; only the worker's traceback, as text, does. Only ``ClsrunError`` classes are rebuilt."""
    import importlib

    for module, name, message in reversed(_CLSRUN_LINE.findall(_ANSI.sub("", report))):
        try:
            kind = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        if isinstance(kind, type) and issubclass(kind, ClsrunError):
            return kind(message.strip())
    return None


def _output_target(out: str, overwrite: bool) -> tuple[pafs.FileSystem, str, str]:
    """``(filesystem, path, format)`` of OUT: a folder whose extension picks the parts' format.

    An earlier clsrun output there is replaced only with ``overwrite``; any other folder never is."""
    check_out_name(out, engine="ray")
    fs, path, _ = open_location(out)
    path = path.rstrip("/")
    suffix = posixpath.splitext(path)[1]
    kind = output_format(path) if suffix else "parquet"
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        raise UsageError(f"--out {out}: is a file; --engine ray writes a folder of part files")
    if (
        info.type == pafs.FileType.Directory
        and fs.get_file_info(f"{path}/{MANIFEST}").type != pafs.FileType.File
    ):
        raise UsageError(
            f"--out {out}: folder exists and is not a clsrun output (no {MANIFEST}); "
            f"choose a new folder, clsrun will not replace it"
        )
    if info.type == pafs.FileType.Directory and not overwrite:
        raise OutputExistsError(
            f"--out {out}: already exists (an earlier run's output); add --overwrite to replace it"
        )
    return fs, path, kind


def _publish(fs: pafs.FileSystem, staging: str, target: str) -> None:
    """Move the complete staging folder to ``target``, replacing an earlier clsrun output there."""
    old = None
    if fs.get_file_info(target).type == pafs.FileType.Directory:
        old = f"{target}.old-{uuid.uuid4().hex[:8]}"
        fs.move(target, old)
    try:
        fs.move(staging, target)
    except (OSError, pa.ArrowNotImplementedError):
        # Object stores cannot rename a folder: move the parts one by one, the manifest last, so a
        # reader that waits for the manifest never sees a partial result.
        fs.create_dir(target)
        infos = fs.get_file_info(pafs.FileSelector(staging))
        for info in sorted(infos, key=lambda i: posixpath.basename(i.path) == MANIFEST):
            fs.move(info.path, f"{target}/{posixpath.basename(info.path)}")
        fs.delete_dir(staging)
    if old is not None:
        fs.delete_dir(old)


def _remove(fs: pafs.FileSystem, path: str) -> None:
    with contextlib.suppress(OSError, FileNotFoundError):
        if isinstance(fs, pafs.LocalFileSystem):
            shutil.rmtree(path, ignore_errors=True)
        else:
            fs.delete_dir(path)


_STAGING = re.compile(r"\.tmp-[0-9a-f]{12}")  # what follows OUT's name in a run's staging folder
_REPLACED = re.compile(r"\.old-[0-9a-f]{8}")  # ... in the earlier output _publish moves aside


def _remove_stale_staging(fs: pafs.FileSystem, out_path: str, overwrite: bool) -> None:
    """Remove what earlier runs of this output left when killed: their staging folders (``kill -9`` of the
    driver leaves one each), and an earlier output ``_publish`` moved aside to ``OUT.old-*``: removed when
    OUT is there (the kill came while deleting it), put back as OUT when it is not (the kill came between
    the two renames: it is the last complete output; without ``overwrite`` the run then stops, as for any
    output already there). Only for a local output: its lock (held now) proves no other run is writing
    there; on shared storage another driver may be, so nothing is touched."""
    if not isinstance(fs, pafs.LocalFileSystem):
        return
    folder, name = posixpath.split(out_path)
    try:
        entries = sorted(Path(folder or ".").iterdir())
    except OSError:
        return
    for entry in entries:
        rest = entry.name[len(name) :] if entry.name.startswith(name) else ""
        if not (_STAGING.fullmatch(rest) or _REPLACED.fullmatch(rest)) or not entry.is_dir():
            continue
        if _REPLACED.fullmatch(rest) and not Path(out_path).exists():
            entry.rename(out_path)
            why = f"put back {entry.name} as {out_path}: a run killed while replacing it had moved it aside"
            if not overwrite:
                raise OutputExistsError(f"--out {out_path}: {why}; add --overwrite to replace it")
            log.warning("%s", why)
            continue
        log.info("removed %s, left by an earlier run that was killed", entry)
        _remove(fs, str(entry))


def _check_exactly_once(files: InputFiles, totals: dict[int, FileTally]) -> None:
    """Every file's rows are 0..n-1, each once, up to the row its reader marked as the last."""
    problems = []
    for i, uri in enumerate(files.uris):
        t = totals.get(i)
        if t is None or t.rows == 0:
            continue  # an empty file: no blocks at all
        n = t.rows
        if (t.row_min, t.row_max, t.last_row, t.row_sum) != (0, n - 1, n - 1, n * (n - 1) // 2):
            problems.append(
                f"{uri}: {n} rows, numbers {t.row_min}..{t.row_max}, last block ends at {t.last_row}"
            )
    if problems:
        raise InternalError("rows lost or repeated in the Ray job: " + "; ".join(problems[:5]))


@dataclass(frozen=True)
class _Job:
    """Everything one Ray run was asked for, passed whole between the driver's steps."""

    variant: Variant  # what each actor runs (RayOptions.worker_variant)
    read: ReadOptions
    batching: BatchOptions
    output: OutputOptions
    ray: RayOptions


def score_with_ray(
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    bundle: str | Path | None = None,
    variant: Variant = Variant(),
    read: ReadOptions = ReadOptions(),
    batching: BatchOptions = BatchOptions(),
    output: OutputOptions = OutputOptions(),
    options: RayOptions = RayOptions(),
) -> RayScoreResult:
    """Score every row of ``inputs`` on Ray into the folder ``out_dir`` (parts + ``_manifest.json``).

    ``inputs``: a file, a folder, a glob, or a list of them, local or on any filesystem pyarrow supports
    (``s3://``, ``gs://``, ``hdfs://``). ``bundle``: a bundle folder, None for the default model. The
    output format comes from ``out_dir``'s extension (``scores.csv/`` -> CSV parts), Parquet without one.
    OUT appears only when every row has been scored and written; a failed job leaves nothing behind.
    """
    if output.resume:
        raise UsageError("--resume: not supported with --engine ray (a failed Ray job leaves no output)")
    if variant.streams is not None:
        raise UsageError("--streams is for the local engine; on Ray, --workers sets how many run at once")
    job = _Job(options.worker_variant(variant), read, batching, output, options)
    ray = _import_ray()  # a missing extra is the first thing a user hears about
    out_fs, out_path, kind = _output_target(str(out_dir), output.overwrite)
    files = resolve_inputs(inputs, output=out_path)  # never the parts of OUT (a folder around it)
    try:
        with _locked(out_fs, out_path):
            result = _score_on_ray(ray, files, bundle, job, (out_fs, out_path, kind), str(out_dir))
    except OSError as e:  # pyarrow's file system errors name no file: say which output could not be written
        typed = storage_error(e, str(out_dir)) if e.filename is None else None
        if typed is None:
            raise
        raise typed from e
    check_error_rate(result.manifest, output.max_error_rate)
    return result


@contextlib.contextmanager
def _locked(fs: pafs.FileSystem, path: str) -> Iterator[None]:
    """One writer per output folder, as for the local engine (``outlock.py``), when OUT is on a local
    disk. On s3://, gs:// or hdfs:// no lock spans the cluster's storage: jobs must not share an OUT."""
    if not isinstance(fs, pafs.LocalFileSystem):
        yield
        return
    with OutputLock.acquire(Path(path)):
        yield


def _score_on_ray(
    ray: Any,
    files: InputFiles,
    bundle: str | Path | None,
    job: _Job,
    target: tuple[pafs.FileSystem, str, str],
    out_dir: str,
) -> RayScoreResult:
    """Check, load, run, tally and publish (:func:`score_with_ray` after the output is locked)."""
    out_fs, out_path, kind = target
    read, options = job.read, job.ray
    fingerprints, first = _check_local_inputs(files, read)
    described, loaded = _load_on_driver(bundle, job.variant, first)
    warn_formula_labels(loaded.labels, kind)
    _remove_stale_staging(out_fs, out_path, job.output.overwrite)
    started_ray = _connect(ray, options)
    staging = f"{out_path}.tmp-{uuid.uuid4().hex[:12]}"
    published = False
    try:
        _check_resources(ray, options)
        out_fs.create_dir(staging, recursive=True)
        t0 = time.perf_counter()
        with _job_context(ray, options):
            results = _run_job(ray, files, loaded, job, (out_fs, staging, kind))
        wall = time.perf_counter() - t0
        manifest = _manifest(files, results, described, job, kind, wall, out_dir)
        _tidy_staging(out_fs, staging, manifest)
        text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
        atomic_fs_write_text(out_fs, f"{staging}/{MANIFEST}", text)
        _require_unchanged(fingerprints)
        # From here the run completes, whatever signal arrives (it is only noted), as the local engine's
        # does once its output is in place: a SIGTERM during Ray's shutdown said "interrupted" (143) over a
        # complete output, which the same command then refused as already there.
        with stopping.shielded(then_raise=False):
            published = True  # the clean-up below is this block's too: no signal between them
            try:
                _publish(out_fs, staging, out_path)
            finally:
                _clean_up(ray if started_ray else None, out_fs, staging)
            return RayScoreResult(out_dir, manifest)
    finally:
        if not published:
            _clean_up(ray if started_ray else None, out_fs, staging)


def _clean_up(ray: Any | None, fs: pafs.FileSystem, staging: str) -> None:
    """Remove the run's staging folder and shut down the Ray it started (``ray``; None: it joined one)."""
    _remove(fs, staging)
    if ray is not None:
        ray.shutdown()


def _check_local_inputs(
    files: InputFiles, read: ReadOptions
) -> tuple[dict[str, dict[str, Any]], tuple[str, list[str]]]:
    """Open every input on a local disk as the local engine opens its one (format, columns, first rows):
    a bad file exits 2 before the model loads or Ray starts, wherever it sorts (checking the first alone
    let a bad last file end the job after the others were scored). Returns each file's fingerprint, taken
    before its first byte was read, and the first file with texts and its first texts (``unreadable.py``
    looks at them).
    Files elsewhere (s3://) are checked by their read tasks."""
    if not isinstance(files.filesystem, pafs.LocalFileSystem):
        return {}, ("", [])
    fingerprints: dict[str, dict[str, Any]] = {}
    first: tuple[str, list[str]] = ("", [])
    for path in files.paths:
        with open_records(path, read) as stream:
            fingerprints[path] = stream.fingerprint
            if not first[1]:
                first = (path, stream.first_texts(SAMPLE_ROWS))
    return fingerprints, first


def _require_unchanged(fingerprints: dict[str, dict[str, Any]]) -> None:
    """Refuse to publish when an input was written to during the job, as the local engine does: its rows may
    mix its old and new contents."""
    for path, fingerprint in fingerprints.items():
        head = written_to(Path(path), fingerprint, "scored")
        if head is not None:
            raise InputError(f"{head}; nothing was published: score it again once it is complete")


def _load_on_driver(
    bundle: str | Path | None, variant: Variant, first: tuple[str, list[str]]
) -> tuple[dict[str, Any], Bundle]:
    """Load and check the bundle here: one that cannot load fails the job before any Ray task starts or
    any output exists (in an actor, Ray would restart it again and again); a model that cannot read the
    ``first`` local input's first texts (``(path, texts)``) is said, as locally. Returns what it would run."""
    from clsrun.runtime.classifier import Classifier

    driver = replace(variant, device="cpu" if variant.device == "cuda" else variant.device, threads=1)
    clf = Classifier.load(bundle, driver)
    warn_unreadable(first[0], bundle, clf, first[1])
    return clf.describe(), clf.bundle


@contextlib.contextmanager
def _job_context(ray: Any, options: RayOptions) -> Iterator[None]:
    """Ray Data settings for this job (order, progress, block size, log level), restored afterwards."""
    context = ray.data.DataContext.get_current()
    opts = context.execution_options
    logger = logging.getLogger("ray.data")  # its INFO lines (plan, progress) are progress output too
    saved = (opts.preserve_order, context.enable_progress_bars, context.target_max_block_size, logger.level)
    opts.preserve_order = options.preserve_order
    context.enable_progress_bars = not options.quiet
    context.target_max_block_size = options.block_bytes
    if options.quiet:
        logger.setLevel(logging.ERROR)
    # A failed task is reported by the driver in one line (its clsrun error); Ray Data's own ERROR records
    # of it (tracebacks, retry advice) stay in its session log, off stderr unless --debug.
    terminal = [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]
    debug = logging.getLogger("clsrun").isEnabledFor(logging.DEBUG)
    for handler in [] if debug else terminal:
        handler.addFilter(_below_error)
    try:
        yield
    finally:
        opts.preserve_order, context.enable_progress_bars, context.target_max_block_size, level = saved
        logger.setLevel(level)
        for handler in terminal:
            handler.removeFilter(_below_error)


def _below_error(record: logging.LogRecord) -> bool:
    return record.levelno < logging.ERROR


def _run_job(
    ray: Any, files: InputFiles, bundle: Bundle, job: _Job, out: tuple[pafs.FileSystem, str, str]
) -> list[dict[str, Any]]:
    """Read -> score -> write on Ray; returns what each write task reported."""
    options = job.ray
    ship = options.ship_bundle if options.ship_bundle is not None else options.cluster() is not None
    ref = BundleRef(str(bundle.root.resolve()), bundle.digest, ray.put(pack_bundle(bundle)) if ship else None)
    several = len(files) > 1 and job.read.id_col is None
    id_names = files.names if several else None
    config = ActorConfig(ref, job.variant, job.batching, job.output.probs, id_names)
    schema = output_schema(bundle.labels, job.output.probs, text_ids=job.read.id_col is not None or several)
    ds = ray.data.read_datasource(
        make_datasource(files, job.read, job.batching.window),
        override_num_blocks=len(files),  # one read task per file, each streaming its windows
        num_cpus=IO_TASK_CPUS,
    )
    ds = ds.map_batches(
        ScoreActor,
        fn_constructor_args=(config,),
        batch_size=1,  # one window per call: results stream out window by window
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=options.workers),
        num_cpus=options.cpus_per_worker,
        num_gpus=options.gpus_per_worker or None,
    )
    fs, staging, kind = out
    sink = make_datasink(staging, fs, kind, schema)
    try:
        with warnings.catch_warnings():
            # Ray Data's advice when a job has fewer input files than --workers (one read task per file
            # is on purpose: its windows in order); two lines of it on every small job, --quiet or not.
            warnings.filterwarnings("ignore", message="The minimum number of concurrent actors")
            ds.write_datasink(sink, ray_remote_args={"num_cpus": IO_TASK_CPUS})
    except Exception as e:
        cause = _clsrun_cause(e, staging)
        if cause is not None:
            raise cause from None
        raise
    results: list[dict[str, Any]] = sink.results
    if not any(r.get("part") for r in results):  # no rows anywhere: still the output's columns
        results.append(empty_part(staging, fs, kind, schema))
    return results


def _tidy_staging(fs: pafs.FileSystem, staging: str, manifest: dict[str, Any]) -> None:
    """Leave exactly the reported parts in the staging folder; refuse if one is not there.

    Files no successful write task reported (the temporary file of an attempt that was killed) are
    removed. A reported part that the driver cannot see was written on another node's local disk.
    """
    reported = {p["file"] for p in manifest["parts"]}
    present = {posixpath.basename(i.path): i for i in fs.get_file_info(pafs.FileSelector(staging))}
    for name, info in present.items():
        if name not in reported:
            fs.delete_file(info.path)
    missing = sorted(reported - set(present))
    if missing:
        raise UsageError(
            f"--out: {len(missing)} part files were written where this machine cannot see them "
            f"({', '.join(missing[:3])}...); on a cluster, --out must be storage every node shares "
            f"(s3://, gs://, hdfs://, NFS)"
        )


def _reasons(results: list[dict[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for r in results:
        for reason, n in (r.get("reasons") or {}).items():
            total[reason] = total.get(reason, 0) + n
    return dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))


def _tally_results(
    files: InputFiles, results: list[dict[str, Any]]
) -> tuple[dict[int, FileTally], list[dict[str, Any]]]:
    """Per input file, what the write tasks counted; and the parts they wrote. Refuses lost or extra rows."""
    totals: dict[int, FileTally] = {}
    parts = []
    for r in results:
        if r.get("part"):
            parts.append({"file": r["part"], "rows": r["rows"]})
        for k, v in r["files"].items():
            totals.setdefault(int(k), FileTally()).add(FileTally(**v))
    _check_exactly_once(files, totals)
    rows = sum(t.rows for t in totals.values())
    if rows != sum(p["rows"] for p in parts):
        raise InternalError(f"parts hold {sum(p['rows'] for p in parts)} rows, files {rows}")
    return totals, parts


def _manifest(
    files: InputFiles,
    results: list[dict[str, Any]],
    described: dict[str, Any],
    job: _Job,
    kind: str,
    wall: float,
    output: str,
) -> dict[str, Any]:
    """Counts that add up: per file, per part and in total; checked before anything is published."""
    totals, parts = _tally_results(files, results)
    rows = sum(t.rows for t in totals.values())
    variants = [json.loads(v) for v in sorted({v for r in results for v in r["variants"]})]
    # What the workers ran; with no rows at all (empty inputs), what the driver would run.
    ran = variants[0] if variants else {**described, "threads": job.variant.threads}
    options, read = job.ray, job.read
    empty = FileTally()
    several = len(files) > 1 and read.id_col is None
    return {
        "clsrun_version": __version__,
        "engine": "ray",
        "input": [str(u) for u in files.uris] if len(files) > 1 else files.uris[0],
        "output": output if "://" in output else os.path.abspath(os.path.expanduser(output)),
        "format": kind,
        "rows_read": rows,
        "ok": sum(t.ok for t in totals.values()),
        "error": sum(t.error for t in totals.values()),
        "truncated": sum(t.truncated for t in totals.values()),  # texts cut to the model's maximum length
        "error_reasons": _reasons(results),  # error rows per reason (row_errors.reason_kind), most first
        "max_error_rate": job.output.max_error_rate,
        "files": [
            {"input": uri, "rows": t.rows, "ok": t.ok, "error": t.error}
            for uri, t in ((u, totals.get(i, empty)) for i, u in enumerate(files.uris))
        ],
        "parts": sorted(parts, key=lambda p: p["file"]),
        "ids": "id-col" if read.id_col is not None else ("file:row" if several else "row"),
        # paths in a manifest do not depend on the caller's folder
        "bundle": os.path.abspath(described["bundle"]),
        "bundle_digest": described["bundle_digest"],
        "backend": ran["backend"],
        "precision": ran["precision"],
        "device": ran["device"],
        "threads": ran["threads"],  # per worker
        "variant_file": ran["file"],
        "worker_variants": variants,  # more than one only on a cluster of mixed nodes
        "ray": {
            "address": options.cluster() or "local",
            "workers": options.workers,
            "cpus_per_worker": options.cpus_per_worker,
            "gpus_per_worker": options.gpus_per_worker,
            "preserve_order": options.preserve_order,
        },
        "options": _job_options(job),
        "wall_s": round(wall, 3),
        "rows_per_s": round(rows / wall, 1) if wall > 0 else 0.0,
    }


def _job_options(job: _Job) -> dict[str, Any]:
    """The manifest's ``options``: how the inputs were read, batched and written."""
    read = job.read
    return {
        "text_col": read.text_col,
        "id_col": read.id_col,
        "delimiter": read.delimiter,
        "tsv_quotes": read.tsv_quotes,
        "probs": job.output.probs,
        "window": job.batching.window,
        "block_bytes": job.ray.block_bytes,
    }
