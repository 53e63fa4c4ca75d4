"""Rows that could not be scored, counted by reason: what the manifest lists, what a user is told.

A row's ``error`` names the row's own details (``undecodable bytes (not UTF-8) at byte 17``, ``row 12: 3
fields, the header has 2``, ``invalid JSON: Expecting value: line 1 column 5 (char 4)``). Counted as they
are, a file with one problem would list a thousand reasons; :func:`reason_kind` drops what is specific to
the row (its number, a byte offset, the parser's detail after a colon) so that one cause is one entry.

When one reason covers most of the file, it is almost never a thousand bad rows but one wrong assumption
(the file is GBK, the text column is the wrong one, the delimiter is wrong): :func:`diagnose` says so
once, with the likely cause and the fix. ``--max-error-rate`` (:func:`check_error_rate`) lets a scheduler
fail such a run (exit 4) while the output and manifest are still written.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from clsrun.runtime.errors import ErrorRateExceeded

# Said once when one reason covers at least this share of a file of at least DIAGNOSE_MIN_ROWS rows.
DIAGNOSE_SHARE = 0.5
DIAGNOSE_MIN_ROWS = 10

_ROW_PREFIX = re.compile(r"^(?:row|line|record) \d+: ")
_POSITION = re.compile(r"\s*(?:\(char \d+\)|\b(?:at|in|on) (?:byte|offset|position|char|column|line) \d+)")
_NUMBER = re.compile(r"(?<![\w.'-])\d+(?![\w'-])")  # a bare count; "1048576-byte" and "'col1'" are kept


@functools.lru_cache(maxsize=4096)
def reason_kind(reason: str) -> str:
    """``reason`` without what is specific to one row, e.g. ``undecodable bytes (not UTF-8)``."""
    kind = _ROW_PREFIX.sub("", reason)
    kind = kind.split(": ", 1)[0]  # after a colon: the parser's words about this row
    kind = _POSITION.sub("", kind)
    kind = _NUMBER.sub("N", kind).strip()
    return _ONE_FIELD.sub("N fields", kind)  # "1 field" and "3 fields" are one kind of error


_ONE_FIELD = re.compile(r"^N field\b")


def count_reasons(errors: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    """Error rows per reason kind in an output's ``error`` column (empty strings and nulls are ok rows)."""
    counts: dict[str, int] = {}
    for item in pc.value_counts(errors).to_pylist():
        if item["values"]:
            kind = reason_kind(item["values"])
            counts[kind] = counts.get(kind, 0) + int(item["counts"])
    return counts


_NOT_UTF8 = (
    "the file is probably not UTF-8 (GBK, GB18030 or Latin-1?); convert it first, e.g. "
    "`iconv -f gbk -t utf-8 {path} > {converted}`"
)


def not_utf8_hint(path: Path) -> str:
    """The likely cause and fix of text that is not UTF-8, for ``path``."""
    return _NOT_UTF8.format(path=path, converted=_converted(path))


def _converted(path: Path) -> Path:
    return path.with_name(f"{path.stem}.utf8{path.suffix}")


# (pattern on a reason kind, likely cause and fix); {path} and {text_col} are filled in.
_HINTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"undecodable bytes|not UTF-8"), _NOT_UTF8),
    (
        re.compile(r"^text is a (?:JSON )?\w+, not a string"),
        "the field {text_col!r} holds numbers or other values, not text: is it the right field? "
        "Choose the text with --text-col",
    ),
    (
        re.compile(r"^no '.*' field$"),
        "most records have no field {text_col!r}: choose the text field with --text-col",
    ),
    (
        re.compile(r"^(?:null text|empty or whitespace-only text|no readable text after normalisation)$"),
        "the column {text_col!r} is mostly empty: is it the right column? Choose the text with --text-col",
    ),
    (
        re.compile(r"fields?, the header has"),
        "most records do not split into the header's columns: is the delimiter right? (--delimiter)",
    ),
    (
        re.compile(r"^invalid JSON|not an object|^JSON nested too deeply"),
        "most lines are not JSON objects: is this a JSON Lines file (one object per line)?",
    ),
]


@dataclass(frozen=True)
class Cause:
    """The reason (or family of reasons sharing one hint) behind most error rows of a run."""

    rows: int  # error rows it covers
    reasons: list[str]  # the reason kinds, most frequent first
    hint: str | None  # the likely cause and the fix, when the reasons are a known family

    def said(self) -> str:
        shown = " / ".join(repr(r) for r in self.reasons[:2]) + (" ..." if len(self.reasons) > 2 else "")
        return f"{shown}: {self.hint}" if self.hint else shown


def main_cause(manifest: dict[str, Any]) -> Cause | None:
    """The reason covering at least :data:`DIAGNOSE_SHARE` of a run's rows, None when failures are few or
    scattered (those are the rows' own problems, listed per row and per reason in the manifest).

    Reasons that share a hint count together (``text is a JSON int`` and ``... float`` are one mistake).
    """
    rows = int(manifest.get("rows_read", 0))
    reasons: dict[str, int] = manifest.get("error_reasons") or {}
    if rows < DIAGNOSE_MIN_ROWS or not reasons:
        return None
    families: dict[int | str, list[str]] = {}  # hint index (or the reason itself, without one) -> reasons
    for reason in sorted(reasons, key=lambda r: -reasons[r]):
        key = next((i for i, (pattern, _) in enumerate(_HINTS) if pattern.search(reason)), reason)
        families.setdefault(key, []).append(reason)
    key, members = max(families.items(), key=lambda kv: sum(reasons[r] for r in kv[1]))
    count = sum(reasons[r] for r in members)
    if count < DIAGNOSE_SHARE * rows:
        return None
    path = Path(str(manifest.get("input", "FILE")))
    converted = _converted(path)
    text_col = (manifest.get("options") or {}).get("text_col", "text")
    hint = _HINTS[key][1] if isinstance(key, int) else None
    hint = hint and hint.format(path=path, converted=converted, text_col=text_col)
    return Cause(count, members, hint)


def diagnose(manifest: dict[str, Any]) -> str | None:
    """One line when one reason covers most rows of the run in ``manifest``, with the likely cause and fix."""
    cause = main_cause(manifest)
    if cause is None:
        return None
    return f"{cause.rows:,} of {int(manifest['rows_read']):,} rows failed with {cause.said()}"


def error_rate(manifest: dict[str, Any]) -> float:
    """Error rows over rows read (0 for an empty file)."""
    rows = int(manifest.get("rows_read", 0))
    return int(manifest.get("error", 0)) / rows if rows else 0.0


def check_error_rate(manifest: dict[str, Any], limit: float | None) -> None:
    """Raise :class:`ErrorRateExceeded` (exit 4) when more rows failed than ``limit`` (a fraction) allows."""
    if limit is None or error_rate(manifest) <= limit:
        return
    errors, rows = int(manifest["error"]), int(manifest["rows_read"])
    line = (
        f"{errors:,} of {rows:,} rows failed ({error_rate(manifest):.1%}, over --max-error-rate {limit:g}); "
        f"{manifest['output']} and its manifest were written"
    )
    cause = main_cause(manifest)
    raise ErrorRateExceeded(f"{line}; most with {cause.said()}" if cause else line)
