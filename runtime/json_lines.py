"""JSON Lines records, one line at a time: pyarrow.json has no streaming reader, and one bad line must
not fail its neighbours, so lines are cut in blocks under a size cap and decoded by the standard library.

Numbers are kept as written (an id ``1.50`` stays ``1.50``), bytes that are not UTF-8 fail only the field
that holds them, and a ``.json`` array of records is refused rather than read as one bad line per element.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from clsrun.runtime.columns import escape_surrogates, valid_unicode
from clsrun.runtime.delimited import BOM
from clsrun.runtime.errors import InputError


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


def _bytes_escaped(s: str) -> str:
    """``s``, decoded with ``surrogateescape``, with its bytes that are not UTF-8 as ``\\xNN`` escapes (as a
    CSV id's, :func:`bytes_as_text`); unchanged when it also holds a lone surrogate of another origin."""
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return s


class NumberText(str):
    """A JSON number kept as written, never converted: an id ``1.50``, ``-0`` or ``12345678901234567890.0``
    is written back as that, where a float or an int would print ``1.5``, ``0`` and
    ``1.2345678901234567e+19`` (and make two ids one); and an integer of 5,000 digits in any field is
    no error (Python refuses to convert integers over 4,300 digits)."""

    kind = "number"


class _FloatText(NumberText):
    """A JSON number with a fraction or exponent."""

    kind = "float"  # named so in "text is a JSON float, not a string"


class _IntText(NumberText):
    """A JSON integer."""

    kind = "int"


# One decoder for every line (json.loads makes one per call).
_JSON_LINE = json.JSONDecoder(parse_float=_FloatText, parse_int=_IntText)


def decode_json_line(line: bytes, lenient: bool = True) -> Any:
    """One JSON Lines record as every reader decodes it (scoring, the first-block check, train and eval):
    numbers kept as written (:class:`NumberText`), lone surrogates kept for the caller to judge. Bytes that
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
    return value.kind if isinstance(value, NumberText) else type(value).__name__


def _json_text(value: Any) -> str:
    """A decoded JSON value written back as JSON, numbers as they were written (``json.dumps`` would quote
    them: they are strings here)."""
    if isinstance(value, NumberText):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_json_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_json_text(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def json_row(
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
    if not isinstance(value, str) or isinstance(value, NumberText):
        return None, rid_text, f"text is a JSON {_json_kind(value)}, not a string"
    if suspect and not valid_unicode(value):
        return None, rid_text, "text is not valid Unicode (a lone surrogate such as \\ud800)"
    if len(value) * 4 > max_bytes and len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        return None, rid_text, f"text over the {max_bytes}-byte size cap"
    if not value.strip():
        return None, rid_text, "empty or whitespace-only text"
    return value, rid_text, ""


def capped_lines(f: IO[bytes], block: int, cap: int) -> Iterator[list[bytes | None]]:
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
