"""Reading input files: CSV, TSV, JSONL and Parquet, each optionally gzip-compressed, chosen by extension.

The runtime streams files in record chunks through :func:`open_records` (never the whole file in memory),
following Spark's PERMISSIVE mode: every physical record (a CSV/TSV row, a JSON line, a Parquet row)
becomes exactly one row, in place. A record that cannot be read (wrong number of fields, over the size
cap, not JSON, text not UTF-8) is an error row with the reason; only a file that cannot be parsed at all
(no header, no text column, a quote still open at the end) is an :class:`InputError`, raised before
anything is published. The trainer reads a whole labelled file through :func:`read_labelled`, which
leaves such records out and says how many on stderr.

Files are opened once, read synchronously by the thread that iterates and closed by it; pyarrow parses
bytes already in memory, or owns (and closes) the files it opens itself. No pyarrow reader can still be
reading a file descriptor this module closes (issue 17; ``delimited.py`` says how that went wrong).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import gzip
import io
import itertools
import json
import logging
import math
import os
import re
import tempfile
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clsrun.runtime.arrow_texts import ArrowTexts
from clsrun.runtime.bundle import has_control
from clsrun.runtime.delimited import BOM, Block, Header, RecordBlocks, read_header
from clsrun.runtime.errors import InputError, UsageError, clipped, storage_error
from clsrun.runtime.files import LINK_LOOP, non_utf8_name, resolved
from clsrun.runtime.fingerprint import input_fingerprint, written_to
from clsrun.runtime.row_errors import not_utf8_hint
from clsrun.runtime.textnorm import readable

log = logging.getLogger(__name__)

FORMATS = ("csv", "tsv", "jsonl", "parquet")
DEFAULT_MAX_TEXT_BYTES = 1 << 20  # 1 MiB: one "text" bigger than this is a broken row, not a review
DEFAULT_BLOCK_BYTES = 1 << 20  # bytes parsed per chunk: bounds memory, large enough to amortise overhead
DELIMITER_NAMES = {"comma": ",", "tab": "\t", "\\t": "\t", "semicolon": ";", "pipe": "|"}


@dataclass(frozen=True)
class ReadOptions:
    """How an input file is read: which columns, and the limits that make a row an error row."""

    text_col: str = "text"  # --text-col: the column (or JSON field) holding the text
    id_col: str | None = None  # --id-col: copied to the output's id; None: ids are 0-based row numbers
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES  # a longer text is a per-row error
    # --delimiter: CSV/TSV field separator. None: the extension's (',' or tab), unless only another of
    # , tab ; | splits the header into the columns asked for (said on stderr)
    delimiter: str | None = None
    # --tsv-quotes: a .tsv cell may be "quoted" (tabs, newlines inside). Off: '"' is an ordinary
    # character, so a cell that opens a quote and never closes it cannot swallow the lines after it
    tsv_quotes: bool = False
    block_bytes: int = DEFAULT_BLOCK_BYTES  # bytes read and parsed at a time: bounds memory, amortises calls
    # a longer CSV/TSV record or JSON line is one error row, skipped while reading (memory stays about
    # block_bytes + this); None: 4 x max_text_bytes + 64 KiB (room for escapes and the other columns)
    max_record_bytes: int | None = None

    @property
    def record_cap(self) -> int:
        return self.max_record_bytes or 4 * self.max_text_bytes + (1 << 16)

    def check(self) -> None:
        """Raise :class:`UsageError` naming the flag of every bad value."""
        problems = []
        if self.delimiter is not None and (len(self.delimiter) != 1 or self.delimiter in '"\r\n'):
            problems.append(f"--delimiter {self.delimiter!r}: must be one character (or comma, tab, ...)")
        if self.max_text_bytes <= 0:
            problems.append(f"--max-text-bytes {self.max_text_bytes}: must be positive")
        if self.max_record_bytes is not None and self.max_record_bytes < self.max_text_bytes:
            problems.append(f"max_record_bytes {self.max_record_bytes}: must hold a text of max_text_bytes")
        if problems:
            raise UsageError("; ".join(problems))


def parse_delimiter(value: str | None) -> str | None:
    """A ``--delimiter`` value as one character: ``tab``, ``\\t``, ``comma``, ``semicolon``, ``pipe`` or itself."""
    if value is None:
        return None
    return DELIMITER_NAMES.get(value.lower(), value)


@dataclass(frozen=True)
class FileFormat:
    """What a path's extension says: the table format and whether it is gzip-compressed."""

    kind: str  # one of FORMATS
    gzip: bool


def _why_missing(path: Path) -> str:
    """Why ``path`` names no file: not there, a link to nothing, or links that point at each other."""
    if resolved(path) is None:
        return LINK_LOOP
    if path.is_symlink():
        return f"file not found (a symbolic link to {os.readlink(path)}, which does not exist)"
    return "file not found"


def require_file(path: Path) -> None:
    """Refuse an input that is not a regular file, saying what it is instead.

    A pipe or device (``<(zcat x.gz)``, a named pipe) can be read once only, and a run reads its input's
    head and size before scoring (format, columns, the fingerprint ``--resume`` checks), so clsrun asks
    for a file; a compressed one (``.csv.gz``) needs no unpacking first.
    """
    bad_name = non_utf8_name(path)
    if bad_name is not None:
        raise InputError(
            f"{bad_name}: the file's name is not valid UTF-8; rename it (or link to it by a UTF-8 name)"
        )
    if path.is_file():
        return
    if str(path) == "-":
        raise InputError(
            "-: clsrun does not read standard input (it reads its input more than once); save it to a file"
        )
    if not path.exists():
        raise InputError(f"{path}: {_why_missing(path)}")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a file")
    raise InputError(
        f"{path}: not a regular file (a pipe or a device); clsrun reads an input file more than once: "
        "save the stream to a file first"
    )


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
            f"{path}: unknown file type {ext or '(none)'!r}; use .csv, .tsv, .jsonl (or .json, read as JSON "
            "Lines) or .parquet (optionally .gz)"
        )
    return FileFormat(ext, gz)


@contextlib.contextmanager
def _parquet_file(path: Path, gz: bool) -> Iterator[Path | IO[bytes]]:
    """``path`` itself, or for ``.parquet.gz`` its content unpacked into a temporary file without a name.

    Why a file: Parquet is read from its end (the footer) and by column chunk, which a gzip stream cannot
    give; unpacking streams in 1 MiB pieces, so memory stays flat whatever the file's size. Why no name
    (``TemporaryFile``: unlinked at once, or never linked): a named copy outlived a process killed outright,
    a whole copy of the input in $TMPDIR per killed attempt. pyarrow reads the open file object.
    """
    if not gz:
        yield path
        return
    with open(path, "rb") as head:
        _require_gzip(path, head.read(2))
    with tempfile.TemporaryFile(prefix="clsrun-", suffix=".parquet") as tmp:
        with gzip.open(path, "rb") as packed:
            while chunk := packed.read(1 << 20):  # a read error is the input's: InputError by the caller
                _unpacked_write(tmp, chunk, path)
        _unpacked_write(tmp, b"", path)
        tmp.seek(0)
        yield tmp


def _require_gzip(path: Path, start: bytes) -> None:
    """Refuse a ``.gz`` file that does not start as gzip does: gzip's own words were ``Not a gzipped file
    (b'te')``. An empty file is left to the reader (no records)."""
    if start and start != b"\x1f\x8b"[: len(start)]:
        plain = path.with_suffix("").name
        raise InputError(f"{path}: its name ends in .gz, but it is not gzip-compressed: name it {plain}")


def _unpacked_write(tmp: IO[bytes], chunk: bytes, path: Path) -> None:
    """Write (or, for an empty chunk, flush) a piece of the unpacked copy; a failure is the temporary
    folder's (full, over quota, read-only), named as such, not a fault of the input."""
    try:
        if chunk:
            tmp.write(chunk)
        else:
            tmp.flush()
    except OSError as e:
        where = f"{tempfile.gettempdir()} (unpacking {path.name} into the temporary folder, $TMPDIR)"
        error = storage_error(e, where)
        if error is None:
            raise
        raise error from e


# Exceptions that mean the file's bytes are not what its extension says (or cannot be read): each becomes
# an InputError naming the file. ArrowKeyError (a KeyError) and ArrowTypeError are here too: pyarrow
# raises them for a column it cannot find or convert, which is the file's fault, not clsrun's.
_READ_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowKeyError,
    pa.ArrowTypeError,
    pa.ArrowIndexError,
    pa.ArrowNotImplementedError,
    OSError,
    EOFError,
    zlib.error,
    ValueError,
    csv.Error,  # the header line, split by the standard library's reader
)


def _open_bytes(path: Path, gz: bool, files: contextlib.ExitStack) -> tuple[IO[bytes], Callable[[], int]]:
    """The (decompressed) bytes of ``path`` and how far into the file on disk the reading got.

    Plain Python files, read only by the thread that iterates: closing them (``files``) is always safe.
    """
    raw = files.enter_context(open(path, "rb"))  # noqa: SIM115 (closed by ``files``)
    if not gz:
        _refuse_binary(path, raw)
        return raw, raw.tell
    _require_gzip(path, raw.peek(2)[:2])
    unpacked = cast(IO[bytes], files.enter_context(gzip.GzipFile(fileobj=raw, mode="rb")))
    _refuse_binary(path, unpacked, unpacked=True)  # what a .gz holds is checked as a plain file's bytes are
    return unpacked, raw.tell


# The first bytes of files a text reader would otherwise take for a table with one odd column name.
_BINARY_STARTS = {
    b"\x1f\x8b": "gzip-compressed, but its name does not end in .gz: rename it to end in .gz",
    b"PK\x03\x04": "a zip archive: unzip it first (.gz is read as it is)",
    b"\x28\xb5\x2f\xfd": "zstd-compressed: decompress it first (.gz is read as it is)",
    b"\xfd7zXZ\x00": "xz-compressed: decompress it first (.gz is read as it is)",
}
_BZIP2_START = re.compile(rb"BZh[1-9]1AY&SY")  # the signature, then the first block's magic number
_PARQUET_MAGIC = b"PAR1"  # at both ends of a Parquet file


def _wide_encoding(start: bytes) -> str | None:
    """``UTF-16``/``UTF-32`` (``UTF-16LE``/``BE`` without a byte order mark, as iconv names them) when a
    file's first bytes are in one of them (its byte order mark, or ASCII with a zero byte beside every
    character, as Windows tools write "Unicode" text), else None. Read as UTF-8 such a file is a header of
    odd column names and rows of undecodable bytes."""
    if start.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "UTF-32"
    if start.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16"
    if len(start) >= 8 and start[0] and not any(start[1:8:2]) and all(start[0:8:2]):
        return "UTF-16LE"  # without a byte order mark: "i\0d\0,\0"
    if len(start) >= 8 and start[1] and not any(start[0:8:2]) and all(start[1:8:2]):
        return "UTF-16BE"
    return None


def _refuse_binary(path: Path, raw: IO[bytes], unpacked: bool = False) -> None:
    """An InputError when ``raw`` (a file opened at its start) is a compressed or a Parquet file, or text
    in UTF-16 or UTF-32. ``unpacked``: ``raw`` is what a ``.gz`` file holds (a UTF-16 file gzipped was read
    as text, every byte pair a row)."""
    start = cast(io.BufferedReader, raw).peek(16)[:16]
    this = "once decompressed, this .gz file is" if unpacked else "this file is"
    if unpacked and start.startswith(b"\x1f\x8b"):
        raise InputError(f"{path}: this file is gzip-compressed twice: decompress it once first (gunzip)")
    for magic, what in _BINARY_STARTS.items():
        if start.startswith(magic):
            raise InputError(f"{path}: {this} {what}")
    wide = _wide_encoding(start)
    if wide is not None:
        inner = Path(path.stem) if unpacked else path  # data.csv of data.csv.gz
        plain = f"{inner.stem}.utf8{inner.suffix}"
        command = (
            f"gunzip -c {path} | iconv -f {wide} -t UTF-8" if unpacked else f"iconv -f {wide} -t UTF-8 {path}"
        )
        raise InputError(
            f"{path}: {this} {wide}-encoded text: convert it to UTF-8 first ({command} > {plain})"
        )
    if _BZIP2_START.match(start):
        raise InputError(f"{path}: {this} bzip2-compressed: decompress it first (.gz is read as it is)")
    if unpacked and start.startswith(_PARQUET_MAGIC):
        raise InputError(f"{path}: {this} a Parquet file: name it .parquet.gz")
    if start.startswith(_PARQUET_MAGIC):
        try:
            with open(path, "rb") as f:
                f.seek(-4, io.SEEK_END)
                tail = f.read(4)
        except OSError:  # shorter than 4 bytes, or not seekable (a pipe): not a Parquet file then
            return
        if tail == _PARQUET_MAGIC:
            raise InputError(f"{path}: this file is a Parquet file, but its name does not end in .parquet")


def _header(f: IO[bytes], path: Path, fmt: FileFormat, options: ReadOptions) -> Header:
    """The header of a CSV/TSV file; ``.tsv`` quotes only with ``--tsv-quotes``, ``.csv`` always."""
    default = "\t" if fmt.kind == "tsv" else ","
    quoting = fmt.kind == "csv" or options.tsv_quotes
    wanted = [c for c in (options.text_col, options.id_col) if c is not None]
    return read_header(f, path, default, options.delimiter, quoting, wanted, options.record_cap)


# --------------------------------------------------------------------------------------------------
# Whole files, for training and evaluation.
# --------------------------------------------------------------------------------------------------


def read_table(
    path: Path | str,
    options: ReadOptions = ReadOptions(),
    reads: Sequence[str] = (),
    said: list[str] | None = None,
) -> pa.Table:
    """Read a whole file into an Arrow table (CSV, TSV, JSONL: every column as a string).

    Records that cannot be read are left out, and one line on stderr says how many and why (training
    and evaluation have no row to keep them in), also appended to ``said`` when given (for a report); a
    file that cannot be parsed at all is an InputError, as is one where a column the caller ``reads`` is
    named twice.
    """
    path = Path(path)
    require_file(path)
    fmt = detect_format(path)
    options.check()
    try:
        if fmt.kind == "parquet":
            import pyarrow.parquet as pq  # only for Parquet: it is a tenth of pyarrow's import time

            with _parquet_file(path, fmt.gzip) as local:
                require_unique_columns(path, pq.read_schema(local).names, list(reads))
                return _utf8_cells(pq.read_table(local))  # pyarrow opens and closes the path itself
        with contextlib.ExitStack() as files:
            f, _ = _open_bytes(path, fmt.gzip, files)
            if fmt.kind == "jsonl":
                return _json_table(path, f, options, said, reads)
            header = _header(f, path, fmt, options)
            require_unique_columns(path, header.names, list(reads))
            return _delimited_table(path, f, header, options, said)
    except InputError:
        raise
    except _READ_ERRORS as e:
        raise InputError(f"{path}: cannot be read as {fmt.kind}: {_first_line(e)}") from e


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _left_out(path: Path, reasons: list[str], said: list[str] | None) -> None:
    if reasons:
        line = f"{path}: left out {len(reasons)} unreadable record(s), the first: {reasons[0]}"
        log.warning("%s", line)
        if said is not None:
            said.append(line)


def _delimited_table(
    path: Path, f: IO[bytes], header: Header, options: ReadOptions, said: list[str] | None
) -> pa.Table:
    """Every record of a CSV/TSV file, each column as strings. Read as bytes and decoded per column, as
    ``clsrun predict`` reads them: one cell that is not UTF-8 is a null there (its row is then left out by
    :func:`read_labelled` and counted), where reading the file as strings refused all of it."""
    names = list(dict.fromkeys(header.names))
    blocks = RecordBlocks(f, path, header, names, pa.binary(), options.block_bytes, options.record_cap)
    tables: list[pa.Table] = []
    reasons: list[str] = []
    row = 0
    for block in blocks:
        tables.append(pa.table({n: _decoded(block.table.column(n)) for n in block.table.column_names}))
        reasons += [f"row {row + bad.index}: {bad.reason}" for bad in block.bad]
        row += block.records
    _left_out(path, reasons, said)
    if not tables:
        return pa.table({n: pa.array([], type=pa.string()) for n in names})
    return pa.concat_tables(tables)


SHOWN_COLUMNS = 20  # column names a "no column" message shows; a header of thousands is not a message


def columns_said(path: Path | str, names: Sequence[str]) -> str:
    """A file's column names for a message: at most :data:`SHOWN_COLUMNS`, each clipped (a 2 MB header line
    of binary bytes was one 4.4 MB line on stderr), and the encoding hint when they are not UTF-8 (a GBK
    header's Chinese names were shown as replacement characters, with no word of why)."""
    shown = ", ".join(repr(clipped(n)) for n in names[:SHOWN_COLUMNS]) or "(none)"
    if len(names) > SHOWN_COLUMNS:
        shown += f", ... ({len(names):,} in all)"
    if any("\ufffd" in n for n in names):
        shown += f" ({not_utf8_hint(Path(path))})"
    return shown


def _not_utf8(path: Path | str) -> str:
    """``"; "`` and the encoding hint when the start of ``path`` (a text format) is not UTF-8, else ``""``.

    Training and evaluation read a cell that is not UTF-8 as missing and leave its row out (they have no row
    to keep the reason in): a GBK file said only "no rows with both a text and a label", where predict
    names the bytes and the fix."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt.kind == "parquet":
        return ""
    try:
        with contextlib.ExitStack() as files:
            start = _open_bytes(path, fmt.gzip, files)[0].read(1 << 16)
        codecs.utf_8_decode(start, "strict", False)  # not final: a character cut at the end is fine
    except UnicodeDecodeError:
        return f"; {not_utf8_hint(path)}"
    except (OSError, EOFError, zlib.error):
        return ""
    return ""


def _utf8_cells(table: pa.Table) -> pa.Table:
    """A Parquet table whose string columns hold only UTF-8: a value that is not is a null, as a CSV
    cell that is not is (:func:`_decoded`; its row is then left out and counted by :func:`read_labelled`).
    Unchecked, the first Python string made of it was "unexpected UnicodeDecodeError" (:func:`_utf8_or_bytes`)."""
    for i, column in enumerate(table.columns):
        try:
            column.validate(full=True)
        except pa.ArrowInvalid:
            as_bytes = pa.chunked_array([_utf8_or_bytes(c) for c in column.chunks])
            table = table.set_column(i, table.field(i).name, _decoded(as_bytes))
    return table


def _decoded(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A binary column as strings: at Arrow's speed when all of it is UTF-8, else value by value with a
    null for each value that is not."""
    try:
        return column.cast(pa.string())
    except pa.ArrowInvalid:
        return pa.chunked_array([pa.array([_utf8(v) for v in column.to_pylist()], pa.string())])


def refuse_json_array(path: Path, lines: list[bytes | None]) -> None:
    """Refuse a file that is one JSON array: a ``.json`` document of records (pretty-printed or on one
    line), whose lines are not records; read as JSON Lines, only its last element would be scored, the rest
    error rows. Its first line that is not blank starts with ``[`` and is either not JSON by itself (an
    array over several lines) or the only line. A complete array line followed by more lines is JSON Lines
    whose first record is not an object: an error row, as anywhere else in the file."""
    filled = [line.strip() for line in lines if line is not None and line.strip()]
    if not filled or not filled[0].startswith(b"["):
        return
    if len(filled) > 1:
        try:
            json.loads(filled[0])
            return  # a whole value on its own line: a record of JSON Lines (not an object)
        except (ValueError, RecursionError):
            pass
    raise InputError(
        f"{path}: a JSON array, not JSON Lines (one object per line); convert it first, "
        f"e.g. jq -c '.[]' {path.name} > {path.stem}.lines.jsonl"
    )


def _json_table(
    path: Path, f: IO[bytes], options: ReadOptions, said: list[str] | None, reads: Sequence[str] = ()
) -> pa.Table:
    """A JSON Lines file as a table of string columns. With ``reads``, only those fields become columns
    (a file with a key of its own on every line made one column per key: rows x keys of memory), and a
    record is left out when one of them is not valid Unicode (a lone surrogate escape, which no column can
    hold: it failed the whole file) — a field it does not read can hold anything."""
    rows: list[dict[str, Any]] = []
    reasons: list[str] = []
    seen: dict[str, None] = {}  # every field name met (the first thousand), for "no column X; columns are"
    for block, lines in enumerate(_capped_lines(f, options.block_bytes, options.record_cap)):
        if block == 0:
            refuse_json_array(path, lines)
        for line in lines:
            n = len(rows) + len(reasons)
            try:
                obj = decode_json_line(line) if line is not None else None
            except (ValueError, RecursionError) as e:
                reasons.append(f"row {n}: invalid JSON: {e}")
                continue
            if not isinstance(obj, dict):
                over = line is None
                reasons.append(f"row {n}: " + ("a line over the size cap" if over else "not a JSON object"))
                continue
            if len(seen) < 1000:
                seen.update(dict.fromkeys(obj))
            row = {k: _json_field(k, v, options.text_col) for k, v in obj.items() if not reads or k in reads}
            if not all(v is None or valid_unicode(v) for v in row.values()):
                reasons.append(
                    f"row {n}: not valid Unicode (bytes that are not UTF-8, or a lone surrogate such as \\ud800)"
                )
                continue
            rows.append(row)
    if not rows and reasons:
        raise InputError(f"{path}: not JSON Lines: no line is a JSON object ({reasons[0]})")
    _left_out(path, reasons, said)
    names = list(dict.fromkeys([k for k in seen if not reads or k in reads] + [k for r in rows for k in r]))
    table = pa.table({k: pa.array([r.get(k) for r in rows], type=pa.string()) for k in names})
    return table.replace_schema_metadata({_FIELDS: json.dumps(list(seen))})


_FIELDS = b"clsrun.fields"  # a JSON Lines table's metadata: the field names of the file (the first thousand)


def column_names(table: pa.Table) -> list[str]:
    """The file's column names: a JSON Lines table read for some fields only records the others too."""
    fields = (table.schema.metadata or {}).get(_FIELDS)
    return list(json.loads(fields)) if fields is not None else table.column_names


def _json_field(key: str, value: object, text_col: str) -> str | None:
    """A JSON field as the text column of a whole-file read: a string as it is; in the text column anything
    else is None (``clsrun predict`` makes such a row an error row: a number is no text to classify);
    elsewhere a number or boolean as JSON spells it (an id ``7``, a label ``true``) and an array or object
    None (no one value: a label ``[1, 2]`` is not a class)."""
    if isinstance(value, _NumberText):  # a number as written (an integer of any length is no error)
        return None if key == text_col else str(value)
    if isinstance(value, str) or value is None:
        return value
    if key == text_col or isinstance(value, (list, dict)):
        return None
    return json.dumps(value)


@dataclass
class LabelledData:
    """Texts and their labels (as strings), in file order; ``left_out`` says which rows were not kept."""

    texts: list[str]
    labels: list[str]
    left_out: list[str] = dataclasses.field(default_factory=list)  # what the warning said, for reports


def read_labelled(
    path: Path | str, text_col: str = "text", label_col: str = "label", options: ReadOptions | None = None
) -> LabelledData:
    """Read a labelled file for training or evaluation.

    Rows whose label is empty or null, or whose text has nothing readable (empty, or only spaces, controls
    and format characters: what ``clsrun predict`` refuses to score) are dropped, so a model is neither
    trained nor measured on rows predict would not score; labels are
    read as strings so ``0``/``1`` and ``neg``/``pos`` both work. ``options`` (its ``text_col`` is
    replaced by ``text_col``) sets the delimiter and limits.
    """
    options = dataclasses.replace(options or ReadOptions(), text_col=text_col)
    left_out: list[str] = []  # records that could not be read, then rows without a text or a label
    table = read_table(path, options, reads=(text_col, label_col), said=left_out)
    missing = [c for c in (text_col, label_col) if c not in table.column_names]
    if missing:
        raise InputError(
            f"{path}: no column {', '.join(repr(c) for c in missing)}; columns are "
            f"{columns_said(path, column_names(table))} (choose with --text-col / --label-col)"
        )
    if text_col == label_col:
        raise InputError(f"{path}: --text-col and --label-col both name column {text_col!r}")
    texts = _labelled_texts(path, table.column(text_col), text_col)
    kind = table.column(label_col).type
    if pa.types.is_nested(kind):  # a list or struct per row is no one class (JSON's arrays leave the row out)
        raise InputError(f"{path}: column {label_col!r} holds {kind}, not labels (one value per row)")
    labels = _cell_values(table.column(label_col))
    keep_t: list[str] = []
    keep_l: list[str] = []
    first_dropped: int | None = None
    controls = 0  # labels left out for a line end or other control character in them (``label_text``)
    for row, (t, raw) in enumerate(zip(texts, labels, strict=True)):
        y = label_text(raw)
        if t is not None and y and readable(t):  # the texts predict scores (``textnorm.readable``)
            keep_t.append(t)
            keep_l.append(y)
            continue
        controls += not y and isinstance(raw, str) and has_control(raw.strip())  # the label was the reason
        if first_dropped is None:
            first_dropped = row
    why = (
        f" ({controls} of them for a label holding a line end or other control character)" if controls else ""
    )
    if not keep_t:
        raise InputError(f"{path}: no rows with both a text and a label{why}{_not_utf8(path)}")
    if first_dropped is not None:  # scores and training then cover fewer rows than the file has: say so
        left_out.append(
            f"{path}: left out {len(texts) - len(keep_t)} row(s) without a readable text or a label{why}, "
            f"the first: row {first_dropped}{_not_utf8(path)}"
        )
        log.warning("%s", left_out[-1])
    _warn_case_twins(path, keep_l)
    warn_numbers_as_texts(path, keep_t, text_col)
    _warn_one_text(path, keep_t, text_col)
    return LabelledData(keep_t, keep_l, left_out)


def _labelled_texts(path: Path | str, column: pa.ChunkedArray, name: str) -> list[str | None]:
    """A labelled file's texts as ``clsrun predict`` reads them, so ``eval`` scores what ``predict`` would:
    a column of numbers is refused, binary is decoded as UTF-8 (a row that is not UTF-8 is None). JSON
    values that are not strings are None already (:func:`_json_table`)."""
    if not _textual(column.type):
        raise InputError(f"{path}: column {name!r} holds {column.type}, not text")
    return cast(list[str | None], _cell_values(column))


def _utf8(raw: bytes | None) -> str | None:
    try:
        return None if raw is None else raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _cell_values(column: pa.ChunkedArray) -> list[object]:
    """A column's values as Python objects, each spelt so that :func:`label_text` makes one label of it in
    every format: booleans ``true``/``false`` (as JSON writes them), float32 at its own shortest spelling
    (``0.1``, not ``0.10000000149011612``), decimals as the numbers they are (``1.50`` and ``1.5`` one
    label), binary as UTF-8 text (None where it is not UTF-8), dictionary and view columns decoded."""
    values: list[object] = []
    for chunk in column.chunks:
        chunk = _plain(chunk)
        kind = chunk.type
        if pa.types.is_boolean(kind) or (pa.types.is_floating(kind) and kind.bit_width < 64):
            chunk = chunk.cast(pa.float32()) if pa.types.is_float16(kind) else chunk
            values += chunk.cast(pa.string()).to_pylist()
        elif pa.types.is_decimal(kind):
            values += chunk.cast(pa.float64()).to_pylist()
        elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            values += [_utf8(v) for v in chunk.to_pylist()]
        else:
            values += chunk.to_pylist()
    return values


# Labels that mean "no label": NaN as JSON writes it (and whole-file reads turn into text) and as pandas does.
_NO_LABEL = frozenset({"NaN", "nan"})
# 1.0, 2., -3.00, +1.0: the same label as 1, 2, -3, +1 (the float's spelling goes, the rest stays as typed:
# +1 is the SVMlight spelling, and 01 a code; int() made +1.0 "1" beside +1, and 01.0 "1" beside 01)
_WHOLE_NUMBER = re.compile(r"[+-]?\d+\.0*")


def label_text(value: object) -> str | None:
    """A label as the string a bundle keeps: stripped; None for a missing one (null, NaN, blank) or one
    holding a control character.

    A whole number is one label however the file spelt it: ``1``, ``1.0`` and ``"1"`` are all ``"1"``
    (JSON and Parquet write floats for a column that once held a decimal point, and a class split in two
    trains badly, without a word); ``+1.0`` is ``+1`` and ``01.0`` is ``01``, as typed.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool):
        value = "true" if value else "false"
    # NFC: the same label typed on two systems (é as one code point or as e + accent) is one class
    text = unicodedata.normalize("NFC", str(value)).strip()
    if text in _NO_LABEL or has_control(text):
        return None  # a NUL or newline inside a label would be written into every output row: no label
    if _WHOLE_NUMBER.fullmatch(text):
        text = text.split(".")[0]
    return text or None


# A cell that is one number as CSV or JSON would spell it (an id, a price, a count): no text to classify.
_NUMBER_CELL = re.compile(r"\s*[-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?\s*")
NUMBERS_SHARE = 0.9  # texts that are numbers, at or above which the text column is probably the wrong one
COLUMN_WARN_MIN_ROWS = 10  # fewer texts than this say too little about a column to warn about it
NUMBERS_SAMPLE = 2000  # scoring looks at this many texts of the first chunk, not every row of the file


def warn_numbers_as_texts(
    path: Path | str, texts: Iterable[str | None], text_col: str, where: str = ""
) -> None:
    """One warning when (nearly) every text is a number: in a CSV file every column is text, so an id or
    count column named as the text (or the columns swapped) is scored, trained on and measured as digits."""
    present = [t for t in texts if t is not None]
    numbers = sum(1 for t in present if _NUMBER_CELL.fullmatch(t))
    if len(present) >= COLUMN_WARN_MIN_ROWS and numbers >= NUMBERS_SHARE * len(present):
        log.warning(
            "%s: %d of %d texts%s in column %r are numbers: is it the right column? Choose the text with --text-col",
            path, numbers, len(present), where, text_col,
        )  # fmt: skip


def _warn_one_text(path: Path | str, texts: list[str], text_col: str) -> None:
    """One warning when every row has the same text: a placeholder column named as the text (``x`` in every
    cell) trains a model that cannot tell rows apart and measures one that predicts one class."""
    if len(texts) >= COLUMN_WARN_MIN_ROWS and len(set(texts)) == 1:
        log.warning(
            "%s: every one of the %d texts in column %r is %r: is it the right column? Choose the text with "
            "--text-col",
            path, len(texts), text_col, clipped(texts[0]),
        )  # fmt: skip


def _warn_case_twins(path: Path | str, labels: list[str]) -> None:
    """One warning when two labels differ only in letter case (``neg``/``NEG``) or spell one number (``1``
    / ``+1`` / ``01``): kept apart as typed, but rarely meant."""
    by_fold: dict[str, set[str]] = {}
    for label in set(labels):
        by_fold.setdefault(_label_fold(label), set()).add(label)
    twins = [" / ".join(sorted(group)) for group in by_fold.values() if len(group) > 1]
    if twins:
        log.warning(
            "%s: labels that differ only in letter case, width or in how a number is written are separate "
            "classes: %s",
            path,
            "; ".join(sorted(twins)),
        )


def _label_fold(label: str) -> str:
    """What two labels have in common when they are the same class in all but spelling: letter case, width
    (``pos`` and full-width ``ｐｏｓ``, as an IME types it), or the value of a whole number (``+1``, ``01``, ``1``)."""
    label = unicodedata.normalize("NFKC", label)
    if _INTEGER_LABEL.fullmatch(label):
        return str(int(label.split(".")[0]))
    return label.casefold()


_INTEGER_LABEL = re.compile(r"[+-]?\d+(?:\.0*)?")  # 1, +1, 01, -0, 1.0


def require_unique_columns(path: Path | str, names: list[str], wanted: list[str]) -> None:
    """Refuse a file where a column clsrun reads is named twice: which one is meant cannot be known
    (CSV readers take the first, Parquet readers refuse it), and a guess would score the wrong text."""
    twice = [c for c in dict.fromkeys(wanted) if names.count(c) > 1]
    if twice:
        raise InputError(
            f"{path}: column {', '.join(repr(c) for c in twice)} is the name of more than one column; "
            "rename the copies so each name is unique"
        )


def iter_texts(path: Path | str, text_col: str = "text") -> Iterator[str | None]:
    """Texts of a file in order (whole-file read; the streaming scorer uses its own chunked reader)."""
    table = read_table(path, ReadOptions(text_col=text_col))
    if text_col not in table.column_names:
        raise InputError(
            f"{path}: no column {text_col!r}; columns are {columns_said(path, table.column_names)}"
        )
    yield from table.column(text_col).to_pylist()


# --------------------------------------------------------------------------------------------------
# Texts, ids and JSON lines: one record at a time where it must be, vectorised where it can be.
# --------------------------------------------------------------------------------------------------


def _row_group_batches(pf: Any, columns: list[str], rows: int, block_bytes: int) -> Iterator[pa.RecordBatch]:
    """The record batches of ``columns``, read a few row groups at a time.

    One ``iter_batches`` over the whole file held memory that grew with the file (pyarrow 26: 3 million rows
    in 100,000-row groups peaked at 835 MiB against 366 MiB for 100,000 rows; a call per group stays flat).
    Consecutive small groups share a call (10,000 groups of 10 rows are not 10,000 calls), and a group of
    huge texts is read in batches of about ``block_bytes`` of those columns rather than ``rows`` rows."""
    meta = pf.metadata
    wanted = set(columns)  # leaf columns by name: a nested column before them shifts the leaf indices
    group: list[int] = []
    held, per_row = 0, 1
    for i in range(meta.num_row_groups):
        info = meta.row_group(i)
        chunks = (info.column(j) for j in range(info.num_columns))
        size = sum(c.total_uncompressed_size for c in chunks if c.path_in_schema in wanted)
        per_row = max(per_row, size // max(1, info.num_rows))  # bytes of a row, the largest group's
        group.append(i)
        held += info.num_rows
        if held >= rows or i == meta.num_row_groups - 1:
            batch = max(1, min(rows, block_bytes // per_row))
            yield from pf.iter_batches(batch_size=batch, columns=columns, row_groups=group)
            group, held, per_row = [], 0, 1


def _parquet_ids(column: pa.Array) -> list[str | None]:
    """A Parquet id column as text: a string column stays text, even when some values are not UTF-8."""
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    text = any(
        is_kind(kind) for is_kind in (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
    )
    return _arrow_ids(_utf8_or_bytes(column), text=text)


def _plain(arr: pa.Array) -> pa.Array:
    """A dictionary or view column as the plain string/binary column it stands for."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_string_view(arr.type):
        return arr.cast(pa.string())
    if pa.types.is_binary_view(arr.type):
        return arr.cast(pa.binary())
    return arr


def _utf8_or_bytes(arr: pa.Array) -> pa.Array:
    """A Parquet string column as read, or, when some value in it is not UTF-8, as the bytes it holds.

    Parquet writers need not check the UTF-8 of their string columns, and pyarrow reads them unchecked: the
    first string function over the column then failed the whole file ("Invalid UTF8 sequence in input").
    As bytes, a text is its row's "undecodable bytes" error (:func:`_arrow_texts`) and an id keeps its
    bytes as ``\\xNN`` escapes (:func:`_binary_id`), as in a CSV file."""
    arr = arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr
    as_bytes = {
        pa.string(): pa.binary(),
        pa.large_string(): pa.large_binary(),
        pa.string_view(): pa.binary_view(),
    }
    if arr.type not in as_bytes:
        return arr
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:
        return arr.view(as_bytes[arr.type])
    return arr


def _textual(kind: pa.DataType) -> bool:
    """A column type that holds text: (large/view) string or binary, plain or dictionary-encoded, or null."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    checks = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view, pa.types.is_binary)
    more = (pa.types.is_large_binary, pa.types.is_binary_view, pa.types.is_null)
    return any(is_kind(kind) for is_kind in (*checks, *more))


def _arrow_texts(arr: pa.Array, max_bytes: int) -> tuple[Sequence[str | None], list[str]]:
    """Texts and per-row errors of a string or binary Arrow column, vectorised except for bad rows.

    The texts stay the Arrow column (:class:`ArrowTexts`, null where a row has an error): Python strings are
    made only if something asks for them, and the n-gram encoder never does."""
    arr = _plain(arr)
    n = len(arr)
    errors = [""] * n
    if pa.types.is_null(arr.type):
        return [None] * n, ["null text"] * n
    binary = pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)
    # fill_null keeps the conversion zero-copy: with nulls pyarrow converts through pandas (imported on first use).
    nbytes = pc.binary_length(arr).fill_null(0).to_numpy()
    failed = np.zeros(n, dtype=bool)  # rows given an error so far
    try:
        strings = arr.cast(pa.string()) if binary else arr  # the cast validates UTF-8 for the whole chunk
    except pa.ArrowInvalid:
        # Some row is not UTF-8: decode row by row so only that row fails.
        texts: list[str | None] = []
        for i, raw in enumerate(arr.to_pylist()):
            try:
                texts.append(None if raw is None else raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                texts.append(None)
                errors[i] = f"undecodable bytes (not UTF-8) at byte {e.start}"
                failed[i] = True
        strings = pa.array(texts, type=pa.string())
    blank = pc.equal(pc.binary_length(pc.utf8_trim_whitespace(strings)), 0)
    for mask, reason in (
        (np.asarray(arr.is_null()), "null text"),
        (nbytes > max_bytes, f"text over the {max_bytes}-byte size cap"),
        (np.asarray(blank.fill_null(False)), "empty or whitespace-only text"),
    ):
        new = mask & ~failed  # the first reason found for a row is the one it keeps
        for i in np.flatnonzero(new).tolist():
            errors[i] = reason
        failed |= new
    if failed.any():
        strings = pc.if_else(pa.array(failed), pa.scalar(None, strings.type), strings)
    return ArrowTexts(strings), errors


def _one_array(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array (a block parses into one chunk: no copy then)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _id_before_text(names: list[str], text_col: str, id_col: str | None) -> int | None:
    """The id column's position when it comes before the text column: a record with the wrong number of
    fields keeps its id then (:class:`RecordBlocks`); None otherwise."""
    if id_col is None or names.index(id_col) > names.index(text_col):
        return None
    return names.index(id_col)


def _arrow_ids(arr: pa.Array, text: bool = False) -> list[str | None]:
    """An id column as text (ids are written back unchanged, so ``007`` stays ``007``); binary ids that are
    not UTF-8 keep their bytes as ``\\xNN`` escapes, so two of them never become the same id (U+FFFD
    would make ``b"\\xff"`` and ``b"\\xfe"`` one).

    ``text``: the bytes are a text column's (a CSV cell, a Parquet string that is not all UTF-8), whose
    control characters (a tab, a line feed) are the id's own and are kept, as a JSONL or Parquet string id's
    are: escaped, ``a<LF>b`` and a literal ``a\\x0ab`` were one id. A binary column's control bytes (the
    NULs of a 16-byte key) are escaped."""
    arr = _plain(arr)
    if isinstance(arr.type, pa.BaseExtensionType):  # Parquet's UUID type reads as arrow.uuid
        if arr.type.extension_name == "arrow.uuid":
            import uuid

            return [None if b is None else str(uuid.UUID(bytes=b)) for b in arr.storage.to_pylist()]
        arr = arr.storage
    binary = (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_fixed_size_binary)
    if any(is_kind(arr.type) for is_kind in binary):
        as_text = _bytes_as_text if text else _binary_id
        return [None if b is None else as_text(b) for b in arr.to_pylist()]
    return arr.cast(pa.string()).to_pylist()


_CONTROL_BYTES = re.compile(r"[\x00-\x1f\x7f]")


def _binary_id(raw: bytes) -> str:
    """A binary id as text: UTF-8 where it is, other bytes and control bytes (a NUL of a 16-byte key) as
    ``\\xNN`` escapes, so no id writes a raw NUL or newline into the output."""
    text = raw.decode("utf-8", errors="backslashreplace")
    return _CONTROL_BYTES.sub(lambda m: f"\\x{ord(m.group()):02x}", text) if not text.isprintable() else text


def _bytes_as_text(raw: bytes) -> str:
    """A text cell's bytes: UTF-8 where it is, other bytes as ``\\xNN`` escapes (the output is UTF-8)."""
    return raw.decode("utf-8", errors="backslashreplace")


def valid_unicode(s: str) -> bool:
    """False for a string holding a lone surrogate (``"\\ud800"`` in JSON), which no UTF-8 file can hold."""
    if s.isascii():  # the usual text, checked without encoding it
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bytes_escaped(s: str) -> str:
    """``s``, decoded with ``surrogateescape``, with its bytes that are not UTF-8 as ``\\xNN`` escapes (as a
    CSV id's, :func:`_bytes_as_text`); unchanged when it also holds a lone surrogate of another origin."""
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return s


def escape_surrogates(s: str) -> str:
    """``s`` with each lone surrogate written as its JSON escape (``\\ud800``), so it can be written out."""
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


class _NumberText(str):
    """A JSON number kept as written, never converted: an id ``1.50``, ``-0`` or ``12345678901234567890.0``
    is written back as that, where a float or an int would print ``1.5``, ``0`` and
    ``1.2345678901234567e+19`` (and make two ids one); and an integer of 5,000 digits in any field is
    no error (Python refuses to convert integers over 4,300 digits)."""

    kind = "number"


class _FloatText(_NumberText):
    """A JSON number with a fraction or exponent."""

    kind = "float"  # named so in "text is a JSON float, not a string"


class _IntText(_NumberText):
    """A JSON integer."""

    kind = "int"


# One decoder for every line (json.loads makes one per call).
_JSON_LINE = json.JSONDecoder(parse_float=_FloatText, parse_int=_IntText)


def decode_json_line(line: bytes, lenient: bool = True) -> Any:
    """One JSON Lines record as every reader decodes it (scoring, the first-block check, train and eval):
    numbers kept as written (:class:`_NumberText`), lone surrogates kept for the caller to judge. Bytes that
    are not UTF-8 come back as lone surrogates U+DC80-U+DCFF (``lenient``; strict: ``UnicodeDecodeError``),
    so they fail only a field a reader reads, which judges its fields as it judges a lone surrogate. Raises
    ``ValueError`` or ``RecursionError`` for a line that is not JSON."""
    try:
        text = line.decode("utf-8-sig", "surrogatepass")  # as json.loads decodes bytes
    except UnicodeDecodeError:
        if not lenient:
            raise
        text = line.decode("utf-8-sig", "surrogateescape")
    return _JSON_LINE.decode(text)


def _json_kind(value: Any) -> str:
    """What a decoded JSON value is, in error rows: a kept number by its kind (its class is internal)."""
    return value.kind if isinstance(value, _NumberText) else type(value).__name__


def _json_text(value: Any) -> str:
    """A decoded JSON value written back as JSON, numbers as they were written (``json.dumps`` would quote
    them: they are strings here)."""
    if isinstance(value, _NumberText):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_json_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_json_text(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def _json_row(
    line: bytes, text_col: str, id_col: str | None, max_bytes: int
) -> tuple[str | None, str | None, str]:
    """``(text, id, error)`` of one JSONL line. Bytes that are not UTF-8 fail only the text that holds them
    (a field clsrun does not read, or the id, as ``\\xNN`` escapes, leave the row as it is), as in a CSV
    file: the whole line was an error row without its id."""
    undecodable = ""
    try:
        obj = decode_json_line(line, lenient=False)
    except UnicodeDecodeError as e:
        undecodable = f"undecodable bytes (not UTF-8) at byte {e.start}"
        try:
            obj = decode_json_line(line)  # bad bytes as U+DC80-U+DCFF
        except (ValueError, RecursionError):
            return None, None, undecodable
    except (ValueError, RecursionError) as e:
        if isinstance(e, RecursionError):  # Python's words named its own decoder, not the record
            return None, None, "JSON nested too deeply to read (arrays or objects inside each other)"
        return None, None, f"invalid JSON: {e}"
    if not isinstance(obj, dict):
        return None, None, undecodable or f"line is a JSON {_json_kind(obj)}, not an object"
    rid = obj.get(id_col) if id_col is not None else None
    rid_text = None if rid is None else str(rid) if isinstance(rid, str) else _json_text(rid)
    value = obj.get(text_col)
    if undecodable and rid_text is not None and not valid_unicode(rid_text):
        rid_text = _bytes_escaped(rid_text)
    if undecodable and isinstance(value, str) and not valid_unicode(value):
        return None, rid_text, undecodable
    suspect = b"\\u" in line or b"\xed" in line  # how a lone surrogate gets in: an escape, or CESU-8 bytes
    if suspect and rid_text is not None and not valid_unicode(rid_text):
        return (
            None,
            escape_surrogates(rid_text),
            "id is not valid Unicode (a lone surrogate), written escaped",
        )
    if id_col is not None and id_col not in obj:
        return None, None, f"no {id_col!r} field (--id-col)"
    if text_col not in obj:
        return None, rid_text, f"no {text_col!r} field"
    if value is None:
        return None, rid_text, "null text"
    if not isinstance(value, str) or isinstance(value, _NumberText):
        return None, rid_text, f"text is a JSON {_json_kind(value)}, not a string"
    if suspect and not valid_unicode(value):
        return None, rid_text, "text is not valid Unicode (a lone surrogate such as \\ud800)"
    if len(value) * 4 > max_bytes and len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        return None, rid_text, f"text over the {max_bytes}-byte size cap"
    if not value.strip():
        return None, rid_text, "empty or whitespace-only text"
    return value, rid_text, ""


def _capped_lines(f: IO[bytes], block: int, cap: int) -> Iterator[list[bytes | None]]:
    """The non-blank lines of ``f``, a block at a time (a leading byte order mark dropped); a line over
    ``cap`` bytes is None.

    The cap holds while reading (``readlines`` would hold a whole 192 MiB line): the rest of an over-cap
    line is read and dropped a block at a time, so memory stays about ``block + cap``.
    """
    carry, skipping, first = b"", False, True
    while data := f.read(block):
        if first:  # the file's byte order mark belongs to no line: a BOM and a line end are a blank line
            data, first = data.removeprefix(BOM), False
        if skipping:
            nl = data.find(b"\n")
            if nl < 0:
                continue
            data, skipping = data[nl + 1 :], False
        parts = (carry + data).split(b"\n")
        carry = parts.pop()
        lines: list[bytes | None] = [None if len(ln) > cap else ln for ln in parts if ln.strip()]
        if len(carry) > cap:
            lines.append(None)
            carry, skipping = b"", True
        if lines:
            yield lines
    if carry.strip():
        yield [carry]


# --------------------------------------------------------------------------------------------------
# Streaming reader for scoring: record chunks, per-row errors, whole-file problems found before scoring.
# --------------------------------------------------------------------------------------------------


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
    def _fail(self, e: BaseException) -> InputError:
        where = f" after its first {self.rows_read} rows" if self.rows_read else ""
        return InputError(f"{self.path}: cannot be read as {self.format.kind}{where}: {_first_line(e)}")

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

    # -- CSV / TSV ---------------------------------------------------------------------------------
    def _csv(self) -> Iterator[_Rows]:
        with contextlib.ExitStack() as files:
            f, on_disk = _open_bytes(self.path, self.format.gzip, files)
            header = _header(f, self.path, self.format, self.options)
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
            return self._csv_chunks(files.pop_all(), blocks, disk)

    def _csv_chunks(
        self, files: contextlib.ExitStack, blocks: RecordBlocks, disk: Callable[[int], int]
    ) -> Iterator[_Rows]:
        with files:
            for block in blocks:
                yield (*self._block_rows(block), disk(block.end))

    def _block_rows(self, block: Block) -> tuple[Sequence[str | None], list[str | None] | None, list[str]]:
        """A block's rows, its bad records put back in place as error rows naming their row."""
        texts, errors = _arrow_texts(
            _one_array(block.table.column(self.text_col)), self.options.max_text_bytes
        )
        ids = (
            _arrow_ids(_one_array(block.table.column(self.id_col)), text=True)
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
                out_i.append(None if b.id is None else _bytes_as_text(b.id))
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
            local = files.enter_context(_parquet_file(self.path, self.format.gzip))
            pf = pq.ParquetFile(local)  # pyarrow opens the path and closes it once no reader holds it
            self._known_rows = pf.metadata.num_rows
            self._progress = ReadProgress(0, 0.0, self._known_rows, True)
            schema = pf.schema_arrow
            self._missing(schema.names)
            kind = schema.field(self.text_col).type
            if not _textual(kind):
                raise InputError(f"{self.path}: column {self.text_col!r} holds {kind}, not text")
            id_kind = schema.field(self.id_col).type if self.id_col is not None else None
            if id_kind is not None and pa.types.is_nested(id_kind):  # an id is one value, written as text
                raise InputError(
                    f"{self.path}: column {self.id_col!r} holds {id_kind}; an id column holds text or numbers"
                )
            columns = list(dict.fromkeys(c for c in (self.text_col, self.id_col) if c is not None))
            batches = _row_group_batches(pf, columns, max(1024, self.block_bytes // 128), self.block_bytes)
            return self._parquet_chunks(files.pop_all(), batches)

    def _parquet_chunks(
        self, files: contextlib.ExitStack, batches: Iterable[pa.RecordBatch]
    ) -> Iterator[_Rows]:
        with files:  # a .parquet.gz's unpacked copy goes when the stream is read or closed
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                text = _utf8_or_bytes(batch.column(self.text_col))
                texts, errors = _arrow_texts(text, self.options.max_text_bytes)
                ids = None if self.id_col is None else _parquet_ids(batch.column(self.id_col))
                yield texts, ids, errors, None

    # -- JSONL -------------------------------------------------------------------------------------
    def _jsonl(self) -> Iterator[_Rows]:
        # pyarrow.json has no streaming reader, and one bad line must not fail its neighbours: lines are
        # read in blocks and parsed one by one with the standard library.
        with contextlib.ExitStack() as files:
            f, on_disk = _open_bytes(self.path, self.format.gzip, files)
            blocks = _capped_lines(f, self.block_bytes, self.options.record_cap)
            lines: list[bytes | None] = []
            for block in blocks:  # up to the first line under the size cap: the one to check the file by
                lines += block
                if any(ln is not None for ln in block):
                    break
            if not lines:  # an empty file (or only blank lines): no records, no columns to check
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
                    _json_row(ln, self.text_col, self.id_col, self.options.max_text_bytes)
                    if ln is not None
                    else (None, None, f"row {self.rows_read + i}: {over}")
                    for i, ln in enumerate(block)
                ]
                ids = [r[1] for r in rows] if self.id_col is not None else None
                yield [r[0] for r in rows], ids, [r[2] for r in rows], end


def open_records(path: Path | str, options: ReadOptions = ReadOptions()) -> RecordStream:
    """Open ``path`` for streaming; raises :class:`InputError` at once for whole-file problems."""
    return RecordStream(path, options)
