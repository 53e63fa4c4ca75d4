"""The output of ``predict``: the result table of a window, and CSV / JSONL / Parquet files written atomically.

Columns (DESIGN.md): ``id`` (the ``--id-col`` value as text, else the 0-based row number), ``label``,
``score`` (probability of ``label``), ``prob_<label>`` per label with ``--probs``, ``status`` (``ok`` or
``error``), ``error`` (empty when ok). An error row has empty label, score and probabilities.

CSV cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or
carriage return) get a leading ``'`` (OWASP's advice), and so does a cell that already starts with ``'``
and then one of those (so two ids never become one); plain numbers such as ``-1`` are left alone, since
they cannot be formulas and an id or label like that must survive a round trip.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from clsrun.runtime.errors import UsageError
from clsrun.runtime.files import fsync_path, publish, temporary_for

log = logging.getLogger(__name__)

OUTPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
# Every accepted extension, as messages and --help list them.
OUTPUT_EXTENSIONS = ".csv, .tsv, .jsonl, .json (written as JSON Lines, one object per line) or .parquet"
# A cell that starts like a formula, or like one already neutralised (``'=x``): that one gets a ``'`` too,
# so ``=x`` and ``'=x`` stay two values (``'=x`` and ``''=x``) and dropping one ``'`` gives each back.
_FORMULA_START = r"^'*[=+\-@\t\r]"
_PLAIN_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def output_format(path: Path | str) -> str:
    """``csv``, ``tsv``, ``jsonl`` or ``parquet`` from the output's extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        what = f"unknown output type {suffix!r}" if suffix else "no extension to tell the output type"
        raise UsageError(f"--out {path}: {what}; use {OUTPUT_EXTENSIONS}")
    return OUTPUT_FORMATS[suffix]


def output_schema(labels: list[str], probs: bool, text_ids: bool) -> pa.Schema:
    """The output columns in order; ``text_ids`` when ids come from ``--id-col``."""
    fields = [
        pa.field("id", pa.string() if text_ids else pa.int64()),
        pa.field("label", pa.string()),
        pa.field("score", pa.float32()),
    ]
    if probs:
        fields += [pa.field(f"prob_{name}", pa.float32()) for name in labels]
    fields += [pa.field("status", pa.string()), pa.field("error", pa.string())]
    return pa.schema(fields)


def text_array(values: Sequence[str | None]) -> pa.Array:
    """A string column of the output. A lone surrogate (a JSON ``"\\ud800"`` escape, or a Python string given
    to the API) cannot be encoded in any output format: it is written as its escape, ``\\ud800``, so one
    such id never stops a run (the reader also marks its row as an error)."""
    try:
        return pa.array(values, type=pa.string())
    except UnicodeEncodeError:
        escaped = [
            None if v is None else v.encode("utf-8", "backslashreplace").decode("utf-8") for v in values
        ]
        return pa.array(escaped, type=pa.string())


def result_table(
    start: int,
    ids: list[str | None] | None,
    probs: np.ndarray,
    errors: list[str],
    labels: list[str],
    with_probs: bool,
) -> pa.Table:
    """The output rows of one window.

    ``probs``: ``(n, C)`` float32 probabilities in ``labels`` order (rows with an error are ignored);
    ``errors``: ``(n,)`` reasons, ``""`` for a scored row; ``ids``: ``--id-col`` values or None.
    """
    n = len(errors)
    # (n,) rows that failed; None when none did, the usual window, whose columns need no per-row loop
    failed = np.fromiter((bool(e) for e in errors), dtype=bool, count=n) if any(errors) else None
    best = probs.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)  # (n,)
    score = probs[np.arange(n), best].astype(np.float32)  # (n,)
    id_array = pa.array(np.arange(start, start + n, dtype=np.int64)) if ids is None else text_array(ids)
    names = pc.take(pa.array(labels, type=pa.string()), pa.array(best))
    columns: list[pa.Array] = [
        id_array,
        names if failed is None else pc.if_else(pa.array(failed), pa.scalar(None, pa.string()), names),
        pa.array(score, mask=failed),
    ]
    if with_probs:
        columns += [pa.array(probs[:, j].astype(np.float32), mask=failed) for j in range(len(labels))]
    columns += [
        pc.if_else(pa.array(np.zeros(n, bool) if failed is None else failed), "error", "ok"),
        _empty_strings(n) if failed is None else text_array(errors),
    ]
    return pa.Table.from_arrays(columns, schema=output_schema(labels, with_probs, ids is not None))


def _empty_strings(n: int) -> pa.Array:
    """``n`` empty strings (offsets all 0, no data), without building ``n`` Python strings."""
    return pa.StringArray.from_buffers(n, pa.py_buffer(np.zeros(n + 1, dtype=np.int32)), pa.py_buffer(b""))


def formula_labels(labels: Sequence[str], kind: str) -> list[str]:
    """The ``labels`` a ``kind`` (csv/tsv) output writes changed by the formula guard (``'-`` for ``-``), so
    that a run can say so before it starts: a join of such a file on the bundle's labels would miss them."""
    if kind not in ("csv", "tsv") or not labels:
        return []
    table = neutralise_formulas(pa.table({"label": pa.array(list(labels), pa.string())}))
    return [a for a, b in zip(labels, table.column(0).to_pylist(), strict=True) if a != b]


def warn_formula_labels(labels: Sequence[str], kind: str) -> None:
    """Say on stderr which labels a CSV/TSV output will write with the formula guard's ``'``."""
    changed = formula_labels(labels, kind)
    if changed:
        log.warning(
            "label(s) %s start like a spreadsheet formula, so this %s output writes them with a leading ' "
            "(its formula guard); write .jsonl or .parquet to keep the labels exactly as the bundle has them",
            ", ".join(map(repr, changed[:5])) + (" ..." if len(changed) > 5 else ""),
            kind.upper(),
        )


def neutralise_formulas(table: pa.Table) -> pa.Table:
    """Prefix ``'`` to string cells a spreadsheet would evaluate (CSV output only; numbers untouched)."""
    for i, fld in enumerate(table.schema):
        if not pa.types.is_string(fld.type):
            continue
        col = table.column(i)
        starts = pc.match_substring_regex(col, _FORMULA_START)
        if not pc.any(starts).as_py():  # the usual column: no second pass over it
            continue
        risky = pc.and_(starts, pc.invert(pc.match_substring_regex(col, _PLAIN_NUMBER)))
        if pc.any(risky).as_py():
            fixed = pc.if_else(risky, pc.binary_join_element_wise("'", col, ""), col)
            table = table.set_column(i, fld, fixed)
    return table


def _json_lines(table: pa.Table) -> str:
    """JSON Lines text of a result table, one object per row, keys in column order."""
    cols = []
    for fld, col in zip(table.schema, table.columns, strict=True):
        if pa.types.is_string(fld.type):
            values = [json.dumps(v, ensure_ascii=False) for v in col.to_pylist()]
        else:  # numbers: Arrow prints float32 as its shortest exact text ("0.9876543")
            values = pc.fill_null(col.cast(pa.string()), "null").to_pylist()
        cols.append(values)
    keys = [json.dumps(f.name) + ": " for f in table.schema]
    lines = (
        "{" + ", ".join(k + v for k, v in zip(keys, row, strict=True)) + "}\n"
        for row in zip(*cols, strict=True)
    )
    text = "".join(lines)
    if any(chr(c) in text for c in _LINE_SEPARATORS):  # only ever inside a JSON string: escaped there
        text = text.translate(_LINE_SEPARATORS)
    return text


# Characters valid raw in a JSON string that other line readers end a line at (Python's str.splitlines,
# JavaScript before ES2019): an id or label holding one read back as two records.
_LINE_SEPARATORS = {0x2028: "\\u2028", 0x2029: "\\u2029", 0x85: "\\u0085"}


class TableWriter(Protocol):
    def write(self, table: pa.Table) -> None: ...
    def close(self) -> None: ...


class _CsvWriter:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._w = pacsv.CSVWriter(str(path), schema)

    def write(self, table: pa.Table) -> None:
        self._w.write_table(neutralise_formulas(table))

    def close(self) -> None:
        self._w.close()


# TSV escapes, backslash first: a TSV field holds no tab or line break (IANA text/tab-separated-values),
# so they are written as \t, \n and \r, as PostgreSQL's and MySQL's text formats do.
_TSV_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))


class _TsvWriter:
    """Plain TSV: no quotes, one line per row, so ``cut -f``, ``awk -F'\t'`` and clsrun's own TSV reader
    (which reads quotes as ordinary characters) split it right. pyarrow's CSV writer quotes every string
    and refuses unquoted ones holding a quote, so the lines are joined here, a column at a time."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._f = open(path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
        self._f.write("\t".join(_tsv_field(name) for name in schema.names) + "\n")

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        table = neutralise_formulas(table)
        columns = [_tsv_column(table.column(i)) for i in range(table.num_columns)]
        lines = pc.binary_join_element_wise(*columns, "\t", null_handling="replace", null_replacement="")
        self._f.write("\n".join(lines.to_pylist()) + "\n")

    def close(self) -> None:
        self._f.close()


def _tsv_field(text: str) -> str:
    for raw, escaped in _TSV_ESCAPES:
        text = text.replace(raw, escaped)
    return text


def _tsv_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A result column as escaped text (numbers as their shortest spelling, as the CSV writer writes them)."""
    if not pa.types.is_string(column.type):
        return column.cast(pa.string())  # numbers: nothing to escape
    for raw, escaped in _TSV_ESCAPES:
        column = pc.replace_substring(column, raw, escaped)
    return column


class _JsonlWriter:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._f = open(path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115

    def write(self, table: pa.Table) -> None:
        self._f.write(_json_lines(table))

    def close(self) -> None:
        self._f.close()


class _ParquetWriter:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq  # only for Parquet: it is a tenth of pyarrow's import time

        self._w = pq.ParquetWriter(str(path), schema)

    def write(self, table: pa.Table) -> None:
        self._w.write_table(table)

    def close(self) -> None:
        self._w.close()


def open_writer(path: Path, schema: pa.Schema, kind: str) -> TableWriter:
    """A writer of result tables to ``path`` in ``kind`` (see :func:`output_format`)."""
    if kind == "csv":
        return _CsvWriter(path, schema)
    if kind == "tsv":
        return _TsvWriter(path, schema)
    if kind == "jsonl":
        return _JsonlWriter(path, schema)
    return _ParquetWriter(path, schema)


class TableFile:
    """A result file filled table by table as a run goes, appearing under its name only once complete.

    The tables go to a temporary file in ``tmp_dir`` (same file system as ``target``; default its folder),
    which :meth:`publish` flushes and renames over ``target``; :meth:`discard` (also after a publish: then
    a no-op) closes and deletes it. Scoring writes its output this way while the windows are written, so
    no pass over the parts is left for the end; :func:`write_atomically` is the same for tables at hand.
    """

    def __init__(self, target: Path, schema: pa.Schema, tmp_dir: Path | None = None) -> None:
        self.target = target
        self.tmp: Path | None = temporary_for(target, tmp_dir)
        try:
            self._writer: TableWriter | None = open_writer(self.tmp, schema, output_format(target))
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise

    def write(self, table: pa.Table) -> None:
        """Append ``table``, and flush what is written to disk now: :meth:`publish` then has little left to
        flush, where a whole run's output (gigabytes of a nightly job) could otherwise wait for it there."""
        assert self._writer is not None and self.tmp is not None, "written after publish or discard"
        self._writer.write(table)
        fsync_path(self.tmp)

    def publish(self) -> None:
        """Close the file and move it over ``target``, flushed before and after."""
        assert self._writer is not None and self.tmp is not None, "published twice"
        writer, self._writer = self._writer, None
        writer.close()
        publish(self.tmp, self.target)
        self.tmp = None

    def discard(self) -> None:
        """Close and delete the temporary file, unless it was published."""
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):  # a half-written file about to be deleted
                writer.close()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None


def write_atomically(
    target: Path, schema: pa.Schema, tables: Iterable[pa.Table], tmp_dir: Path | None = None
) -> None:
    """Write ``tables`` to ``target`` in the format its extension names, atomically (:class:`TableFile`).

    ``target`` appears only when complete; a failure leaves no partial file behind under either name.
    ``tmp_dir`` (same file system as ``target``; default its folder) holds the temporary file: the scorer
    puts it in its partial-output folder, so a run killed mid-write leaves nothing beside the output.
    """
    file = TableFile(target, schema, tmp_dir)
    try:
        for table in tables:
            file.write(table)
        file.publish()
    finally:
        file.discard()
