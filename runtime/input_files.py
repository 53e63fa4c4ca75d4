"""An input file before its records: which format its name says, its bytes (gzip unpacked), and the
files it only looks like (compressed another way, UTF-16, Parquet under another name), refused up front.

:class:`ReadOptions` is how every reader takes a file: which columns, and the limits that make a row an
error row. Streaming (``readers.py``) and whole-file reads (``tables.py``) both open files here.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import re
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import pyarrow as pa

from clsrun.runtime.delimited import Header, read_header
from clsrun.runtime.errors import InputError, UsageError, storage_error
from clsrun.runtime.files import LINK_LOOP, non_utf8_name, resolved

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
def parquet_file(path: Path, gz: bool) -> Iterator[Path | IO[bytes]]:
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
READ_ERRORS = (
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


def open_bytes(path: Path, gz: bool, files: contextlib.ExitStack) -> tuple[IO[bytes], Callable[[], int]]:
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


def csv_header(f: IO[bytes], path: Path, fmt: FileFormat, options: ReadOptions) -> Header:
    """The header of a CSV/TSV file; ``.tsv`` quotes only with ``--tsv-quotes``, ``.csv`` always."""
    default = "\t" if fmt.kind == "tsv" else ","
    quoting = fmt.kind == "csv" or options.tsv_quotes
    wanted = [c for c in (options.text_col, options.id_col) if c is not None]
    return read_header(f, path, default, options.delimiter, quoting, wanted, options.record_cap)


def first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__
