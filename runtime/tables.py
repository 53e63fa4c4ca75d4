"""Whole files as Arrow tables of string columns, for training and evaluation (``read_table``).

Records that cannot be read are left out and counted on stderr (training and evaluation have no row to
keep them in); a file that cannot be parsed at all is an :class:`InputError`. The column checks here
(a column named twice, a text column of numbers) are the streaming reader's too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from clsrun.runtime.columns import utf8_or_bytes, utf8_or_none, valid_unicode
from clsrun.runtime.delimited import Header, RecordBlocks
from clsrun.runtime.errors import InputError, clipped, resource_error
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
from clsrun.runtime.json_lines import NumberText, capped_lines, decode_json_line, refuse_json_array
from clsrun.runtime.row_errors import not_utf8_hint

log = logging.getLogger(__name__)


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

            with parquet_file(path, fmt.gzip) as local:
                require_unique_columns(path, pq.read_schema(local).names, list(reads))
                return _utf8_cells(pq.read_table(local))  # pyarrow opens and closes the path itself
        with contextlib.ExitStack() as files:
            f, _ = open_bytes(path, fmt.gzip, files)
            if fmt.kind == "jsonl":
                return _json_table(path, f, options, said, reads)
            header = csv_header(f, path, fmt, options)
            require_unique_columns(path, header.names, list(reads))
            return _delimited_table(path, f, header, options, said)
    except InputError:
        raise
    except READ_ERRORS as e:
        short = resource_error(e)  # out of file descriptors or memory: not the file's fault
        raise (short or InputError(f"{path}: cannot be read as {fmt.kind}: {first_line(e)}")) from e


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


def _utf8_cells(table: pa.Table) -> pa.Table:
    """A Parquet table whose string columns hold only UTF-8: a value that is not is a null, as a CSV
    cell that is not is (:func:`_decoded`; its row is then left out and counted by :func:`read_labelled`).
    Unchecked, the first Python string made of it was "unexpected UnicodeDecodeError" (:func:`utf8_or_bytes`)."""
    for i, column in enumerate(table.columns):
        try:
            column.validate(full=True)
        except pa.ArrowInvalid:
            as_bytes = pa.chunked_array([utf8_or_bytes(c) for c in column.chunks])
            table = table.set_column(i, table.field(i).name, _decoded(as_bytes))
    return table


def _decoded(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A binary column as strings: at Arrow's speed when all of it is UTF-8, else value by value with a
    null for each value that is not."""
    try:
        return column.cast(pa.string())
    except pa.ArrowInvalid:
        return pa.chunked_array([pa.array([utf8_or_none(v) for v in column.to_pylist()], pa.string())])


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
    for block, lines in enumerate(capped_lines(f, options.block_bytes, options.record_cap)):
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
    if isinstance(value, NumberText):  # a number as written (an integer of any length is no error)
        return None if key == text_col else str(value)
    if isinstance(value, str) or value is None:
        return value
    if key == text_col or isinstance(value, (list, dict)):
        return None
    return json.dumps(value)


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
