"""Text normalisation, applied identically before training and before scoring.

The settings live in the bundle (``BundleSpec.normalization``) so that a model never sees text prepared
differently from what it was trained on. :func:`normalize` is the definition, one text at a time;
:func:`normalize_many` gives exactly the same strings for a list, several times faster: pyarrow's
compute kernels normalise the whole list at once (C++, no per-text Python, the GIL released). pyarrow's
Unicode tables (utf8proc) are newer than Python's ``unicodedata``, and differ on the characters Python
does not know yet; a list that holds any such character (or a lone surrogate) is normalised text by text.
``tests/runtime/test_textnorm.py`` checks the two paths agree on every other character.
"""

from __future__ import annotations

import unicodedata

import numpy as np

from clsrun.runtime.bundle import Normalization

# What str.split() splits on (str.isspace()): the whitespace a run of which becomes one space.
_SPACES = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
_SPACE_RUN = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in _SPACES) + "]+"  # RE2 syntax


# Characters that show nothing: controls (NUL, DEL, ...), format characters (zero-width spaces and joiners,
# the byte order mark, bidi marks, soft hyphen) and spaces. A text made only of them gives a model no word
# and no character to go by, so it scores the model's constant answer to nothing: such a row is an error
# ("no readable text"), as an empty or whitespace-only one is. Only the test: nothing is removed from a text
# that has anything else (a zero-width joiner inside an emoji or a Persian word stays).
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def readable(text: str) -> bool:
    """True when ``text`` has a character that is not a space, a control or a format character (it stops at
    the first such character: the first, for almost every text)."""
    return any(unicodedata.category(ch) not in INVISIBLE_CATEGORIES for ch in text)


def normalize(text: str, norm: Normalization) -> str:
    """Return ``text`` normalised as ``norm`` says: unicode form, whitespace collapse, lowercase."""
    # is_normalized is a quick check that skips the (slow) normalisation of text already in that form;
    # split/join collapses exactly what ``\s+`` + strip() did (both use str.isspace), at a third of the cost.
    if norm.unicode_form and not unicodedata.is_normalized(norm.unicode_form, text):
        text = unicodedata.normalize(norm.unicode_form, text)
    if norm.collapse_whitespace:
        text = " ".join(text.split())
    if norm.lowercase:
        text = text.lower()
    return text


def normalize_many(texts: list[str], norm: Normalization) -> list[str]:
    """``[normalize(t, norm) for t in texts]``, computed with pyarrow when that gives the same strings."""
    if not texts or not (norm.unicode_form or norm.collapse_whitespace):
        return [normalize(t, norm) for t in texts]
    joined = "".join(texts)
    try:
        code_points = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    except UnicodeEncodeError:  # a lone surrogate: pyarrow cannot hold it
        return [normalize(t, norm) for t in texts]
    if not _all_known_to_python(code_points):
        return [normalize(t, norm) for t in texts]
    out = _arrow_normalize(texts, norm)
    return [t.lower() for t in out] if norm.lowercase else out  # str.lower: full case mapping, as normalize


def _arrow_normalize(texts: list[str], norm: Normalization) -> list[str]:
    import pyarrow as pa
    import pyarrow.compute as pc

    array = pa.array(texts, type=pa.string())
    if norm.unicode_form:
        array = pc.utf8_normalize(array, norm.unicode_form)
    if norm.collapse_whitespace:
        array = pc.utf8_trim(pc.replace_substring_regex(array, pattern=_SPACE_RUN, replacement=" "), " ")
    out: list[str] = array.to_pylist()
    return out


# Per code point: -1 not looked up yet, 0 known to Python's unicodedata, 1 unknown to it (category Cn).
# A cache filled as code points are first seen (a window brings a few new ones at most), instead of
# 1.1 million lookups at start-up; concurrent fills write the same values.
_STATUS = np.full(0x110000, -1, dtype=np.int8)


def _all_known_to_python(code_points: np.ndarray) -> bool:
    """True when Python's ``unicodedata`` knows every code point (none is unassigned in its tables)."""
    status = _STATUS[code_points]
    if (status < 0).any():
        new = np.unique(code_points[status < 0])
        _STATUS[new] = [unicodedata.category(chr(c)) == "Cn" for c in new.tolist()]
        status = _STATUS[code_points]
    return not (status > 0).any()
