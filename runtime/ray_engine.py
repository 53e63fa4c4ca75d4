"""Scale-out scoring on Ray Data: the local engine's reader, ``Classifier`` and writers, run across a cluster.

One row's path (every stage is the local engine's code; this module only places it on Ray):

    driver      resolve INPUT (folder, glob, file list; any pyarrow filesystem) -> sorted files;
                load and verify the bundle (a bad bundle fails here, before anything is written)
    read task   one per file: ``readers.open_records`` (per-row errors) -> ``batching.windows``; one Ray
                row per scoring window, so Ray's block shaping can never split a window
    actor       ``_ScoreActor``: ``Classifier`` loaded once per actor; prepare -> infer -> finish per window,
                the same windows and so the same batches as the local engine
    write task  ``_PartsDatasink``: one part file per task with ``writers.open_writer``, in a staging folder
    driver      check every input row came back exactly once, write ``_manifest.json``, rename staging -> OUT

Ids: the ``--id-col`` value; else, for a single input file, the 0-based row number (as the local engine);
for several files ``"<file>:<row>"``, where ``<file>`` is the file's path relative to the deepest folder
holding all input files and ``<row>`` its 0-based row number in that file. A global row number would need
every file's row count before scoring starts, i.e. a second full read of the input.

Exactly once: a part is named after its write task (``part-00012.csv``) and written under a temporary
name, so a task that Ray retries after a worker died rewrites the same part; the driver publishes only the
parts that successful tasks reported, checks each file's row numbers are ``0..n-1`` with none missing or
repeated, and renames the staging folder to OUT only then.

Ray is imported lazily: ``import clsrun.runtime.ray_engine`` works without the ``ray`` extra.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import posixpath
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from clsrun import __version__
from clsrun.runtime.batching import windows
from clsrun.runtime.bundle import SPEC_FILE, Bundle, atomic_write_text
from clsrun.runtime.errors import BundleError, ClsrunError, InputError, InternalError, UsageError, require
from clsrun.runtime.readers import RecordChunk, detect_format, open_records
from clsrun.runtime.score import ScoreOptions
from clsrun.runtime.writers import output_format, output_schema

MANIFEST = "_manifest.json"  # inside OUT; the leading "_" keeps it out of pyarrow / Spark / Ray readers
# Private columns; never written to the output. A window row (reader -> actor) has all of them, the
# scored rows (actor -> writer) FILE_COL, ROW_COL and LAST_COL next to the output columns.
FILE_COL = "_clsrun_file"  # int32: index of the input file in sorted order
ROW_COL = "_clsrun_row"  # int64: 0-based row number in that file (a window: of its first row)
LAST_COL = "_clsrun_last"  # bool: in its file's last window (lets the driver check that no tail is lost)
TEXTS_COL = "_clsrun_texts"  # list<string>: a window's texts, null where the reader found a per-row error
ERRORS_COL = "_clsrun_errors"  # list<string>: the reader's per-row errors, "" when fine
IDS_COL = "_clsrun_ids"  # list<string>: the --id-col values (only with --id-col)
# Ray block size while a job runs: a few windows per block, so that even a single big file spreads
# over every worker; Ray's default (128 MiB) would give one file's first million rows to one actor.
DEFAULT_BLOCK_BYTES = 8 << 20
# Read and write tasks are light next to the model: a fraction of a CPU lets them run beside actors
# that hold whole CPUs (with 1 CPU each they would wait forever for a CPU the actors never release).
IO_TASK_CPUS = 0.25
PART_EXT = {"csv": ".csv", "tsv": ".tsv", "jsonl": ".jsonl", "parquet": ".parquet"}

log = logging.getLogger(__name__)


@dataclass
class RayOptions:
    """How to run on Ray; the scoring itself is configured by ``score`` exactly as for the local engine."""

    score: ScoreOptions = field(default_factory=ScoreOptions)  # --text-col, --id-col, --probs, --window...
    address: str | None = None  # --address: None starts a local Ray; "auto" / "ray://host:port" joins one
    workers: int = 2  # --workers: model actors, each loads the bundle once
    cpus_per_worker: float = 1.0  # --cpus-per-worker: Ray CPUs per actor (and its inference threads)
    gpus_per_worker: float = 0.0  # --gpus-per-worker: Ray GPUs per actor; > 0 runs the model on CUDA
    preserve_order: bool = False  # --preserve-order: parts in input order (slower: blocks wait in line)
    backend: str = "auto"  # as clsrun predict
    precision: str = "auto"
    device: str = "auto"
    threads: int | None = None  # inference threads per actor; default: its CPUs (at least 1)
    block_bytes: int = DEFAULT_BLOCK_BYTES  # Ray's target block size during the job (whole windows)
    ship_bundle: bool | None = None  # send the bundle's files through Ray; None: only when joining a cluster
    quiet: bool = False  # no Ray progress bars

    def check(self) -> None:
        self.score.check()
        if self.score.resume:
            raise UsageError("--resume: not supported with --engine ray (a failed Ray job leaves no output)")
        if self.workers < 1:
            raise UsageError(f"--workers {self.workers}: must be at least 1")
        if self.cpus_per_worker <= 0:
            raise UsageError(f"--cpus-per-worker {self.cpus_per_worker}: must be positive")
        if self.gpus_per_worker < 0:
            raise UsageError(f"--gpus-per-worker {self.gpus_per_worker}: must be 0 or more")
        if self.block_bytes < 1:
            raise UsageError(f"block_bytes {self.block_bytes}: must be positive")

    @property
    def worker_device(self) -> str:
        return "cuda" if self.gpus_per_worker > 0 and self.device == "auto" else self.device

    @property
    def worker_threads(self) -> int:
        return self.threads or max(1, int(self.cpus_per_worker))


@dataclass
class RayScoreResult:
    """What a run did; ``manifest`` is what was written to ``OUT/_manifest.json``."""

    output: str
    manifest: dict[str, Any]

    @property
    def rows(self) -> int:
        return int(self.manifest["rows_read"])


# -- inputs ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputFiles:
    """The files of INPUT in scoring order, on one filesystem, with their names for ids and the manifest."""

    filesystem: pafs.FileSystem
    paths: list[str]  # filesystem paths, sorted
    names: list[str]  # each path relative to ``root``
    root: str  # deepest folder holding every file
    uris: list[str]  # how each file is shown to the user

    def __len__(self) -> int:
        return len(self.paths)


def _filesystem(spec: str) -> tuple[pafs.FileSystem, str, str]:
    """``(filesystem, path, uri prefix)`` of a local path or a URI such as ``s3://bucket/key``."""
    if "://" not in spec:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(spec)), ""
    try:
        fs, path = pafs.FileSystem.from_uri(spec if not _has_glob(spec) else _glob_base(spec))
    except (pa.ArrowInvalid, OSError, ValueError) as e:
        raise InputError(f"{spec}: cannot open this location: {str(e).splitlines()[0]}") from e
    if _has_glob(spec):  # from_uri saw the folder only; put the pattern back on the path
        path = posixpath.join(path, spec[len(_glob_base(spec)) :].lstrip("/"))
    scheme = spec.split("://", 1)[0]
    return fs, path, f"{scheme}://"


def _has_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def _glob_base(pattern: str) -> str:
    """The part of a glob before its first wildcard component (``s3://b/in/*.csv`` -> ``s3://b/in``)."""
    head = pattern
    while _has_glob(head):
        head = head.rsplit("/", 1)[0] if "/" in head else ""
    return head


def _listable(name: str) -> bool:
    """Files a folder or glob expands to: known formats, not hidden or ``_``-prefixed (manifests, markers)."""
    base = posixpath.basename(name)
    if base.startswith((".", "_")):
        return False
    try:
        detect_format(base)
    except InputError:
        return False
    return True


def resolve_inputs(inputs: str | Path | Sequence[str | Path]) -> InputFiles:
    """Expand INPUT (a file, a folder, a glob, or a list of them) into a sorted list of files.

    Folders are searched recursively; a glob's ``**`` matches any depth. Everything must live on one
    filesystem (one Ray read cannot mix, say, local files and S3 objects).
    """
    specs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not specs:
        raise UsageError("INPUT: no input given")
    found: set[str] = set()
    fs0: pafs.FileSystem | None = None
    prefix0 = ""
    for raw in specs:
        spec = str(raw)
        fs, path, prefix = _filesystem(spec)
        if fs0 is not None and (fs.type_name != fs0.type_name or prefix != prefix0):
            raise UsageError(f"INPUT: {spec} is on another filesystem than {specs[0]}; use one filesystem")
        fs0, prefix0 = fs, prefix
        if _has_glob(path):
            base = _glob_base(path) or "."
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
            pattern = path.replace("**/", "*").replace("**", "*")
            hits = [
                i.path
                for i in infos
                if i.is_file and fnmatch.fnmatchcase(i.path, pattern) and _listable(i.path)
            ]
            if not hits:
                raise InputError(f"{spec}: no .csv, .tsv, .jsonl or .parquet file matches")
            found.update(hits)
            continue
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"{spec}: file or folder not found")
        if info.type == pafs.FileType.Directory:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
            hits = [
                i.path for i in infos if i.is_file and _listable(i.path) and not _hidden_below(i.path, path)
            ]
            if not hits:
                raise InputError(f"{spec}: folder holds no .csv, .tsv, .jsonl or .parquet file")
            found.update(hits)
        else:
            detect_format(path)  # an explicitly named file must have a known extension
            found.add(path)
    assert fs0 is not None
    paths = sorted(found)
    root = posixpath.dirname(paths[0]) if len(paths) == 1 else posixpath.commonpath(paths)
    names = [posixpath.relpath(p, root) if root else p for p in paths]
    return InputFiles(fs0, paths, names, root, [prefix0 + p for p in paths])


def _hidden_below(path: str, folder: str) -> bool:
    """True when a folder between ``folder`` and ``path`` is hidden or ``_``-prefixed (``_temporary``)."""
    parts = posixpath.relpath(path, folder).split("/")[:-1]
    return any(p.startswith((".", "_")) for p in parts)


# -- read tasks ------------------------------------------------------------------------------------
@contextlib.contextmanager
def _local_file(fs: pafs.FileSystem, path: str) -> Iterator[Path]:
    """A local path for ``path``: itself on a local disk, else a temporary copy streamed from ``fs``.

    The local engine's reader opens local files (gzip, Parquet footers, JSONL lines); copying a remote
    object first lets every pyarrow filesystem use that same reader instead of a second one.
    """
    if isinstance(fs, pafs.LocalFileSystem):
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="clsrun-in-") as tmp:
        local = Path(tmp) / posixpath.basename(path)
        pafs.copy_files(path, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        yield local


def _window_row(chunk: RecordChunk, file_index: int, last: bool) -> pa.Table:
    """One scoring window of one file as a one-row table (a Ray row)."""
    cols: dict[str, pa.Array] = {
        FILE_COL: pa.array([file_index], type=pa.int32()),
        ROW_COL: pa.array([chunk.start], type=pa.int64()),
        LAST_COL: pa.array([last], type=pa.bool_()),
        TEXTS_COL: pa.array([chunk.texts], type=pa.list_(pa.string())),
        ERRORS_COL: pa.array([chunk.errors], type=pa.list_(pa.string())),
    }
    if chunk.ids is not None:
        cols[IDS_COL] = pa.array([chunk.ids], type=pa.list_(pa.string()))
    return pa.table(cols)


def _window_of(row: dict[str, Any]) -> RecordChunk:
    return RecordChunk(row[ROW_COL], row.get(IDS_COL), row[TEXTS_COL], row[ERRORS_COL])


@dataclass(frozen=True)
class _FileReader:
    """Reads one input file into its scoring windows, aligned as the local engine aligns them."""

    fs: pafs.FileSystem
    path: str
    uri: str
    index: int
    options: ScoreOptions

    def __call__(self) -> Iterator[pa.Table]:
        o = self.options
        with _local_file(self.fs, self.path) as local:
            try:
                stream = open_records(local, o.text_col, o.id_col, o.max_text_bytes)
                held: RecordChunk | None = None
                for window in windows(stream.chunks(), o.window):
                    if held is not None:
                        yield _window_row(held, self.index, last=False)
                    held = window
                if held is not None:
                    yield _window_row(held, self.index, last=True)
            except InputError as e:  # name the user's file, not the temporary copy
                raise InputError(str(e).replace(str(local), self.uri)) from None


def _datasource(files: InputFiles, options: ScoreOptions) -> Any:
    """A Ray Data datasource with one read task per input file."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    sizes = [info.size for info in files.filesystem.get_file_info(files.paths)]

    class ClsrunFiles(Datasource):
        def get_name(self) -> str:
            return "ReadClsrun"

        def estimate_inmemory_data_size(self) -> int | None:
            return int(sum(s or 0 for s in sizes) * 2)

        def get_read_tasks(self, parallelism: int, *args: Any, **kwargs: Any) -> list[Any]:
            tasks = []
            for i, (path, uri, size) in enumerate(zip(files.paths, files.uris, sizes, strict=True)):
                reader = _FileReader(files.filesystem, path, uri, i, options)
                meta = BlockMetadata(num_rows=None, size_bytes=size, input_files=(uri,), exec_stats=None)
                tasks.append(ReadTask(reader, meta))
            return tasks

    return ClsrunFiles()


# -- the model actor -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _BundleRef:
    """Where an actor finds the bundle: its folder when present with the same digest, else shipped bytes."""

    root: str
    digest: str
    files: Any = None  # ray.ObjectRef of {relative path: bytes}, or None


def _pack_bundle(bundle: Bundle) -> dict[str, bytes]:
    """The bundle's verified files and ``clsrun.json`` as bytes, to ship to nodes that lack the folder."""
    return {rel: bundle.path(rel).read_bytes() for rel in [SPEC_FILE, *bundle.files]}


def _bundle_here(ref: _BundleRef, scratch: list[tempfile.TemporaryDirectory[str]]) -> Path:
    """A local folder holding the bundle ``ref`` names (unpacked into ``scratch`` when shipped)."""
    spec = Path(ref.root) / SPEC_FILE
    if spec.is_file() and hashlib.sha256(spec.read_bytes()).hexdigest() == ref.digest:
        return Path(ref.root)
    if ref.files is None:
        raise BundleError(
            f"{ref.root}: model bundle not found on this Ray node; copy it to every node or let clsrun "
            f"ship it (the default when --address is given)"
        )
    import ray

    tmp = tempfile.TemporaryDirectory(prefix="clsrun-bundle-")
    scratch.append(tmp)
    for rel, data in ray.get(ref.files).items():
        target = Path(tmp.name) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return Path(tmp.name)


class _ScoreActor:
    """A Ray actor: loads the ``Classifier`` once, then scores window rows one window at a time.

    The windows are the local engine's windows, so every batch holds the same rows as in a local run
    and gives the same numbers (dynamic int8 quantisation, for one, depends on the batch).
    """

    def __init__(self, ref: _BundleRef, options: RayOptions, id_names: list[str] | None) -> None:
        from clsrun.runtime.classifier import Classifier

        self._scratch: list[tempfile.TemporaryDirectory[str]] = []
        root = _bundle_here(ref, self._scratch)
        self.clf = Classifier.load(
            root,
            backend=options.backend,
            precision=options.precision,
            device=options.worker_device,
            threads=options.worker_threads,
        )
        if options.score.batch_tokens is not None:
            self.clf.batch_tokens = options.score.batch_tokens
        self.options = options.score
        self.id_names = id_names  # several files without --id-col: ids are "<file>:<row>"

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.concat_tables([self._score(row) for row in batch.to_pylist()])

    def _score(self, row: dict[str, Any]) -> pa.Table:
        window = _window_of(row)
        prepared = self.clf.prepare(window, sort=self.options.sort)
        table = self.clf.finish(self.clf.infer(prepared), with_probs=self.options.probs)
        n = table.num_rows
        rows = pa.array(np.arange(window.start, window.start + n, dtype=np.int64))  # (n,)
        if self.id_names is not None:
            name = self.id_names[row[FILE_COL]]
            ids = pa.array([f"{name}:{r}" for r in range(window.start, window.start + n)], type=pa.string())
            table = table.set_column(0, pa.field("id", pa.string()), ids)
        table = table.append_column(FILE_COL, pa.array(np.full(n, row[FILE_COL], dtype=np.int32)))
        table = table.append_column(ROW_COL, rows)
        return table.append_column(LAST_COL, pa.array(np.full(n, row[LAST_COL], dtype=bool)))


# -- write tasks -----------------------------------------------------------------------------------
@dataclass
class _FileTally:
    """Rows of one input file seen by one write task: enough to prove every row arrived exactly once."""

    rows: int = 0
    ok: int = 0
    error: int = 0
    row_sum: int = 0
    row_min: int = -1
    row_max: int = -1
    last_row: int = -1  # highest row of the file's last block, when this task saw it

    def add(self, other: _FileTally) -> None:
        self.rows += other.rows
        self.ok += other.ok
        self.error += other.error
        self.row_sum += other.row_sum
        mins = [m for m in (self.row_min, other.row_min) if m >= 0]
        self.row_min = min(mins) if mins else -1
        self.row_max = max(self.row_max, other.row_max)
        self.last_row = max(self.last_row, other.last_row)


def _tally(table: pa.Table) -> dict[int, _FileTally]:
    files = table.column(FILE_COL).to_numpy()
    rows = table.column(ROW_COL).to_numpy()
    last = table.column(LAST_COL).to_numpy(zero_copy_only=False)
    ok = np.asarray(table.column("status").to_pylist(), dtype=object) == "ok"
    out: dict[int, _FileTally] = {}
    for f in np.unique(files):
        mask = files == f
        r = rows[mask]
        tail = r[last[mask]]
        out[int(f)] = _FileTally(
            rows=int(mask.sum()),
            ok=int(ok[mask].sum()),
            error=int((~ok[mask]).sum()),
            row_sum=int(r.sum()),
            row_min=int(r.min()),
            row_max=int(r.max()),
            last_row=int(tail.max()) if len(tail) else -1,
        )
    return out


def _datasink(staging: str, fs: pafs.FileSystem, kind: str, schema: pa.Schema) -> Any:
    """A Ray Data datasink writing one part file per write task with the local engine's writers."""
    from ray.data.block import BlockAccessor
    from ray.data.datasource import Datasink

    from clsrun.runtime.writers import open_writer

    class ClsrunParts(Datasink):
        def __init__(self) -> None:
            self.results: list[dict[str, Any]] = []

        def get_name(self) -> str:
            return "WriteClsrun"

        def write(self, blocks: Any, ctx: Any) -> dict[str, Any]:
            tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
            tables = [t for t in tables if t.num_rows]
            if not tables:
                return {"part": None, "rows": 0, "files": {}}
            table = pa.concat_tables(tables)
            tally = _tally(table)
            name = f"part-{ctx.task_idx:05d}{PART_EXT[kind]}"
            data = table.select(schema.names).cast(schema)
            with tempfile.TemporaryDirectory(prefix="clsrun-part-") as tmp:
                local = Path(tmp) / name
                writer = open_writer(local, schema, kind)
                try:
                    writer.write(data)
                finally:
                    writer.close()
                # Temporary name, then rename: a retried task replaces the part, never leaves half of one.
                tmp_target = f"{staging}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
                pafs.copy_files(str(local), tmp_target, destination_filesystem=fs)
                fs.move(tmp_target, f"{staging}/{name}")
            return {
                "part": name,
                "rows": table.num_rows,
                "files": {k: vars(v) for k, v in tally.items()},
            }

        def on_write_complete(self, write_result: Any) -> None:
            self.results = [r for r in write_result.write_returns if r]

    return ClsrunParts()


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
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if options.address is None:
        # A laptop run: enough logical CPUs for the actors plus the read and write tasks.
        needed = options.workers * options.cpus_per_worker + 2 * IO_TASK_CPUS
        kwargs["num_cpus"] = max(os.cpu_count() or 1, int(np.ceil(needed)))  # GPUs: as Ray detects them
    else:
        kwargs["address"] = options.address
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UsageError(f"--address {options.address}: cannot join the Ray cluster: {e}") from e
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


def _clsrun_cause(e: BaseException) -> ClsrunError | None:
    """The clsrun error behind a Ray exception (Ray wraps task errors, sometimes twice), if any."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [e]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ClsrunError):
            return cur
        stack += [getattr(cur, "cause", None), cur.__cause__, cur.__context__]
    return None


def _output_target(out: str) -> tuple[pafs.FileSystem, str, str]:
    """``(filesystem, path, format)`` of OUT: a folder whose extension picks the parts' format."""
    fs, path, _ = _filesystem(out)
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


def _check_exactly_once(files: InputFiles, totals: dict[int, _FileTally]) -> None:
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


def score_with_ray(
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    bundle: str | Path | None = None,
    options: RayOptions | None = None,
) -> RayScoreResult:
    """Score every row of ``inputs`` on Ray into the folder ``out_dir`` (parts + ``_manifest.json``).

    ``inputs``: a file, a folder, a glob, or a list of them, local or on any filesystem pyarrow supports
    (``s3://``, ``gs://``, ``hdfs://``). ``bundle``: a bundle folder, None for the default model. The
    output format comes from ``out_dir``'s extension (``scores.csv/`` -> CSV parts), Parquet without one.
    OUT appears only when every row has been scored and written; a failed job leaves nothing behind.
    """
    options = options or RayOptions()
    options.check()
    ray = _import_ray()  # a missing extra is the first thing a user hears about
    so = options.score
    files = resolve_inputs(inputs)
    out_fs, out_path, kind = _output_target(str(out_dir))
    if isinstance(files.filesystem, pafs.LocalFileSystem):
        # Whole-file problems of the first file (missing column, wrong format) exit 2 before the model
        # loads; every other file is checked the same way by its read task, before any output is published.
        open_records(files.paths[0], so.text_col, so.id_col, so.max_text_bytes)

    from clsrun.runtime.classifier import Classifier

    # The bundle is loaded and checked here, on the driver: a bundle that cannot load fails the job now,
    # before any Ray task starts or any output exists (in an actor, Ray would restart it again and again).
    driver_device = "cpu" if options.worker_device == "cuda" else options.device
    clf = Classifier.load(bundle, options.backend, options.precision, driver_device, threads=1)
    described = clf.describe()
    loaded = clf.bundle
    labels = list(clf.labels)
    del clf

    started_ray = _connect(ray, options)
    staging = f"{out_path}.tmp-{uuid.uuid4().hex[:12]}"
    context = ray.data.DataContext.get_current()
    saved = (
        context.execution_options.preserve_order,
        context.enable_progress_bars,
        context.target_max_block_size,
    )
    try:
        _check_resources(ray, options)
        ship = options.ship_bundle if options.ship_bundle is not None else options.address is not None
        ref = _BundleRef(
            str(loaded.root.resolve()), loaded.digest, ray.put(_pack_bundle(loaded)) if ship else None
        )
        several = len(files) > 1 and so.id_col is None
        schema = output_schema(labels, so.probs, text_ids=so.id_col is not None or several)
        context.execution_options.preserve_order = options.preserve_order
        context.enable_progress_bars = not options.quiet
        context.target_max_block_size = options.block_bytes
        out_fs.create_dir(staging, recursive=True)
        t0 = time.perf_counter()
        ds = ray.data.read_datasource(
            _datasource(files, so),
            override_num_blocks=len(files),  # one block stream per file: no re-splitting of blocks
            num_cpus=IO_TASK_CPUS,
        )
        ds = ds.map_batches(
            _ScoreActor,
            fn_constructor_args=(ref, options, files.names if several else None),
            batch_size=1,  # one window per call: results stream out window by window
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=options.workers),
            num_cpus=options.cpus_per_worker,
            num_gpus=options.gpus_per_worker or None,
        )
        sink = _datasink(staging, out_fs, kind, schema)
        try:
            ds.write_datasink(sink, ray_remote_args={"num_cpus": IO_TASK_CPUS})
        except Exception as e:
            cause = _clsrun_cause(e)
            if cause is not None:
                raise cause from None
            raise
        wall = time.perf_counter() - t0
        manifest = _manifest(files, sink.results, described, options, kind, wall, str(out_dir))
        atomic_or_fs_write(
            out_fs, f"{staging}/{MANIFEST}", json.dumps(manifest, indent=2, ensure_ascii=False)
        )
        _publish(out_fs, staging, out_path)
        return RayScoreResult(str(out_dir), manifest)
    finally:
        (
            context.execution_options.preserve_order,
            context.enable_progress_bars,
            context.target_max_block_size,
        ) = saved
        _remove(out_fs, staging)
        if started_ray:
            ray.shutdown()


def atomic_or_fs_write(fs: pafs.FileSystem, path: str, text: str) -> None:
    """Write a small text file: atomically on a local disk, as one object elsewhere."""
    if isinstance(fs, pafs.LocalFileSystem):
        atomic_write_text(Path(path), text + "\n")
        return
    with fs.open_output_stream(path) as f:
        f.write((text + "\n").encode("utf-8"))


def _manifest(
    files: InputFiles,
    results: list[dict[str, Any]],
    described: dict[str, Any],
    options: RayOptions,
    kind: str,
    wall: float,
    output: str,
) -> dict[str, Any]:
    """Counts that add up: per file, per part and in total; checked before anything is published."""
    totals: dict[int, _FileTally] = {}
    parts = []
    for r in results:
        if r.get("part"):
            parts.append({"file": r["part"], "rows": r["rows"]})
        for k, v in r["files"].items():
            totals.setdefault(int(k), _FileTally()).add(_FileTally(**v))
    _check_exactly_once(files, totals)
    rows = sum(t.rows for t in totals.values())
    if rows != sum(p["rows"] for p in parts):
        raise InternalError(f"parts hold {sum(p['rows'] for p in parts)} rows, files {rows}")
    so = options.score
    empty = _FileTally()
    several = len(files) > 1 and so.id_col is None
    return {
        "clsrun_version": __version__,
        "engine": "ray",
        "input": [str(u) for u in files.uris] if len(files) > 1 else files.uris[0],
        "output": output,
        "format": kind,
        "rows_read": rows,
        "ok": sum(t.ok for t in totals.values()),
        "error": sum(t.error for t in totals.values()),
        "files": [
            {"input": uri, "rows": t.rows, "ok": t.ok, "error": t.error}
            for uri, t in ((u, totals.get(i, empty)) for i, u in enumerate(files.uris))
        ],
        "parts": sorted(parts, key=lambda p: p["file"]),
        "ids": "id-col" if so.id_col else ("file:row" if several else "row"),
        "bundle": described["bundle"],
        "bundle_digest": described["bundle_digest"],
        "backend": described["backend"],
        "precision": described["precision"],
        "device": options.worker_device if options.worker_device != "auto" else described["device"],
        "threads": options.worker_threads,
        "variant_file": described["file"],
        "ray": {
            "address": options.address or "local",
            "workers": options.workers,
            "cpus_per_worker": options.cpus_per_worker,
            "gpus_per_worker": options.gpus_per_worker,
            "preserve_order": options.preserve_order,
        },
        "options": {
            "text_col": so.text_col,
            "id_col": so.id_col,
            "probs": so.probs,
            "window": so.window,
            "block_bytes": options.block_bytes,
        },
        "wall_s": round(wall, 3),
        "rows_per_s": round(rows / wall, 1) if wall > 0 else 0.0,
    }
