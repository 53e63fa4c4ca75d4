"""Reading input files: CSV, TSV, JSONL and Parquet, each optionally gzip-compressed, chosen by extension.

The runtime streams files in record chunks through :func:`open_records` (never the whole file in memory),
following Spark's PERMISSIVE mode: every physical record (a CSV/TSV row, a JSON line, a Parquet row)
becomes exactly one row, in place. A record that cannot be read (wrong number of fields, over the size
cap, not JSON, text not UTF-8) is an error row with the reason; only a file that cannot be parsed at all
(no header, no text column, a quote still open at the end) is an :class:`InputError`, raised before
anything is published. The trainer reads a whole labelled file through ``labelled.read_labelled``, which
leaves such records out and says how many on stderr.

Files are opened once, read synchronously by the thread that iterates and closed by it; pyarrow parses
bytes already in memory, or owns (and closes) the files it opens itself. No pyarrow reader can still be
reading a file descriptor this module closes (issue 17; ``delimited.py`` says how that went wrong).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from clsrun.runtime.columns import (
    arrow_ids,
    bytes_as_text,
    one_array,
    parquet_ids,
    row_group_batches,
    texts_and_errors,
    textual,
    utf8_or_bytes,
)
from clsrun.runtime.delimited import Block, RecordBlocks
from clsrun.runtime.errors import ClsrunError, InputError, resource_error
from clsrun.runtime.fingerprint import input_fingerprint, written_to
from clsrun.runtime.input_files import (
    READ_ERRORS,
    ReadOptions,
    csv_header,
    detect_format,
    first_line,
    open_bytes,
    parquet_file,
    require_file,
)
from clsrun.runtime.json_lines import capped_lines, decode_json_line, json_row, refuse_json_array
from clsrun.runtime.tables import NUMBERS_SAMPLE, columns_said, require_unique_columns, warn_numbers_as_texts


def _id_before_text(names: list[str], text_col: str, id_col: str | None) -> int | None:
    """The id column's position when it comes before the text column: a record with the wrong number of
    fields keeps its id then (:class:`RecordBlocks`); None otherwise."""
    if id_col is None or names.index(id_col) > names.index(text_col):
        return None
    return names.index(id_col)


@dataclass
class RecordChunk:
    """A run of consecutive input rows as the scorer needs them.

    A row with a per-row problem keeps its place: its text is None and ``errors[i]`` says why.
    """

    start: int  # 0-based row number of the first row in the file
    ids: list[str | None] | None  # --id-col values as text; None when row numbers are the ids
    texts: Sequence[str | None]  # None where the row has an error (a list, or the Arrow column: ArrowTexts)
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


_Rows = tuple[Sequence[str | None], list[str | None] | None, list[str], int | None]
"""One chunk from a format's reader: texts, ids, errors, and the bytes of the file on disk read so far
through this chunk (compressed bytes for ``.gz``; None for Parquet, whose progress counts rows)."""


class RecordStream:
    """A file opened for streaming; whole-file problems are raised by the constructor, before any model loads.

    The constructor checks the format and the columns and parses the first chunk, so a missing text
    column, a wrong format or a damaged start of file is an :class:`InputError` at once. Problems found
    later in the file (a truncated gzip stream, a quote never closed) raise :class:`InputError` while
    iterating. :meth:`progress` says how far the reading got, for a progress bar on another thread.
    Close it (or use it as a context manager) to release the file before reading it to the end.
    """

    def __init__(self, path: Path | str, options: ReadOptions = ReadOptions()) -> None:
        self.path = Path(path)
        require_file(self.path)
        self.format = detect_format(self.path)
        options.check()
        try:  # before the first byte is read: what the rows come from, checked again before they are published
            self.fingerprint = input_fingerprint(self.path)
        except FileNotFoundError as e:
            raise InputError(f"{self.path}: file not found") from e
        self.options = options
        self.text_col, self.id_col = options.text_col, options.id_col
        # Blocks hold a typical record whole, so it takes the fast path (a longer one is still read).
        self.block_bytes = max(options.block_bytes, options.max_text_bytes + (1 << 16))
        self.rows_read = 0
        self._size = int(self.fingerprint["size"])
        self._known_rows: int | None = None  # Parquet: the row count in the file's metadata
        self._progress = ReadProgress(0, 0.0, None, False)  # replaced whole, so other threads see one state
        self._raw: Iterator[_Rows] = iter(())
        try:
            self._raw = self._open_raw()
            self._first = self._pull()
            if self._first is not None:
                sample = self._first.texts[:NUMBERS_SAMPLE]
                warn_numbers_as_texts(self.path, sample, self.text_col, " of the first rows")
        except InputError as e:
            self.close()
            raise self._changed_or(e) from e
        except BaseException:
            self.close()
            raise

    def _changed_or(self, error: InputError) -> InputError:
        """``error``, unless the file was written to or removed since its fingerprint was taken: then that
        is the cause (a copy over it truncates it first: "empty file" would send the user the wrong way)."""
        if not self.path.exists():
            return InputError(f"{self.path}: file not found (removed while it was being opened)")
        head = written_to(self.path, self.fingerprint, "opened")
        return error if head is None else InputError(f"{head}; score it again once it is complete")

    # -- public ------------------------------------------------------------------------------------
    def first_texts(self, n: int) -> list[str]:
        """Up to ``n`` texts of the first rows read (those with a text): what checks before scoring look at."""
        if self._first is None:
            return []
        return [t for t in self._first.texts[:n] if t is not None]

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

    def close(self) -> None:
        """Close the file now (reading to the end closes it too).

        A no-op while another thread is inside a read of this stream (a reader the scoring pipeline left
        behind once stopping, ``pipeline.STOP_GRACE_S``): that thread alone reads the file, and closes it
        when its read returns.
        """
        close = getattr(self._raw, "close", None)
        if close is None:
            return
        with contextlib.suppress(ValueError):  # "generator already executing" (on the other thread)
            close()

    def __enter__(self) -> RecordStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------------
    def _fail(self, e: BaseException) -> ClsrunError:
        short = resource_error(e)  # out of file descriptors or memory: not the file's fault
        if short is not None:
            return short
        where = f" after its first {self.rows_read} rows" if self.rows_read else ""
        return InputError(f"{self.path}: cannot be read as {self.format.kind}{where}: {first_line(e)}")

    def _missing(self, names: list[str]) -> None:
        wanted = [c for c in (self.text_col, self.id_col) if c is not None]
        missing = [c for c in wanted if c not in names]
        if missing:
            quoted = self.format.kind == "tsv" and any(f'"{c}"' in names for c in missing)
            hint = " (the header is quoted: --tsv-quotes reads quoted .tsv cells)" if quoted else ""
            raise InputError(
                f"{self.path}: no column {', '.join(repr(c) for c in missing)}; columns are "
                f"{columns_said(self.path, names)} (choose with --text-col / --id-col){hint}"
            )
        require_unique_columns(self.path, names, wanted)

    def _open_raw(self) -> Iterator[_Rows]:
        try:
            if self.format.kind == "parquet":
                return self._parquet()
            if self.format.kind == "jsonl":
                return self._jsonl()
            return self._csv()
        except InputError:
            raise
        except READ_ERRORS as e:
            raise self._fail(e) from e

    def _pull(self) -> RecordChunk | None:
        try:
            item = next(self._raw, None)
        except InputError:
            raise
        except READ_ERRORS as e:
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

    # -- CSV / TSV ---------------------------------------------------------------------------------
    def _csv(self) -> Iterator[_Rows]:
        with contextlib.ExitStack() as files:
            f, on_disk = open_bytes(self.path, self.format.gzip, files)
            header = csv_header(f, self.path, self.format, self.options)
            self._missing(header.names)
            columns = list(dict.fromkeys(c for c in (self.text_col, self.id_col) if c is not None))
            # Read as bytes and decoded per chunk, so one row that is not UTF-8 does not fail the chunk.
            blocks = RecordBlocks(
                f, self.path, header, columns, pa.binary(), self.block_bytes, self.options.record_cap,
                id_at=_id_before_text(header.names, self.text_col, self.id_col),
            )  # fmt: skip
            # Bytes on disk through a block: exact for a plain file (header, BOM included, plus the
            # block's end); for .gz the compressed bytes read, at most one read ahead of the rows.
            header_bytes = on_disk() - len(header.rest)
            disk = (lambda end: on_disk()) if self.format.gzip else (lambda end: header_bytes + end)
            return self._csv_chunks(files.pop_all(), blocks, disk, on_disk)

    def _csv_chunks(
        self,
        files: contextlib.ExitStack,
        blocks: RecordBlocks,
        disk: Callable[[int], int],
        on_disk: Callable[[], int],
    ) -> Iterator[_Rows]:
        with files:
            for block in blocks:
                yield (*self._block_rows(block), disk(block.end))
            self._require_read_whole(on_disk())

    def _require_read_whole(self, read: int) -> None:
        """Refuse a text file whose end came at another byte than the size it had when opened: it was cut
        under the reader, and perhaps written again to the same bytes (``> in.csv`` by an upstream job, then
        its rows): the reader saw an early end, a record cut in two and no more rows, and the check before
        publishing found the same size and ends. Its rows would be published as the whole file's."""
        if read != self._size:
            raise InputError(
                f"{self.path}: was written to while it was being read (its end came at byte {read:,}; it held "
                f"{self._size:,} bytes when opened); score it again once it is complete"
            )

    def _block_rows(self, block: Block) -> tuple[Sequence[str | None], list[str | None] | None, list[str]]:
        """A block's rows, its bad records put back in place as error rows naming their row."""
        texts, errors = texts_and_errors(
            one_array(block.table.column(self.text_col)), self.options.max_text_bytes
        )
        ids = (
            arrow_ids(one_array(block.table.column(self.id_col)), text=True)
            if self.id_col is not None
            else None
        )
        if not block.bad:
            return texts, ids, errors
        texts = list(texts)  # rows are put back one by one: Python strings from here
        bad = {b.index: b for b in block.bad}
        good = iter(range(len(texts)))
        out_t: list[str | None] = []
        out_i: list[str | None] = []
        out_e: list[str] = []
        for pos in range(block.records):
            if (b := bad.get(pos)) is not None:  # its id where the record still has it (RecordBlocks)
                out_t.append(None)
                out_i.append(None if b.id is None else bytes_as_text(b.id))
                out_e.append(f"row {self.rows_read + pos}: {b.reason}")
                continue
            k = next(good)
            out_t.append(texts[k])
            out_i.append(None if ids is None else ids[k])
            out_e.append(errors[k])
        return out_t, out_i if ids is not None else None, out_e

    # -- Parquet -----------------------------------------------------------------------------------
    def _parquet(self) -> Iterator[_Rows]:
        import pyarrow.parquet as pq  # only for Parquet: it is a tenth of pyarrow's import time

        with contextlib.ExitStack() as files:
            local = files.enter_context(parquet_file(self.path, self.format.gzip))
            pf = pq.ParquetFile(local)  # pyarrow opens the path and closes it once no reader holds it
            self._known_rows = pf.metadata.num_rows
            self._progress = ReadProgress(0, 0.0, self._known_rows, True)
            schema = pf.schema_arrow
            self._missing(schema.names)
            kind = schema.field(self.text_col).type
            if not textual(kind):
                raise InputError(f"{self.path}: column {self.text_col!r} holds {kind}, not text")
            id_kind = schema.field(self.id_col).type if self.id_col is not None else None
            if id_kind is not None and pa.types.is_nested(id_kind):  # an id is one value, written as text
                raise InputError(
                    f"{self.path}: column {self.id_col!r} holds {id_kind}; an id column holds text or numbers"
                )
            columns = list(dict.fromkeys(c for c in (self.text_col, self.id_col) if c is not None))
            batches = row_group_batches(pf, columns, max(1024, self.block_bytes // 128), self.block_bytes)
            return self._parquet_chunks(files.pop_all(), batches)

    def _parquet_chunks(
        self, files: contextlib.ExitStack, batches: Iterable[pa.RecordBatch]
    ) -> Iterator[_Rows]:
        with files:  # a .parquet.gz's unpacked copy goes when the stream is read or closed
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                text = utf8_or_bytes(batch.column(self.text_col))
                texts, errors = texts_and_errors(text, self.options.max_text_bytes)
                ids = None if self.id_col is None else parquet_ids(batch.column(self.id_col))
                yield texts, ids, errors, None

    # -- JSONL -------------------------------------------------------------------------------------
    def _jsonl(self) -> Iterator[_Rows]:
        # pyarrow.json has no streaming reader, and one bad line must not fail its neighbours: lines are
        # read in blocks and parsed one by one with the standard library.
        with contextlib.ExitStack() as files:
            f, on_disk = open_bytes(self.path, self.format.gzip, files)
            blocks = capped_lines(f, self.block_bytes, self.options.record_cap)
            lines: list[bytes | None] = []
            for block in blocks:  # up to the first line under the size cap: the one to check the file by
                lines += block
                if any(ln is not None for ln in block):
                    break
            if not lines:  # an empty file (or only blank lines): no records, no columns to check
                self._require_read_whole(on_disk())
                return iter(())
            if any(ln is not None for ln in lines):  # (only over-cap lines: nothing to check them by)
                self._check_json_fields(lines)
            # on_disk(): bytes of the file on disk read so far; for .gz the compressed bytes, at most one
            # read of the decompressor (8 to 128 KiB, by Python version) ahead of the lines handed out.
            return self._jsonl_chunks(files.pop_all(), blocks, lines, on_disk)

    def _check_json_fields(self, lines: list[bytes | None]) -> None:
        """Refuse a file whose first block holds no JSON object, or no object with the columns asked for, or
        that starts as a JSON array (a ``.json`` document of records, pretty-printed or not).

        Per line, a missing field is an error row; a field that no line of the first block has is a
        wrong --text-col / --id-col (or not JSON Lines at all), and that is worth stopping for.
        """
        refuse_json_array(self.path, lines)
        objects = []
        first_error = ""
        for line in lines:
            try:
                obj = decode_json_line(line) if line is not None else None
            except (ValueError, RecursionError) as e:
                first_error = first_error or f"the first line is not JSON ({e})"
                continue
            if isinstance(obj, dict):
                objects.append(obj)
        if not objects:
            raise InputError(f"{self.path}: not JSON Lines: {first_error or 'no line is a JSON object'}")
        found = set().union(*objects)
        if self.text_col not in found or (self.id_col is not None and self.id_col not in found):
            self._missing([k for k in objects[0] if k in found] + sorted(found - set(objects[0])))

    def _jsonl_chunks(
        self,
        files: contextlib.ExitStack,
        blocks: Iterator[list[bytes | None]],
        lines: list[bytes | None],
        position: Callable[[], int],
    ) -> Iterator[_Rows]:
        over = f"a line over the {self.options.record_cap}-byte size cap (skipped while reading)"
        with files:
            for block in itertools.chain([lines], blocks):
                end = position()
                rows = [
                    json_row(ln, self.text_col, self.id_col, self.options.max_text_bytes)
                    if ln is not None
                    else (None, None, f"row {self.rows_read + i}: {over}")
                    for i, ln in enumerate(block)
                ]
                ids = [r[1] for r in rows] if self.id_col is not None else None
                yield [r[0] for r in rows], ids, [r[2] for r in rows], end
            self._require_read_whole(position())


def open_records(path: Path | str, options: ReadOptions = ReadOptions()) -> RecordStream:
    """Open ``path`` for streaming; raises :class:`InputError` at once for whole-file problems."""
    return RecordStream(path, options)
