"""Reading input files: CSV, TSV, JSONL and Parquet, each optionally gzip-compressed, chosen by extension.

The runtime streams files in record chunks through :func:`open_records` (never the whole file in memory),
with per-row errors kept in place; the trainer reads a whole labelled file through :func:`read_labelled`.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from clsrun.runtime.errors import InputError

FORMATS = ("csv", "tsv", "jsonl", "parquet")
DEFAULT_MAX_TEXT_BYTES = 1 << 20  # 1 MiB: one "text" bigger than this is a broken row, not a review
DEFAULT_BLOCK_BYTES = 1 << 20  # bytes parsed per chunk: bounds memory, large enough to amortise overhead


@dataclass(frozen=True)
class ReadOptions:
    """How an input file is read: which columns, and the limits that make a row an error row."""

    text_col: str = "text"  # --text-col: the column (or JSON field) holding the text
    id_col: str | None = None  # --id-col: copied to the output's id; None: ids are 0-based row numbers
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES  # a longer text is a per-row error
    block_bytes: int = DEFAULT_BLOCK_BYTES  # bytes read and parsed at a time: bounds memory, amortises calls


@dataclass(frozen=True)
class FileFormat:
    """What a path's extension says: the table format and whether it is gzip-compressed."""

    kind: str  # one of FORMATS
    gzip: bool


def detect_format(path: Path | str) -> FileFormat:
    """Format from the extension (``.csv``, ``.tsv``, ``.jsonl``, ``.parquet``, each optionally ``.gz``)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    if gz:
        suffixes = suffixes[:-1]
    ext = suffixes[-1].lstrip(".") if suffixes else ""
    if ext == "json":
        ext = "jsonl"
    if ext not in FORMATS:
        raise InputError(
            f"{path}: unknown file type {ext or '(none)'!r}; use .csv, .tsv, .jsonl or .parquet (optionally .gz)"
        )
    if ext == "parquet" and gz:
        raise InputError(f"{path}: .parquet.gz is not supported; parquet compresses internally")
    return FileFormat(ext, gz)


def read_table(path: Path | str) -> pa.Table:
    """Read a whole file into an Arrow table with every column as a string (training and eval data)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    fmt = detect_format(path)
    try:
        if fmt.kind == "parquet":
            return pq.read_table(path)
        if fmt.kind == "jsonl":
            with pa.input_stream(str(path), compression="gzip" if fmt.gzip else None) as f:
                return pajson.read_json(f)
        delimiter = "\t" if fmt.kind == "tsv" else ","
        # autogenerate no column types: every column is read as a string, so ids like "007" survive.
        convert = pacsv.ConvertOptions(strings_can_be_null=False, auto_dict_encode=False)
        with pa.input_stream(str(path), compression="gzip" if fmt.gzip else None) as f:
            header = pacsv.read_csv(
                f,
                read_options=pacsv.ReadOptions(block_size=1 << 24),  # a block must hold whole rows
                parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                convert_options=convert,
            ).schema
        types = {name: pa.string() for name in header.names}
        with pa.input_stream(str(path), compression="gzip" if fmt.gzip else None) as f:
            return pacsv.read_csv(
                f,
                parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
            )
    except (pa.ArrowInvalid, OSError, EOFError) as e:
        raise InputError(f"{path}: cannot be read as {fmt.kind}: {str(e).splitlines()[0]}") from e


@dataclass
class LabelledData:
    """Texts and their labels (as strings), in file order."""

    texts: list[str]
    labels: list[str]


def read_labelled(path: Path | str, text_col: str = "text", label_col: str = "label") -> LabelledData:
    """Read a labelled file for training or evaluation.

    Rows whose text or label is empty or null are dropped (a model cannot learn from them); labels are
    read as strings so ``0``/``1`` and ``neg``/``pos`` both work.
    """
    table = read_table(path)
    missing = [c for c in (text_col, label_col) if c not in table.column_names]
    if missing:
        raise InputError(
            f"{path}: no column {', '.join(repr(c) for c in missing)}; columns are {', '.join(table.column_names)}"
        )
    texts = table.column(text_col).to_pylist()
    labels = table.column(label_col).to_pylist()
    keep_t: list[str] = []
    keep_l: list[str] = []
    for t, y in zip(texts, labels, strict=True):
        if t is None or y is None:
            continue
        t = str(t)
        y = str(y)
        if t.strip() and y.strip():
            keep_t.append(t)
            keep_l.append(y.strip())
    if not keep_t:
        raise InputError(f"{path}: no rows with both a text and a label")
    return LabelledData(keep_t, keep_l)


def iter_texts(path: Path | str, text_col: str = "text") -> Iterator[str | None]:
    """Texts of a file in order (whole-file read; the streaming scorer uses its own chunked reader)."""
    table = read_table(path)
    if text_col not in table.column_names:
        raise InputError(f"{path}: no column {text_col!r}; columns are {', '.join(table.column_names)}")
    yield from table.column(text_col).to_pylist()


# --------------------------------------------------------------------------------------------------
# Streaming reader for scoring: record chunks, per-row errors, whole-file problems found before scoring.
# --------------------------------------------------------------------------------------------------

_READ_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, EOFError, zlib.error, ValueError)


@dataclass
class RecordChunk:
    """A run of consecutive input rows as the scorer needs them.

    A row with a per-row problem keeps its place: its text is None and ``errors[i]`` says why.
    """

    start: int  # 0-based row number of the first row in the file
    ids: list[str | None] | None  # --id-col values as text; None when row numbers are the ids
    texts: list[str | None]  # None where the row has an error
    errors: list[str]  # "" when the row is fine, else the reason it cannot be scored

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class ReadProgress:
    """How far a :class:`RecordStream` has read its file: :meth:`RecordStream.progress`, from any thread.

    CSV, TSV and JSONL files say how many rows they hold only once read to the end, so until then
    ``total_rows`` is an estimate: the rows read so far over the fraction of the file's bytes on disk
    (compressed bytes for ``.gz``) that held them. Parquet's row count is in its metadata: exact at once.
    """

    rows: int  # rows read from the start of the file (the rows a --resume run skips are read too)
    fraction: float  # 0..1 of the file read: bytes on disk for CSV/TSV/JSONL, rows for Parquet
    total_rows: int | None  # the file's rows: exact when ``exact``, else rows / fraction; None before any row
    exact: bool  # total_rows is the true count (Parquet metadata, or the whole file read)


_Rows = tuple[list[str | None], list[str | None] | None, list[str], int | None]
"""One chunk from a format's reader: texts, ids, errors, and the bytes of the file on disk read so far
through this chunk (compressed bytes for ``.gz``; None for Parquet, whose progress counts rows)."""


def _gzip_ratio(path: Path, sample: int = 1 << 20) -> float:
    """Compressed bytes per decompressed byte at the start of a gzip file (its first MiB, read once)."""
    with open(path, "rb") as f:
        head = f.read(sample)
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing
    try:
        produced = len(inflate.decompress(head, 16 * sample))  # bounded: a MiB of zeros inflates 1000-fold
    except zlib.error:
        return 1.0  # a damaged start: the reader itself reports it
    consumed = len(head) - len(inflate.unconsumed_tail) - len(inflate.unused_data)
    return consumed / produced if produced else 1.0


def _mark(texts: list[str | None], errors: list[str], mask: np.ndarray, reason: str) -> None:
    """Set ``reason`` on the rows of ``mask`` that do not already have an error."""
    for i in np.flatnonzero(mask):
        if not errors[i]:
            errors[i] = reason
            texts[i] = None


def _arrow_texts(arr: pa.Array, max_bytes: int) -> tuple[list[str | None], list[str]]:
    """Texts and per-row errors of a string or binary Arrow column, vectorised except for bad rows."""
    n = len(arr)
    errors = [""] * n
    if pa.types.is_null(arr.type):
        return [None] * n, ["null text"] * n
    binary = pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)
    nbytes = pc.binary_length(arr).to_numpy(zero_copy_only=False)  # (n,) float with nan for nulls
    texts: list[str | None]
    try:
        strings = arr.cast(pa.string()) if binary else arr  # the cast validates UTF-8 for the whole chunk
        texts = strings.to_pylist()
    except pa.ArrowInvalid:
        # Some row is not UTF-8: decode row by row so only that row fails.
        texts = []
        for i, raw in enumerate(arr.to_pylist()):
            try:
                texts.append(None if raw is None else raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                texts.append(None)
                errors[i] = f"undecodable bytes (not UTF-8) at byte {e.start}"
        strings = pa.array(texts, type=pa.string())
    _mark(texts, errors, np.asarray(arr.is_null()), "null text")
    _mark(texts, errors, np.nan_to_num(nbytes) > max_bytes, f"text over the {max_bytes}-byte size cap")
    blank = pc.equal(pc.binary_length(pc.utf8_trim_whitespace(strings)), 0)
    _mark(texts, errors, np.asarray(blank.fill_null(False)), "empty or whitespace-only text")
    return texts, errors


def _arrow_ids(arr: pa.Array) -> list[str | None]:
    """An id column as text (ids are written back unchanged, so ``007`` stays ``007``)."""
    if pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
        return [None if b is None else b.decode("utf-8", errors="replace") for b in arr.to_pylist()]
    return arr.cast(pa.string()).to_pylist()


def _json_row(
    line: bytes, text_col: str, id_col: str | None, max_bytes: int
) -> tuple[str | None, str | None, str]:
    """``(text, id, error)`` of one JSONL line."""
    try:
        obj = json.loads(line)
    except UnicodeDecodeError as e:
        return None, None, f"undecodable bytes (not UTF-8) at byte {e.start}"
    except ValueError as e:
        return None, None, f"invalid JSON: {e}"
    if not isinstance(obj, dict):
        return None, None, f"line is a JSON {type(obj).__name__}, not an object"
    rid = obj.get(id_col) if id_col else None
    rid_text = None if rid is None else rid if isinstance(rid, str) else json.dumps(rid)
    if text_col not in obj:
        return None, rid_text, f"no {text_col!r} field"
    value = obj[text_col]
    if value is None:
        return None, rid_text, "null text"
    if not isinstance(value, str):
        return None, rid_text, f"text is a JSON {type(value).__name__}, not a string"
    if len(value) * 4 > max_bytes and len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        return None, rid_text, f"text over the {max_bytes}-byte size cap"
    if not value.strip():
        return None, rid_text, "empty or whitespace-only text"
    return value, rid_text, ""


class RecordStream:
    """A file opened for streaming; whole-file problems are raised by the constructor, before any model loads.

    The constructor checks the format and the columns and parses the first chunk, so a missing text
    column, a wrong format or a damaged start of file is an :class:`InputError` at once. Problems found
    later in the file (a truncated gzip stream) raise :class:`InputError` while iterating.
    :meth:`progress` says how far the reading got, for a progress bar on another thread.
    """

    def __init__(
        self,
        path: Path | str,
        text_col: str = "text",
        id_col: str | None = None,
        max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: file not found")
        self.format = detect_format(self.path)
        self.text_col = text_col
        self.id_col = id_col
        self.max_text_bytes = max_text_bytes
        self.block_bytes = max(block_bytes, max_text_bytes + (1 << 16))  # a row must fit in one block
        self.rows_read = 0
        self._size = self.path.stat().st_size
        self._known_rows: int | None = None  # Parquet: the row count in the file's metadata
        self._progress = ReadProgress(0, 0.0, None, False)  # replaced whole, so other threads see one state
        self._raw = self._open_raw()
        self._first = self._pull()

    # -- public ------------------------------------------------------------------------------------
    def chunks(self, skip: int = 0) -> Iterator[RecordChunk]:
        """Yield the file's chunks in order, leaving out its first ``skip`` rows (resume). Single use."""
        chunk = self._first
        self._first = None
        while chunk is not None:
            end = chunk.start + len(chunk)
            if end > skip:
                cut = max(0, skip - chunk.start)
                if cut:
                    chunk = RecordChunk(
                        chunk.start + cut,
                        None if chunk.ids is None else chunk.ids[cut:],
                        chunk.texts[cut:],
                        chunk.errors[cut:],
                    )
                yield chunk
            chunk = self._pull()

    def progress(self) -> ReadProgress:
        """How far the file has been read (updated once per chunk by the thread that reads it)."""
        return self._progress

    # -- internals ---------------------------------------------------------------------------------
    def _fail(self, e: BaseException) -> InputError:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        where = f" after row {self.rows_read}" if self.rows_read else ""
        return InputError(f"{self.path}: cannot be read as {self.format.kind}{where}: {first}")

    def _missing(self, names: list[str]) -> None:
        wanted = [c for c in (self.text_col, self.id_col) if c is not None]
        missing = [c for c in wanted if c not in names]
        if missing:
            raise InputError(
                f"{self.path}: no column {', '.join(repr(c) for c in missing)}; columns are "
                f"{', '.join(repr(n) for n in names) or '(none)'} (choose with --text-col / --id-col)"
            )

    def _open_raw(self) -> Iterator[_Rows]:
        try:
            if self.format.kind == "parquet":
                return self._parquet()
            if self.format.kind == "jsonl":
                return self._jsonl()
            return self._csv()
        except InputError:
            raise
        except _READ_ERRORS as e:
            raise self._fail(e) from e

    def _pull(self) -> RecordChunk | None:
        try:
            item = next(self._raw, None)
        except InputError:
            raise
        except _READ_ERRORS as e:
            raise self._fail(e) from e
        if item is None:
            self._progress = ReadProgress(self.rows_read, 1.0, self.rows_read, True)
            return None
        texts, ids, errors, consumed = item
        chunk = RecordChunk(self.rows_read, ids, texts, errors)
        self.rows_read += len(texts)
        self._progress = self._progressed(consumed)
        return chunk

    def _progressed(self, consumed: int | None) -> ReadProgress:
        rows, known = self.rows_read, self._known_rows
        if known is not None:
            return ReadProgress(rows, min(1.0, rows / known) if known else 1.0, known, True)
        fraction = min(1.0, (consumed or 0) / self._size) if self._size else 1.0
        return ReadProgress(rows, fraction, round(rows / fraction) if fraction > 0 else None, False)

    def _stream(self) -> tuple[pa.NativeFile, pa.NativeFile]:
        """The (decompressed) stream to parse and the file on disk under it."""
        # A plain OSFile: ``pa.input_stream`` adds a buffering layer under which the CSV reader held about
        # 70 MB of read-ahead for 2 MiB blocks, against about 15 MB here.
        raw = pa.OSFile(str(self.path), "rb")
        return (pa.CompressedInputStream(raw, "gzip") if self.format.gzip else raw), raw

    def _csv(self) -> Iterator[_Rows]:
        parse = pacsv.ParseOptions(
            delimiter="\t" if self.format.kind == "tsv" else ",", newlines_in_values=True
        )
        read = pacsv.ReadOptions(block_size=self.block_bytes, use_threads=False)
        with self._stream()[0] as probe:
            names = pacsv.open_csv(probe, read_options=read, parse_options=parse).schema.names
        self._missing(names)
        # In a one-column file an empty line is a row with an empty text (a null written by most CSV
        # writers), so it must stay a row; with several columns an empty line is not a row at all.
        parse = pacsv.ParseOptions(
            delimiter=parse.delimiter, newlines_in_values=True, ignore_empty_lines=len(names) > 1
        )
        columns = list(dict.fromkeys(c for c in (self.text_col, self.id_col) if c is not None))
        # The text is read as bytes and decoded per chunk, so one bad row does not fail the file;
        # strings_can_be_null=False keeps an empty cell as "" (an error row), never a parse failure.
        convert = pacsv.ConvertOptions(
            include_columns=columns,
            column_types={c: pa.binary() for c in columns},
            strings_can_be_null=False,
        )
        source, raw = self._stream()
        reader = pacsv.open_csv(source, read_options=read, parse_options=parse, convert_options=convert)
        return self._arrow_chunks(reader, source, self._csv_consumed(raw))

    def _csv_consumed(self, raw: pa.NativeFile) -> Callable[[int], int]:
        """Bytes on disk up to the end of the ``k``-th (0-based) batch of pyarrow's CSV reader.

        pyarrow reads ``block_bytes`` at a time on an I/O thread of its own, some 30 blocks ahead of the
        batches it hands out, so the file's position runs ahead of the rows. But each block becomes one
        batch, in order: batch ``k`` ends ``k + 1`` blocks into the (decompressed) text. For ``.gz`` that
        is turned into compressed bytes with the compression ratio of the file's start. Both are capped
        at the position, which the rows cannot be past. (A Python stream that noted each block's position
        would be exact, but pyarrow would call it from its I/O thread, and a process that exits during
        such a call aborts.)
        """
        ratio = _gzip_ratio(self.path) if self.format.gzip else 1.0
        return lambda k: min(round((k + 1) * self.block_bytes * ratio), raw.tell())

    def _parquet(self) -> Iterator[_Rows]:
        pf = pq.ParquetFile(self.path)
        self._known_rows = pf.metadata.num_rows
        self._progress = ReadProgress(0, 0.0, self._known_rows, True)
        schema = pf.schema_arrow
        self._missing(schema.names)
        kind = schema.field(self.text_col).type
        textual = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
        if not any(is_kind(kind) for is_kind in (*textual, pa.types.is_null)):
            raise InputError(f"{self.path}: column {self.text_col!r} holds {kind}, not text")
        columns = list(dict.fromkeys(c for c in (self.text_col, self.id_col) if c is not None))
        rows = max(1024, self.block_bytes // 128)
        return self._arrow_chunks(pf.iter_batches(batch_size=rows, columns=columns), pf, None)

    def _arrow_chunks(
        self, batches: Iterable[pa.RecordBatch], owner: Any, end_of: Callable[[int], int] | None
    ) -> Iterator[_Rows]:
        try:
            for k, batch in enumerate(batches):
                if batch.num_rows == 0:
                    continue
                texts, errors = _arrow_texts(batch.column(self.text_col), self.max_text_bytes)
                ids = _arrow_ids(batch.column(self.id_col)) if self.id_col else None
                yield texts, ids, errors, None if end_of is None else end_of(k)
        finally:
            close = getattr(owner, "close", None)
            if close is not None:
                close()

    def _jsonl(self) -> Iterator[_Rows]:
        # pyarrow.json has no streaming reader, and one bad line must not fail its neighbours: lines are
        # read in blocks and parsed one by one with the standard library.
        with contextlib.ExitStack() as files:
            raw = files.enter_context(open(self.path, "rb"))
            f = (
                cast(IO[bytes], files.enter_context(gzip.GzipFile(fileobj=raw, mode="rb")))
                if self.format.gzip
                else raw
            )
            lines = self._next_lines(f)
            if not lines:  # an empty file (or only blank lines): no records, no columns to check
                return iter(())
            try:
                first = json.loads(lines[0])
            except ValueError as e:
                raise InputError(f"{self.path}: not JSON Lines: the first line is not JSON ({e})") from e
            if not isinstance(first, dict):
                raise InputError(f"{self.path}: not JSON Lines: the first line is not a JSON object")
            self._missing(list(first))
            # raw.tell(): bytes of the file on disk read so far; for .gz the compressed bytes, at most one
            # read of the decompressor (8 to 128 KiB, by Python version) ahead of the lines handed out.
            return self._jsonl_chunks(files.pop_all(), f, raw.tell, lines)

    def _jsonl_chunks(
        self, files: contextlib.ExitStack, f: IO[bytes], position: Callable[[], int], lines: list[bytes]
    ) -> Iterator[_Rows]:
        with files:
            while lines:
                end = position()
                rows = [_json_row(ln, self.text_col, self.id_col, self.max_text_bytes) for ln in lines]
                texts = [r[0] for r in rows]
                ids = [r[1] for r in rows] if self.id_col else None
                yield texts, ids, [r[2] for r in rows], end
                lines = self._next_lines(f)

    def _next_lines(self, f: IO[bytes]) -> list[bytes]:
        """The next block's non-blank lines (blank lines are not records); empty only at end of file."""
        while block := f.readlines(self.block_bytes):
            lines = [ln for ln in block if ln.strip()]
            if lines:
                return lines
        return []


def open_records(path: Path | str, options: ReadOptions = ReadOptions()) -> RecordStream:
    """Open ``path`` for streaming; raises :class:`InputError` at once for whole-file problems."""
    return RecordStream(path, options.text_col, options.id_col, options.max_text_bytes, options.block_bytes)
