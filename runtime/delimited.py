"""CSV and TSV files as blocks of whole records, read by the calling thread and parsed by pyarrow in memory.

pyarrow's streaming CSV reader is not used, for two reasons. It reads the file ahead on an I/O thread of
its own, and dropping the reader does not always wait for that thread's read in flight: a file closed
then (the former header probe) let the next file opened get the same descriptor number, and the late
read took that file's first block, header included (issue 17: "Column 'text' in include_columns does not
exist" on a valid file, about once in a hundred runs on a busy machine). And it gives up on the whole
file at the first record it cannot place (a field bigger than its block), where every record must
become one output row. So this module opens the file once, reads it synchronously, cuts each block after
its last complete record and hands pyarrow that block as an in-memory buffer: pyarrow never touches a
file descriptor, and each block knows exactly which rows it holds.

The cut is cheap when quotes are balanced (the last newline with an even number of quotes before it);
a sentinel record parsed after the block proves the cut to pyarrow's own parser, and when it does not
(a stray quote inside an unquoted field), an exact scanner written to pyarrow's quoting rules finds it.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from clsrun.runtime.errors import InputError, InternalError

log = logging.getLogger(__name__)

QUOTE = b'"'
BOM = b"\xef\xbb\xbf"
DELIMITERS = {",": "commas", "\t": "tabs", ";": "semicolons", "|": "pipes"}  # the ones a header is tried with
_MARK = "\x1eclsrun-end-of-block\x1e"  # the sentinel record's value in every column; no real cell holds it


@dataclass(frozen=True)
class Dialect:
    """How records and fields are separated."""

    delimiter: str  # one character
    quoting: bool  # '"' quotes a field that may hold delimiters, newlines and "" (CSV); off for plain TSV
    newline: bytes  # the byte that ends a record: b"\n" (also for \r\n), b"\r" in old Mac files


@dataclass(frozen=True)
class Header:
    """The column names and what was learnt reading them."""

    names: list[str]
    dialect: Dialect
    rest: bytes  # bytes already read after the header record: the first data records


@dataclass(frozen=True)
class BadRecord:
    """A record that is an error row: where it is among its block's records, why, and its id if known."""

    index: int
    reason: str
    id: bytes | None = None  # the id column's field, where the record still has it (``id_at``)


@dataclass
class Block:
    """Consecutive records of the file; the ones pyarrow could not place are kept as ``bad``."""

    table: pa.Table  # the well-formed records, in order, the columns asked for
    bad: list[BadRecord]  # records that are error rows, in order
    records: int  # records in the block: table rows + bad
    end: int  # bytes of the (decompressed) file up to the end of this block


def _allow_fields(size: int) -> None:
    """Let the standard library's reader take fields up to ``size`` characters. Its limit is 131,072 by
    default and process-wide; under it a cell longer than that, which the record cap allows, failed the
    whole file ("field larger than field limit") where it is one row. Only ever raised, never lowered."""
    if csv.field_size_limit() < size:
        csv.field_size_limit(size)


def _split(line: str, delimiter: str, quoting: bool) -> list[str]:
    """The fields of one line (the standard library's reader follows the same quoting rules)."""
    if quoting:
        return next(csv.reader([line], delimiter=delimiter), [])
    return next(csv.reader([line], delimiter=delimiter, quoting=csv.QUOTE_NONE), [])


def _fields(record: str, dialect: Dialect) -> list[str]:
    """The fields of one record's text, which may hold quoted line ends ([] where it does not split)."""
    try:
        return _split(record, dialect.delimiter, dialect.quoting)
    except csv.Error:
        return []


def choose_delimiter(path: Path, line: str, default: str, wanted: list[str], quoting: bool) -> str:
    """The extension's delimiter, unless only another one splits the header into the wanted columns.

    A tab-separated file named ``.csv`` is common (spreadsheet exports): reading it with commas would
    give one column called ``id\\ttext``. The switch is said on stderr, once.
    """
    if all(c in _split(line, default, quoting) for c in wanted):
        return default
    for other in DELIMITERS:
        if other != default and other in line and all(c in _split(line, other, quoting) for c in wanted):
            log.warning(
                "%s: the header is separated by %s, not %s: reading it that way (--delimiter sets it)",
                path,
                DELIMITERS[other],
                DELIMITERS.get(default, repr(default)),
            )
            return other
    return default


def _header_end(buf: bytes, quoting: bool) -> int:
    """Bytes of the first record including its line end; -1 when ``buf`` does not hold all of it."""
    i = 0
    while True:
        nl = min((p for p in (buf.find(b"\n", i), buf.find(b"\r", i)) if p >= 0), default=-1)
        if nl < 0:
            return -1
        if not quoting or buf.count(QUOTE, 0, nl) % 2 == 0:
            if buf[nl : nl + 1] == b"\r":
                if nl + 1 == len(buf):
                    return -1  # a \n may follow
                return nl + 2 if buf[nl + 1 : nl + 2] == b"\n" else nl + 1
            return nl + 1
        i = nl + 1


def read_header(
    f: IO[bytes], path: Path, default: str, explicit: str | None, quoting: bool, wanted: list[str], cap: int
) -> Header:
    """Read the header record of ``f`` and settle the dialect; the file stays positioned after it."""
    buf = f.read(max(cap // 4, 1 << 16))
    if not buf:
        raise InputError(f"{path}: Empty CSV file: no header line")
    if buf.startswith(BOM):
        buf = buf[len(BOM) :]
    buf = buf.lstrip(b"\r\n")  # blank lines before the header (as Python's csv reader skips them)
    while not buf:
        more = f.read(1 << 20)
        if not more:
            raise InputError(f"{path}: Empty CSV file: no header line (only blank lines)")
        buf = more.lstrip(b"\r\n")
    end = _header_end(buf, quoting)
    while end < 0:
        more = f.read(1 << 20)
        if not more:
            end = len(buf)  # a header with no line end: a file with no rows
        elif len(buf) > cap:
            raise InputError(f"{path}: no header line in the first {cap} bytes")
        else:
            buf += more
            end = _header_end(buf, quoting)
    raw = buf[:end]
    _allow_fields(len(raw))
    line = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
    delimiter = explicit or choose_delimiter(path, line, default, wanted, quoting)
    return Header(
        _split(line, delimiter, quoting),
        Dialect(delimiter, quoting, _newline(raw, buf[end:], quoting)),
        buf[end:],
    )


def _newline(header: bytes, rows: bytes, quoting: bool) -> bytes:
    """The byte that ends records: ``\r`` for an old Mac file (its header ends in a lone CR and so do its
    rows), else ``\n``. The rows have the say when they disagree with the header: a header saved with a lone
    CR above LF rows (an editor's doing) made every record until the last few MB one over the size cap.
    Their first line end outside quotes decides: a cell with a line break, which Excel's "CSV (Macintosh)"
    writes as a quoted LF, made an old Mac file one of LF records, every row merged into one."""
    if not header.endswith(b"\r"):
        return b"\n"
    in_quotes = False
    for found in re.finditer(rb'["\r\n]' if quoting else rb"[\r\n]", rows):
        if found.group() == QUOTE:
            in_quotes = not in_quotes  # "" inside quotes toggles twice: still inside
        elif not in_quotes:
            return b"\n" if found.group() == b"\n" else b"\r"
    return b"\r"


def _is_utf8(data: bytes | memoryview) -> bool:
    try:
        codecs.utf_8_decode(data, "strict", True)
    except UnicodeDecodeError:
        return False
    return True


# A run of carriage returns inside a line of a file whose records end at line feeds: characters of its cell
# (text pasted from an old Mac or Windows program), which pyarrow's parser, with no option to say otherwise,
# would take for record ends: one record became two rows, and every later row's number and id moved by one.
# They are handed to pyarrow as spaces, what the whitespace normalisation makes of them anyway. A run next
# to a line feed (``\r\r\n`` of a file written twice through a CRLF conversion, ``\n\r`` line ends) is
# part of the line end and stays one: as spaces it became part of the last or first cell (an id "1 ").
_CR_RUN = re.compile(rb"\r+")


def _cells_cr_as_spaces(body: bytes | memoryview) -> bytes:
    """``body`` with every run of CRs inside a line (:data:`_CR_RUN`) as spaces; same length, so the block's
    offsets hold. Runs, not single CRs, are matched: linear time however many CRs follow each other."""
    data = bytes(body)

    def inside(run: re.Match[bytes]) -> bytes:
        start, end = run.span()
        at_line_end = data[end : end + 1] == b"\n" or data[start - 1 : start] == b"\n"
        return run.group() if at_line_end else b" " * (end - start)

    return _CR_RUN.sub(inside, data)


def _record_pattern(dialect: Dialect) -> re.Pattern[bytes]:
    """Complete records from the start of a buffer, with pyarrow's rules: a quote opens a quoted field only
    at the start of a field; in it ``""`` is a quote; after the closing quote the field goes on unquoted.
    A lone CR ends a record only where the dialect's records end at CR (``_CR_RUN``).
    Possessive quantifiers: linear time, no backtracking."""
    d = re.escape(dialect.delimiter.encode())
    ends = rb"\r\n" if dialect.newline == b"\r" else rb"\n"
    rest = rb"[^" + d + ends + rb"]*+"
    field = rb'(?:"[^"]*+(?:""[^"]*+)*+"' + rest + rb'|[^"' + d + ends + rb"]" + rest + rb"|)"
    end = rb"(?:\r\n|\n|\r)" if dialect.newline == b"\r" else rb"\r?\n"
    return re.compile(rb"(?:" + field + rb"(?:" + d + field + rb")*+" + end + rb")*+")


class RecordBlocks:
    """The records of a delimited file after its header, as :class:`Block`\\ s of about ``block_bytes``.

    A record longer than ``max_record`` bytes is one bad record, skipped while reading (memory stays
    about ``block_bytes + max_record``). A quote still open at the end of the file is an
    :class:`InputError` naming the row where it opened: what follows it cannot be told apart.

    ``id_at``: the header position of the id column, given only where a record with the wrong number of
    fields still has it for sure enough to name its error row by it: the id column comes before the text
    column, and a stray or missing delimiter is far likelier in free text than in an id before it.
    """

    def __init__(
        self,
        f: IO[bytes],
        path: Path,
        header: Header,
        columns: list[str],
        column_type: pa.DataType,
        block_bytes: int,
        max_record: int,
        id_at: int | None = None,
    ) -> None:
        self.f, self.path, self.header = f, path, header
        self.id_at = id_at
        self.dialect = header.dialect
        self.columns = columns
        self.block_bytes, self.max_record = block_bytes, max_record
        self.rows = 0  # records handed out so far
        self.offset = 0  # bytes after the header handed out so far
        self._records = _record_pattern(self.dialect) if self.dialect.quoting else None
        self._convert = pacsv.ConvertOptions(
            include_columns=columns, column_types={c: column_type for c in columns}, strings_can_be_null=False
        )
        names = header.names
        self._sentinel = (self.dialect.delimiter.join([_MARK] * len(names)) + "\n").encode()

    def __iter__(self) -> Iterator[Block]:
        buf, eof = self.header.rest, False
        while buf or not eof:
            if not eof and len(buf) < self.block_bytes:
                data = self.f.read(self.block_bytes)
                eof = not data
                buf += data
                continue
            block, buf = self._next_block(buf, eof)
            if block is None:
                if len(buf) > self.max_record:
                    yield self._oversize()
                    buf, eof = self._skip_record(buf)
                    continue
                more = self.f.read(self.block_bytes)  # a record longer than the block: grow it
                eof = not more
                buf += more
                continue
            self.rows += block.records
            yield block

    def _next_block(self, buf: bytes, eof: bool) -> tuple[Block | None, bytes]:
        """The block of ``buf``'s complete records and what is left, or (None, buf) when there is none."""
        if eof:
            block = self._parse(buf, len(buf))
            if block is None:
                raise self._unclosed(buf)
            return block, b""
        cut = self._guess_cut(buf)
        block = self._parse(buf, cut) if cut else None
        if block is None and self._records is not None:  # a stray quote fooled the guess
            cut = self._complete(buf)
            block = self._parse(buf, cut) if cut else None
            if cut and block is None:
                raise InternalError(f"{self.path}: pyarrow does not end a record where the scanner does")
        return block, buf[cut:] if block is not None else buf

    def _complete(self, buf: bytes) -> int:
        """End of the last complete record in ``buf`` by the exact scanner (0: none complete)."""
        found = self._records.match(buf) if self._records is not None else None
        return found.end() if found is not None else 0

    def _guess_cut(self, buf: bytes) -> int:
        """End of the last record in ``buf`` if its quotes are balanced (0: no record end found)."""
        nl = self.dialect.newline
        end = buf.rfind(nl)
        if nl == b"\r" and end == len(buf) - 1:
            end = buf.rfind(nl, 0, end)  # a \n may follow
        if end < 0 or not self.dialect.quoting:
            return end + 1
        # numpy counts a MiB of bytes some 30 times faster than bytes.count
        quotes = int(np.count_nonzero(np.frombuffer(buf, dtype=np.uint8, count=end) == ord(QUOTE)))
        while quotes % 2 and end >= 0:
            before = buf.rfind(nl, 0, end)
            quotes -= buf.count(QUOTE, before + 1, end)
            end = before
        return end + 1

    def _parse(self, buf: bytes, cut: int) -> Block | None:
        """Parse the records in ``buf[:cut]``; None when pyarrow does not see a record end at ``cut``."""
        body: bytes | memoryview = memoryview(buf)[:cut]
        if self.dialect.newline == b"\n" and buf.find(b"\r", 0, cut) >= 0:
            body = _cells_cr_as_spaces(body)
        tail = b"" if bytes(body[-1:]) in (b"\n", b"\r") else b"\n"  # a file without a final line end
        if self.dialect.quoting:
            tail += self._sentinel  # proves the cut: pyarrow must read it as a record of its own
        data = b"".join((body, tail)) if tail else body
        bad: list[BadRecord] = []
        try:
            table = self._read(data, None)
        except pa.ArrowInvalid:  # a row with the wrong number of fields: again, keeping count of them
            table = self._read(data, bad) if _is_utf8(data) else self._read_in_python(data, bad)
        if self.dialect.quoting:
            last = table.column(0)[-1].as_py() if table.num_rows else None
            if last not in (_MARK, _MARK.encode()):
                return None
            table = table.slice(0, table.num_rows - 1)
        self.offset += cut
        return Block(table, bad, table.num_rows + len(bad), self.offset)

    def _bad(self, index: int, fields: list[str]) -> BadRecord:
        """The error row of a record split into ``fields``, not as many as the header has."""
        expected, got = len(self.header.names), len(fields)
        reason = f"{got} field{'s' if got != 1 else ''}, the header has {expected}"
        at = self.id_at
        rid = fields[at].encode("utf-8", "surrogateescape") if at is not None and at < got - 1 else None
        return BadRecord(index, reason, rid)

    def _read(self, data: bytes | memoryview, bad: list[BadRecord] | None) -> pa.Table:
        """pyarrow's parse of ``data``; with ``bad``, rows with the wrong number of fields go there.

        The handler is set only when needed: with one, pyarrow parses about half as fast.
        """
        d = self.dialect
        expected = len(self.header.names)

        def on_bad(row: pacsv.InvalidRow) -> str:
            if row.number is None or bad is None:
                raise InternalError("pyarrow did not number an invalid CSV row")
            fields = _fields(row.text, d) if self.id_at is not None else []
            if len(fields) != row.actual_columns:  # not split as pyarrow did: the count is pyarrow's
                fields = [""] * row.actual_columns
            bad.append(self._bad(row.number - 1, fields))
            return "skip"

        return pacsv.read_csv(
            pa.py_buffer(data),
            # One block; with no handler, pyarrow's pool threads (already running) parse it: its serial
            # reader would start a thread of its own for every call. Numbered bad rows need the serial one.
            read_options=pacsv.ReadOptions(
                column_names=self.header.names, use_threads=bad is None, block_size=len(data) + 1
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=d.delimiter,
                quote_char='"' if d.quoting else False,
                newlines_in_values=d.quoting,
                ignore_empty_lines=expected > 1,  # one column: an empty line is a row with an empty text
                invalid_row_handler=on_bad if bad is not None else None,
            ),
            convert_options=self._convert,
        )

    def _read_in_python(self, data: bytes | memoryview, bad: list[BadRecord]) -> pa.Table:
        """:meth:`_read` with ``bad`` for a block that is not all UTF-8, by the standard library's reader.

        Why by hand: pyarrow hands a row with the wrong number of fields to the handler as text, and one that
        is not UTF-8 fails that conversion inside pyarrow (printed as an ignored exception) and the whole
        block with it. Bytes that are not UTF-8 travel here as lone surrogates (``surrogateescape``) and come
        back unchanged, so such a row is still the per-row "undecodable bytes" error it is everywhere else.
        """
        d, names = self.dialect, self.header.names
        _allow_fields(self.max_record)
        text = bytes(data).decode("utf-8", "surrogateescape")
        quoting = (
            {"quotechar": QUOTE.decode(), "doublequote": True} if d.quoting else {"quoting": csv.QUOTE_NONE}
        )
        records = csv.reader(io.StringIO(text, newline=""), delimiter=d.delimiter, strict=False, **quoting)
        kept: list[list[str]] = []
        position = 0
        for fields in records:
            if not fields and len(names) > 1:  # an empty line, which pyarrow skips as well
                continue
            fields = fields or [""]
            if len(fields) != len(names):
                bad.append(self._bad(position, fields))
            else:
                kept.append(fields)
            position += 1
        arrays = {}
        for name in self.columns:  # bytes, cast to the column's type (binary: as is; string: checked UTF-8)
            raw = [row[names.index(name)].encode("utf-8", "surrogateescape") for row in kept]
            arrays[name] = pa.array(raw, pa.binary()).cast(self._convert.column_types[name])
        return pa.table(arrays)

    def _oversize(self) -> Block:
        self.rows += 1
        empty = pa.table({c: pa.array([], type=self._convert.column_types[c]) for c in self.columns})
        reason = f"a record over the {self.max_record}-byte size cap (skipped while reading)"
        return Block(empty, [BadRecord(0, reason)], 1, self.offset)

    def _skip_record(self, buf: bytes) -> tuple[bytes, bool]:
        """Read past the record at the start of ``buf``: what follows it, and whether the file ended."""
        scan = _RecordEnd(self.dialect)
        while True:
            end = scan.feed(buf)
            if end >= 0:
                self.offset += end
                rest = buf[end:]
                if not rest and buf.endswith(b"\r"):  # a \n after it belongs to this record's line end
                    rest = self.f.read(self.block_bytes)
                    if rest.startswith(b"\n"):
                        self.offset += 1
                        rest = rest[1:]
                return rest, False
            self.offset += len(buf)
            buf = self.f.read(self.block_bytes)
            if not buf:
                if scan.in_quotes and not scan.quote_pending:
                    raise self._unclosed(b"", opened=self.rows - 1)
                return b"", True

    def _unclosed(self, buf: bytes, opened: int | None = None) -> InputError:
        """The error for a file that ends inside a quoted field, naming the row where the quote opened."""
        row = opened
        if row is None:
            complete = self._complete(buf)
            before = self._parse(buf, complete) if complete else None
            row = self.rows + (before.records if before is not None else 0)
        return InputError(
            f"{self.path}: a quote opened in row {row} is never closed: the file ends inside a quoted field "
            "(fix the file, or for a .tsv file leave out --tsv-quotes)"
        )


class _RecordEnd:
    """Finds where one record ends in bytes fed piece by piece, with pyarrow's rules (``_record_pattern``).

    Used only to skip a record over the size cap, so it never holds more than one piece.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.quoting = dialect.quoting
        self.delimiter = dialect.delimiter.encode()
        ends = b"\r\n" if dialect.newline == b"\r" else b"\n"  # a lone CR ends no record of a LF file
        special = ends + re.escape(self.delimiter) + (QUOTE if self.quoting else b"")
        self._special = re.compile(b"[" + special + b"]")
        self.in_quotes = False
        self.field_start = True  # the next byte starts a field
        self.quote_pending = False  # the last piece ended on a quote inside quotes: "" or the closing one?

    def feed(self, buf: bytes) -> int:
        """Bytes of ``buf`` up to and including the record's end; -1 when it goes on past ``buf``."""
        i, n = 0, len(buf)
        if self.quote_pending and n:
            self.quote_pending = False
            if buf[:1] == QUOTE:
                i = 1  # it was "": still inside the quotes
            else:
                self.in_quotes, self.field_start = False, False
        while i < n:
            if self.in_quotes:
                j = buf.find(QUOTE, i)
                if j < 0:
                    return -1
                if j + 1 == n:
                    self.quote_pending = True
                    return -1
                if buf[j + 1 : j + 2] == QUOTE:
                    i = j + 2
                else:
                    self.in_quotes, self.field_start, i = False, False, j + 1
                continue
            m = self._special.search(buf, i)
            if m is None:
                self.field_start = False
                return -1
            j = m.start()
            c = buf[j : j + 1]
            if c in (b"\n", b"\r"):
                return j + (2 if c == b"\r" and buf[j + 1 : j + 2] == b"\n" else 1)
            if c == QUOTE:
                self.in_quotes = j == i and self.field_start  # a quote opens only at the start of a field
                self.field_start = False
            else:
                self.field_start = True  # a delimiter
            i = j + 1
        return -1
