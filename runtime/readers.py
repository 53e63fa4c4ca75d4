"""Reading input files: CSV, TSV, JSONL and Parquet, each optionally gzip-compressed, chosen by extension.

The runtime streams files in record batches (never the whole file in memory); the trainer reads a whole
labelled file through :func:`read_labelled`, built on the same readers so both see identical text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from clsrun.runtime.errors import InputError

FORMATS = ("csv", "tsv", "jsonl", "parquet")


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
                read_options=pacsv.ReadOptions(block_size=1 << 16),
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
