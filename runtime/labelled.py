"""A labelled file for training or evaluation (``read_labelled``): texts and labels, as predict reads them.

Rows without a readable text or a label are dropped and counted, so a model is neither trained nor
measured on rows ``clsrun predict`` would not score. Labels are strings, one per class however the file
spelt them (``1``, ``1.0`` and ``"1"`` are one label); labels that only look alike are warned about.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import logging
import math
import re
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pyarrow as pa

from clsrun.runtime.bundle import has_control
from clsrun.runtime.columns import plain, textual, utf8_or_none
from clsrun.runtime.errors import InputError, clipped
from clsrun.runtime.input_files import ReadOptions, detect_format, open_bytes
from clsrun.runtime.row_errors import not_utf8_hint
from clsrun.runtime.tables import (
    COLUMN_WARN_MIN_ROWS,
    column_names,
    columns_said,
    read_table,
    warn_numbers_as_texts,
)
from clsrun.runtime.textnorm import readable

log = logging.getLogger(__name__)


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
            start = open_bytes(path, fmt.gzip, files)[0].read(1 << 16)
        codecs.utf_8_decode(start, "strict", False)  # not final: a character cut at the end is fine
    except UnicodeDecodeError:
        return f"; {not_utf8_hint(path)}"
    except (OSError, EOFError, zlib.error):
        return ""
    return ""


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
    values that are not strings are None already (``tables.py``)."""
    if not textual(column.type):
        raise InputError(f"{path}: column {name!r} holds {column.type}, not text")
    return cast(list[str | None], _cell_values(column))


def _cell_values(column: pa.ChunkedArray) -> list[object]:
    """A column's values as Python objects, each spelt so that :func:`label_text` makes one label of it in
    every format: booleans ``true``/``false`` (as JSON writes them), float32 at its own shortest spelling
    (``0.1``, not ``0.10000000149011612``), decimals as the numbers they are (``1.50`` and ``1.5`` one
    label), binary as UTF-8 text (None where it is not UTF-8), dictionary and view columns decoded."""
    values: list[object] = []
    for chunk in column.chunks:
        chunk = plain(chunk)
        kind = chunk.type
        if pa.types.is_boolean(kind) or (pa.types.is_floating(kind) and kind.bit_width < 64):
            chunk = chunk.cast(pa.float32()) if pa.types.is_float16(kind) else chunk
            values += chunk.cast(pa.string()).to_pylist()
        elif pa.types.is_decimal(kind):
            values += chunk.cast(pa.float64()).to_pylist()
        elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            values += [utf8_or_none(v) for v in chunk.to_pylist()]
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
