"""A block's text and id columns as the scorer takes them, vectorised with Arrow except for bad rows.

Texts get their per-row errors (null, over the size cap, blank, not UTF-8) and stay an Arrow column
(:class:`ArrowTexts`); ids are written back unchanged, whatever type the file stored them as. Parquet
string columns are read unchecked by pyarrow, so one value that is not UTF-8 is made that row's error here
rather than the whole file's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clsrun.runtime.arrow_texts import ArrowTexts


def utf8_or_none(raw: bytes | None) -> str | None:
    """``raw`` as UTF-8 text; None when it is None or not UTF-8 (a cell whole-file reads leave out)."""
    try:
        return None if raw is None else raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def row_group_batches(pf: Any, columns: list[str], rows: int, block_bytes: int) -> Iterator[pa.RecordBatch]:
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


def parquet_ids(column: pa.Array) -> list[str | None]:
    """A Parquet id column as text: a string column stays text, even when some values are not UTF-8."""
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    text = any(
        is_kind(kind) for is_kind in (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
    )
    return arrow_ids(utf8_or_bytes(column), text=text)


def plain(arr: pa.Array) -> pa.Array:
    """A dictionary or view column as the plain string/binary column it stands for."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_string_view(arr.type):
        return arr.cast(pa.string())
    if pa.types.is_binary_view(arr.type):
        return arr.cast(pa.binary())
    return arr


def utf8_or_bytes(arr: pa.Array) -> pa.Array:
    """A Parquet string column as read, or, when some value in it is not UTF-8, as the bytes it holds.

    Parquet writers need not check the UTF-8 of their string columns, and pyarrow reads them unchecked: the
    first string function over the column then failed the whole file ("Invalid UTF8 sequence in input").
    As bytes, a text is its row's "undecodable bytes" error (:func:`texts_and_errors`) and an id keeps its
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


def textual(kind: pa.DataType) -> bool:
    """A column type that holds text: (large/view) string or binary, plain or dictionary-encoded, or null."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    checks = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view, pa.types.is_binary)
    more = (pa.types.is_large_binary, pa.types.is_binary_view, pa.types.is_null)
    return any(is_kind(kind) for is_kind in (*checks, *more))


def texts_and_errors(arr: pa.Array, max_bytes: int) -> tuple[Sequence[str | None], list[str]]:
    """Texts and per-row errors of a string or binary Arrow column, vectorised except for bad rows.

    The texts stay the Arrow column (:class:`ArrowTexts`, null where a row has an error): Python strings are
    made only if something asks for them, and the n-gram encoder never does."""
    arr = plain(arr)
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
        # A take through null indices keeps none of an error row's bytes (``if_else`` kept them all): rows
        # over the size cap count as no characters in a window, and 8,192 of them held gigabytes until the
        # window's column could not be concatenated ("offset overflow", the run lost).
        keep = pa.array(np.arange(n), mask=failed)
        strings = strings.take(keep)
    return ArrowTexts(strings), errors


def one_array(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array (a block parses into one chunk: no copy then)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def arrow_ids(arr: pa.Array, text: bool = False) -> list[str | None]:
    """An id column as text (ids are written back unchanged, so ``007`` stays ``007``); binary ids that are
    not UTF-8 keep their bytes as ``\\xNN`` escapes, so two of them never become the same id (U+FFFD
    would make ``b"\\xff"`` and ``b"\\xfe"`` one).

    ``text``: the bytes are a text column's (a CSV cell, a Parquet string that is not all UTF-8), whose
    control characters (a tab, a line feed) are the id's own and are kept, as a JSONL or Parquet string id's
    are: escaped, ``a<LF>b`` and a literal ``a\\x0ab`` were one id. A binary column's control bytes (the
    NULs of a 16-byte key) are escaped."""
    arr = plain(arr)
    if isinstance(arr.type, pa.BaseExtensionType):  # Parquet's UUID type reads as arrow.uuid
        if arr.type.extension_name == "arrow.uuid":
            import uuid

            return [None if b is None else str(uuid.UUID(bytes=b)) for b in arr.storage.to_pylist()]
        arr = arr.storage
    binary = (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_fixed_size_binary)
    if any(is_kind(arr.type) for is_kind in binary):
        as_text = bytes_as_text if text else _binary_id
        return [None if b is None else as_text(b) for b in arr.to_pylist()]
    return arr.cast(pa.string()).to_pylist()


_CONTROL_BYTES = re.compile(r"[\x00-\x1f\x7f]")


def _binary_id(raw: bytes) -> str:
    """A binary id as text: UTF-8 where it is, other bytes and control bytes (a NUL of a 16-byte key) as
    ``\\xNN`` escapes, so no id writes a raw NUL or newline into the output."""
    text = raw.decode("utf-8", errors="backslashreplace")
    return _CONTROL_BYTES.sub(lambda m: f"\\x{ord(m.group()):02x}", text) if not text.isprintable() else text


def bytes_as_text(raw: bytes) -> str:
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


def escape_surrogates(s: str) -> str:
    """``s`` with each lone surrogate written as its JSON escape (``\\ud800``), so it can be written out."""
    return s.encode("utf-8", "backslashreplace").decode("utf-8")
