"""The three Ray-side stages of ``--engine ray``: read tasks, the model actor, write tasks.

Each stage wraps the local engine's code, never a second implementation of it:

    read task   ``FileReader``: one per input file; ``readers.open_records`` (per-row errors) and
                ``batching.windows``; one Ray row per scoring window, so Ray's block shaping never splits one
    actor       ``ScoreActor``: ``Classifier`` loaded once per actor; prepare -> infer -> finish per window,
                the same windows and so the same batches as the local engine
    write task  ``make_datasink``: one part file per task with ``writers.open_writer``, written under a
                temporary name and renamed, so a task Ray retries replaces its part instead of adding one

The scored rows carry private columns (file, row, last-window flag) to the write tasks, which count
them per input file (:class:`FileTally`) so the driver can prove every row arrived exactly once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from clsrun.runtime import delimited, tables
from clsrun.runtime.batching import BatchOptions, windows
from clsrun.runtime.bundle import SPEC_FILE, Bundle
from clsrun.runtime.errors import BundleError, ClsrunError, InputError
from clsrun.runtime.files import atomic_fs_write
from clsrun.runtime.input_files import ReadOptions
from clsrun.runtime.ray_engine.inputs import InputFiles, local_copy
from clsrun.runtime.readers import RecordChunk, open_records
from clsrun.runtime.row_errors import count_reasons
from clsrun.runtime.variant import Variant
from clsrun.runtime.writers import open_writer

# Private columns; never written to the output. A window row (reader -> actor) has all of them, the
# scored rows (actor -> writer) FILE_COL, ROW_COL, LAST_COL and VARIANT_COL next to the output columns.
FILE_COL = "_clsrun_file"  # int32: index of the input file in sorted order
ROW_COL = "_clsrun_row"  # int64: 0-based row number in that file (a window: of its first row)
LAST_COL = "_clsrun_last"  # bool: in its file's last window (lets the driver check that no tail is lost)
VARIANT_COL = "_clsrun_variant"  # dictionary<string>: what the actor ran (JSON), for the manifest
TRUNCATED_COL = "_clsrun_truncated"  # bool: the row's text was cut to the model's maximum length
TEXTS_COL = "_clsrun_texts"  # list<string>: a window's texts, null where the reader found a per-row error
ERRORS_COL = "_clsrun_errors"  # list<string>: the reader's per-row errors, "" when fine
IDS_COL = "_clsrun_ids"  # list<string>: the --id-col values (only with --id-col)
PART_EXT = {"csv": ".csv", "tsv": ".tsv", "jsonl": ".jsonl", "parquet": ".parquet"}


def _window_row(chunk: RecordChunk, file_index: int, last: bool) -> pa.Table:
    """One scoring window of one file as a one-row table (a Ray row)."""
    cols: dict[str, pa.Array] = {
        FILE_COL: pa.array([file_index], type=pa.int32()),
        ROW_COL: pa.array([chunk.start], type=pa.int64()),
        LAST_COL: pa.array([last], type=pa.bool_()),
        TEXTS_COL: pa.array([list(chunk.texts)], type=pa.list_(pa.string())),
        ERRORS_COL: pa.array([chunk.errors], type=pa.list_(pa.string())),
    }
    if chunk.ids is not None:
        cols[IDS_COL] = pa.array([chunk.ids], type=pa.list_(pa.string()))
    return pa.table(cols)


def window_of(row: dict[str, Any]) -> RecordChunk:
    """The window a Ray row holds, as the ``RecordChunk`` the ``Classifier`` takes."""
    return RecordChunk(row[ROW_COL], row.get(IDS_COL), row[TEXTS_COL], row[ERRORS_COL])


@dataclass(frozen=True)
class FileReader:
    """Reads one input file into its scoring windows, aligned as the local engine aligns them."""

    fs: pafs.FileSystem
    path: str
    uri: str
    index: int
    read: ReadOptions
    window: int  # rows per scoring window (BatchOptions.window)

    def __call__(self) -> Iterator[pa.Table]:
        with local_copy(self.fs, self.path) as local, _said_by_driver(self.fs):
            try:
                with open_records(local, self.read) as stream:  # closed before the local copy goes
                    held: RecordChunk | None = None
                    for window in windows(stream.chunks(), self.window):
                        if held is not None:
                            yield _window_row(held, self.index, last=False)
                        held = window
                    if held is not None:
                        yield _window_row(held, self.index, last=True)
            except InputError as e:  # name the user's file, not the temporary copy
                raise InputError(str(e).replace(str(local), self.uri)) from None


@contextlib.contextmanager
def _said_by_driver(fs: pafs.FileSystem) -> Iterator[None]:
    """The reader's file-level warnings (a tab-separated .csv, a text column of numbers) off in a read task
    of a local file: the driver opened every local file before the job and said them once (each task's
    copy came again, under Ray's coloured worker prefix)."""
    if not isinstance(fs, pafs.LocalFileSystem):
        yield
        return
    # The column checks (numbers as texts) and the delimited-file sniffer (the tab-separated .csv warning)
    # each log as their module.
    loggers = [logging.getLogger(module.__name__) for module in (tables, delimited)]
    levels = [one.level for one in loggers]
    for one in loggers:
        one.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for one, level in zip(loggers, levels, strict=True):
            one.setLevel(level)


def _metadata(cls: Any, size: int | None, uri: str) -> Any:
    """``BlockMetadata`` of a read task; Ray releases before 2.4x also want an (unknown) schema."""
    fields = {"num_rows": None, "size_bytes": size, "input_files": (uri,), "exec_stats": None}
    try:
        return cls(**fields)
    except TypeError:
        return cls(**fields, schema=None)


def make_datasource(files: InputFiles, read: ReadOptions, window: int) -> Any:
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
                reader = FileReader(files.filesystem, path, uri, i, read, window)
                meta = _metadata(BlockMetadata, size, uri)
                tasks.append(ReadTask(reader, meta))
            return tasks

    return ClsrunFiles()


# -- the model actor -------------------------------------------------------------------------------
@dataclass(frozen=True)
class BundleRef:
    """Where an actor finds the bundle: its folder when present with the same digest, else shipped bytes."""

    root: str
    digest: str
    files: Any = None  # ray.ObjectRef of {relative path: bytes}, or None


def pack_bundle(bundle: Bundle) -> dict[str, bytes]:
    """The bundle's verified files and ``clsrun.json`` as bytes, to ship to nodes that lack the folder."""
    return {rel: bundle.path(rel).read_bytes() for rel in [SPEC_FILE, *bundle.files]}


def _bundle_here(ref: BundleRef, scratch: list[tempfile.TemporaryDirectory[str]]) -> Path:
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


@dataclass(frozen=True)
class ActorConfig:
    """What every model actor needs: where the bundle is, which variant to run, how to score."""

    bundle: BundleRef
    variant: Variant  # what each actor runs (device and threads already set for the actor)
    batching: BatchOptions
    probs: bool  # --probs
    id_names: list[str] | None  # several files without --id-col: ids are "<file>:<row>"


class ScoreActor:
    """A Ray actor: loads the ``Classifier`` once, then scores window rows one window at a time.

    The windows are the local engine's windows, so every batch holds the same rows as in a local run
    and gives the same numbers (dynamic int8 quantisation, for one, depends on the batch).
    """

    def __init__(self, config: ActorConfig) -> None:
        # A clsrun error while the model loads (no GPU on this node, a bundle damaged since the driver checked
        # it) is kept and raised by the first call: an actor that dies while it starts is logged by Ray with a
        # page of traceback on stderr (some 300 lines), where a failed call is one task error, which the
        # driver turns into the error's own line and exit code (engine._clsrun_cause).
        self._failed: ClsrunError | None = None
        try:
            self._load(config)
        except ClsrunError as e:
            self._failed = e

    def _load(self, config: ActorConfig) -> None:
        from clsrun.runtime.classifier import Classifier

        self._scratch: list[tempfile.TemporaryDirectory[str]] = []
        root = _bundle_here(config.bundle, self._scratch)
        self.clf = Classifier.load(root, config.variant, config.batching)
        self.probs = config.probs
        self.id_names = config.id_names
        described = self.clf.describe()  # what this actor runs: its node may differ from the driver's
        keys = ("backend", "precision", "device", "threads", "file")
        self.variant = json.dumps({k: described[k] for k in keys}, sort_keys=True)

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self._failed is not None:
            raise self._failed
        return pa.concat_tables([self._score(row) for row in batch.to_pylist()])

    def _score(self, row: dict[str, Any]) -> pa.Table:
        window = window_of(row)
        prepared = self.clf.prepare(window)
        cut = np.zeros(len(prepared), dtype=bool)
        cut[prepared.valid] = prepared.tokens.truncated  # the manifest's "truncated", as the local engine's
        table = self.clf.finish(self.clf.infer(prepared), with_probs=self.probs)
        n = table.num_rows
        if self.id_names is not None:
            name = self.id_names[row[FILE_COL]]
            ids = pa.array([f"{name}:{r}" for r in range(window.start, window.start + n)], type=pa.string())
            table = table.set_column(0, pa.field("id", pa.string()), ids)
        table = table.append_column(FILE_COL, pa.array(np.full(n, row[FILE_COL], dtype=np.int32)))
        table = table.append_column(
            ROW_COL, pa.array(np.arange(window.start, window.start + n, dtype=np.int64))
        )
        table = table.append_column(LAST_COL, pa.array(np.full(n, row[LAST_COL], dtype=bool)))
        table = table.append_column(TRUNCATED_COL, pa.array(cut))
        variant = pa.DictionaryArray.from_arrays(np.zeros(n, dtype=np.int32), pa.array([self.variant]))
        return table.append_column(VARIANT_COL, variant)


# -- write tasks -----------------------------------------------------------------------------------
@dataclass
class FileTally:
    """Rows of one input file seen by one write task: enough to prove every row arrived exactly once."""

    rows: int = 0
    ok: int = 0
    error: int = 0
    truncated: int = 0  # rows whose text was cut to the model's maximum length
    row_sum: int = 0
    row_min: int = -1
    row_max: int = -1
    last_row: int = -1  # last row of the file's last window, when this task wrote it

    def add(self, other: FileTally) -> None:
        self.rows += other.rows
        self.ok += other.ok
        self.error += other.error
        self.truncated += other.truncated
        self.row_sum += other.row_sum
        mins = [m for m in (self.row_min, other.row_min) if m >= 0]
        self.row_min = min(mins) if mins else -1
        self.row_max = max(self.row_max, other.row_max)
        self.last_row = max(self.last_row, other.last_row)


def _tally(table: pa.Table) -> dict[int, FileTally]:
    files = table.column(FILE_COL).to_numpy()
    rows = table.column(ROW_COL).to_numpy()
    last = table.column(LAST_COL).to_numpy(zero_copy_only=False)
    ok = np.asarray(table.column("status").to_pylist(), dtype=object) == "ok"
    cut = table.column(TRUNCATED_COL).to_numpy(zero_copy_only=False)
    out: dict[int, FileTally] = {}
    for f in np.unique(files):
        mask = files == f
        r = rows[mask]
        tail = r[last[mask]]
        out[int(f)] = FileTally(
            rows=int(mask.sum()),
            ok=int(ok[mask].sum()),
            error=int((~ok[mask]).sum()),
            truncated=int(cut[mask].sum()),
            row_sum=int(r.sum()),
            row_min=int(r.min()),
            row_max=int(r.max()),
            last_row=int(tail.max()) if len(tail) else -1,
        )
    return out


def _write_part(table: pa.Table, schema: pa.Schema, kind: str, fs: pafs.FileSystem, target: str) -> None:
    """Write ``table`` to ``target`` under a temporary name, then rename (``files.atomic_fs_write``).

    A task that Ray retries replaces its part and never leaves half of one; the temporary file of a
    killed attempt is removed by the driver before it publishes the output.
    """

    def write(local: Path) -> None:
        writer = open_writer(local, schema, kind)
        try:
            writer.write(table)
        finally:
            writer.close()

    atomic_fs_write(fs, target, write)


def empty_part(staging: str, fs: pafs.FileSystem, kind: str, schema: pa.Schema) -> dict[str, Any]:
    """For a job whose inputs hold no rows: one part of no rows with the output's columns (a header in
    CSV), as the local engine writes an empty file, so a reader finds the columns (it found none); the
    write result the manifest lists it by."""
    name = f"part-00000{PART_EXT[kind]}"
    _write_part(schema.empty_table(), schema, kind, fs, f"{staging}/{name}")
    return {"part": name, "rows": 0, "files": {}, "variants": [], "reasons": {}}


def make_datasink(staging: str, fs: pafs.FileSystem, kind: str, schema: pa.Schema) -> Any:
    """A Ray Data datasink writing one part file per write task with the local engine's writers."""
    from ray.data.block import BlockAccessor
    from ray.data.datasource import Datasink

    class ClsrunParts(Datasink):
        def __init__(self) -> None:
            self.results: list[dict[str, Any]] = []

        def get_name(self) -> str:
            return "WriteClsrun"

        def write(self, blocks: Any, ctx: Any) -> dict[str, Any]:
            tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
            tables = [t for t in tables if t.num_rows]
            if not tables:
                return {"part": None, "rows": 0, "files": {}, "variants": []}
            table = pa.concat_tables(tables)
            tally = _tally(table)
            name = f"part-{ctx.task_idx:05d}{PART_EXT[kind]}"
            data = table.select(schema.names).cast(schema)
            _write_part(data, schema, kind, fs, f"{staging}/{name}")
            variants = pc.unique(table.column(VARIANT_COL).cast(pa.string())).to_pylist()
            return {
                "part": name,
                "rows": table.num_rows,
                "files": {k: vars(v) for k, v in tally.items()},
                "variants": variants,
                "reasons": count_reasons(table.column("error")),
            }

        def on_write_complete(self, write_result: Any) -> None:
            # A WriteResult since Ray 2.4x; before that, the list of write() returns itself.
            returns = getattr(write_result, "write_returns", write_result)
            self.results = [r for r in returns if r]

    return ClsrunParts()
