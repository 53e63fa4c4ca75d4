"""Normalising and lowercasing a whole window as one array of code points, exactly as Python does it text
by text.

The n-gram encoder hashes code points. Normalising its window as Python strings first (``textnorm.
normalize_many``) costs a round trip through pyarrow and utf8proc's NFKC, which is most of a short text's
encoding; Python's own ``unicodedata.normalize`` text by text is slower still. No library normalises an
array of code points, hence this module.

How. Most characters normalise on their own: they and their decomposition begin with a starter (combining
class 0) that is never the second half of a canonical composition, so nothing before them can change them,
and nothing after them can change them either (what follows begins with such a starter too, which blocks
any mark after it from reaching back). For a text made only of such characters, the normal form is the text
mapped character by character, to one character or a few (``…`` becomes ``...`` under NFKC): a lookup table
does it for the whole window. The table is filled as code points are first seen (a window brings a few new
ones), by asking Python's ``unicodedata``, so it follows the running Python's Unicode version. Any other
character (a combining mark, a Hangul vowel or trailing jamo, a capital sigma when lowercasing, whose lower
case depends on what follows) sends its text to Python's own functions, and the result is spliced back.
``tests/runtime/test_charmaps.py`` checks both against ``textnorm.normalize`` and ``str.lower``.

Arrays: ``c`` (N,) uint32 code points of the texts joined, ``lengths`` (n,) int64 characters per text.
"""

from __future__ import annotations

import functools
import threading
import unicodedata
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from clsrun.runtime.arrow_texts import ArrowTexts
from clsrun.runtime.bundle import Normalization

UnicodeForm = Literal["NFC", "NFD", "NFKC", "NFKD"]

UNKNOWN = -2  # table entry: code point not looked up yet
UNSAFE = -1  # table entry: the character does not map on its own; its text goes to Python
EXPANDS = -3  # table entries EXPANDS - k: the character becomes expansion k, several code points
N_CODE_POINTS = 0x110000
SIGMA = 0x03A3  # str.lower maps it to a final or a medial sigma depending on the letters around it
# Starters (combining class 0) that are the second half of a canonical two-character decomposition, found
# by scanning every code point with ``unicodedata.decomposition`` (a third of a second, too slow for every
# start-up, so kept here for the Unicode version it was scanned on; any other version scans once).
# Hangul vowel and trailing jamo compose by rule, not by table, and are added in ``_second_halves``.
_SECOND_HALF_STARTERS = {
    "14.0.0": (
        0x9BE, 0x9D7, 0xB3E, 0xB56, 0xB57, 0xBBE, 0xBD7, 0xCC2, 0xCD5, 0xCD6, 0xD3E, 0xD57, 0xDCF,
        0xDDF, 0xFB5, 0xFB7, 0x102E, 0x1B35, 0x11127, 0x1133E, 0x11357, 0x114B0, 0x114BA, 0x114BD,
        0x115AF, 0x11930,
    ),
}  # fmt: skip
HANGUL_V = range(0x1161, 0x1176)  # vowel jamo: compose with a leading consonant
HANGUL_T = range(0x11A8, 0x11C3)  # trailing consonant jamo: compose with an LV syllable
HANGUL_SYLLABLES = range(0xAC00, 0xD7A4)  # decompose into jamo by rule, not by unicodedata.decomposition


def scan_second_half_starters() -> frozenset[int]:
    """Every starter that is the second character of some canonical two-character decomposition."""
    found = set()
    for code in range(N_CODE_POINTS):
        parts = unicodedata.decomposition(chr(code)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            second = int(parts[1], 16)
            if unicodedata.combining(chr(second)) == 0:
                found.add(second)
    return frozenset(found)


@functools.lru_cache(maxsize=1)
def _second_halves() -> frozenset[int]:
    """Starters that may compose with the character before them (so they cannot be mapped alone)."""
    known = _SECOND_HALF_STARTERS.get(unicodedata.unidata_version)
    starters = frozenset(known) if known is not None else scan_second_half_starters()
    return starters | frozenset(HANGUL_V) | frozenset(HANGUL_T)


def _form_of(form: UnicodeForm, code: int) -> str | None:
    """What ``chr(code)`` becomes alone under ``form`` (one character or more), or None when what is
    around it could change that."""
    char = chr(code)
    if unicodedata.combining(char):
        return None
    if not unicodedata.decomposition(char) and code not in _second_halves() and code not in HANGUL_SYLLABLES:
        return char  # no decomposition (Hangul syllables decompose by rule): itself in every form
    decomposed = unicodedata.normalize("NFKD" if "K" in form else "NFD", char)
    if unicodedata.combining(decomposed[0]) or ord(decomposed[0]) in _second_halves():
        return None
    return unicodedata.normalize(form, char)


def _lower_of(code: int) -> str | None:
    """``chr(code).lower()``, or None for the capital sigma (its lower case depends on its neighbours)."""
    return None if code == SIGMA else chr(code).lower()


class _LazyTable:
    """code point -> what it becomes, looked up the first time a code point is seen.

    An entry is the mapped code point (>= 0), :data:`UNSAFE`, :data:`UNKNOWN`, or ``EXPANDS - k`` for a
    character that becomes several (``…`` -> ``...`` under NFKC): expansion ``k`` of ``expansions``.
    Filling takes a lock (new code points are rare); lookups do not: an entry is written only after the
    expansion it names is in place."""

    def __init__(self, of: Callable[[int], str | None]) -> None:
        self._of = of
        self._table = np.full(N_CODE_POINTS, UNKNOWN, dtype=np.int32)
        self._lock = threading.Lock()
        # every expansion's code points end to end, and (k + 1,) where each starts
        self.expansions: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.uint32), np.zeros(1, np.int64))

    def __call__(self, c: np.ndarray) -> np.ndarray:
        """(N,) int32 table entries of the code points ``c``."""
        entries = self._table.take(c)  # take: a third faster than self._table[c] for uint32 code points
        if (entries == UNKNOWN).any():
            with self._lock:
                new = np.unique(c[self._table[c] == UNKNOWN]).tolist()
                values = [self._entry(self._of(code)) for code in new]
                self._table[new] = values
            entries = self._table.take(c)
        return entries

    def _entry(self, mapped: str | None) -> int:
        if mapped is None:
            return UNSAFE
        if len(mapped) == 1:
            return ord(mapped)
        flat, starts = self.expansions
        self.expansions = (
            np.concatenate((flat, codepoints([mapped])[0])),
            np.append(starts, starts[-1] + len(mapped)),
        )
        return EXPANDS - (len(starts) - 1)


@functools.cache
def _form_table(form: UnicodeForm) -> _LazyTable:
    """The table of one unicode form, made when first needed (each holds a number per code point)."""
    return _LazyTable(functools.partial(_form_of, form))


@functools.cache
def _lower_table() -> _LazyTable:
    return _LazyTable(_lower_of)


_SPACE = np.array([chr(c).isspace() for c in range(0x3001)], dtype=bool)  # what str.split() splits on


def is_space(c: np.ndarray) -> np.ndarray:
    """(N,) bool: the code point is whitespace as ``str.split()`` means it (``str.isspace``)."""
    space = np.zeros(len(c), dtype=bool)
    low = c < len(_SPACE)
    space[low] = _SPACE[c[low]]
    return space


def codepoints(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(c, lengths)`` of ``texts`` (a lone surrogate is one code point, as in a Python string); texts
    still in their Arrow column (``ArrowTexts``) go from its UTF-8 bytes, with no string per text."""
    if isinstance(texts, ArrowTexts):
        return texts.codepoints()
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    c = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return c, lengths


def text_of(c: np.ndarray) -> str:
    """The string of the code points ``c`` (inverse of :func:`codepoints` for one text)."""
    return c.astype(np.uint32, copy=False).tobytes().decode("utf-32-le", "surrogatepass")


@functools.cache
def _invisible_codepoints() -> np.ndarray:
    """Sorted uint32 code points of ``textnorm.INVISIBLE_CATEGORIES``: every such character is in the BMP
    but a few format characters (Kaithi, Egyptian hieroglyph and musical-symbol controls, tags), whose
    ranges are scanned too."""
    from clsrun.runtime.textnorm import INVISIBLE_CATEGORIES

    ranges = [range(0x10000), range(0x110BD, 0x110CE), range(0x13430, 0x13460), range(0x1BCA0, 0x1BCA4)]
    ranges += [range(0x1D173, 0x1D17B), range(0xE0000, 0xE0080)]
    found = [c for r in ranges for c in r if unicodedata.category(chr(c)) in INVISIBLE_CATEGORIES]
    return np.array(found, dtype=np.uint32)


def readable_rows(c: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(n,) bool: the texts with a character that is not a space, a control or a format character
    (``textnorm.readable`` for a whole window of code points)."""
    out = np.zeros(len(lengths), dtype=bool)
    rows = np.flatnonzero(lengths)
    if len(rows):
        visible = ~np.isin(c[: int(lengths.sum())], _invisible_codepoints())
        out[rows] = np.logical_or.reduceat(visible, starts_of(lengths)[rows])
    return out


def starts_of(lengths: np.ndarray) -> np.ndarray:
    """(n,) int64 index of each text's first code point."""
    return np.cumsum(lengths) - lengths


def _text_at(positions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(k,) int64 the text holding each code point of ``positions``."""
    return np.searchsorted(np.cumsum(lengths), positions, side="right")


def _texts_at(positions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(k,) int64 distinct texts holding the code points at ``positions`` (sorted)."""
    return np.unique(_text_at(positions, lengths))


def _map(c: np.ndarray, lengths: np.ndarray, table: _LazyTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mapped (M,) uint32, lengths (n,), bad texts)``: code points mapped by ``table``, unsafe ones left
    as they were (their texts, ``bad``, are to be redone by Python), expanding ones expanded."""
    entries = table(c)
    unsafe = np.flatnonzero(entries == UNSAFE)
    entries[unsafe] = c[unsafe]
    bad = _texts_at(unsafe, lengths)
    grows = np.flatnonzero(entries <= EXPANDS)
    if not len(grows):
        return entries.view(np.uint32), lengths, bad
    flat, starts = table.expansions
    which = EXPANDS - entries[grows]  # (g,) expansion of each growing code point
    # (g,) at least 2: one code point is an entry of its own, and no character normalises or lowercases to none
    size = starts[which + 1] - starts[which]
    out = entries.view(np.uint32)  # entries is this call's own array
    out[grows] = flat[starts[which]]  # each expansion's first code point in place of the character
    rest = size - 1  # (g,) and the others inserted after it: a few per window, so no pass per window
    within = np.arange(int(rest.sum()), dtype=np.int64) - np.repeat(np.cumsum(rest) - rest, rest)
    out = np.insert(out, np.repeat(grows + 1, rest), flat[np.repeat(starts[which] + 1, rest) + within])
    grown = np.bincount(_text_at(grows, lengths), weights=rest, minlength=len(lengths))
    return out, lengths + grown.astype(np.int64), bad


def collapse_whitespace(c: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``" ".join(text.split())`` of every text: runs of whitespace become one space, none at either end.

    Works on the whitespace positions alone (a few per text): each run of them inside its text keeps its
    first as ``" "``, every other one goes (one pass over the window to drop them, none when nothing goes).
    """
    low = np.flatnonzero(c < len(_SPACE))  # whitespace is all below U+3001
    at = low[_SPACE[c[low]]]  # (s,) positions of whitespace
    if not len(at):
        return c, lengths
    text = _text_at(at, lengths)  # (s,) text of each
    starts = starts_of(lengths)
    continues = np.zeros(len(at), dtype=bool)  # the character before is whitespace of the same text
    continues[1:] = (at[1:] == at[:-1] + 1) & (text[1:] == text[:-1])
    first = np.flatnonzero(~continues)  # (r,) index in `at` of each run's first position
    last = np.append(first[1:], len(at)) - 1  # (r,) and of its last
    run_text = text[first]
    inside = (at[first] > starts[run_text]) & (at[last] + 1 < starts[run_text] + lengths[run_text])
    kept = np.zeros(len(at), dtype=bool)
    kept[first[inside]] = True
    dropped, kept_at = at[~kept], at[kept]
    if not len(dropped) and (c[kept_at] == 0x20).all():
        return c, lengths
    keep = np.ones(len(c), dtype=bool)
    keep[dropped] = False
    out = c[keep]
    out[kept_at - np.searchsorted(dropped, kept_at)] = 0x20  # where each kept one lands once others went
    return out, lengths - np.bincount(text[~kept], minlength=len(lengths))


def lower(c: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``text.lower()`` of every text."""
    mapped, new_lengths, bad = _map(c, lengths, _lower_table())
    if not len(bad):
        return mapped, new_lengths
    starts = starts_of(lengths)
    fixed = [text_of(c[starts[i] : starts[i] + lengths[i]]).lower() for i in bad.tolist()]
    return splice(mapped, new_lengths, bad, fixed)


def normalize(texts: Sequence[str], norm: Normalization) -> tuple[np.ndarray, np.ndarray]:
    """``codepoints([textnorm.normalize(t, norm) for t in texts])``, for the whole window at once."""
    c, lengths = codepoints(texts)
    bad = np.zeros(0, dtype=np.int64)
    if norm.unicode_form:
        c, lengths, bad = _map(c, lengths, _form_table(norm.unicode_form))
    if norm.collapse_whitespace:
        c, lengths = collapse_whitespace(c, lengths)
    if norm.lowercase:
        c, lengths, lower_bad = _map(c, lengths, _lower_table())
        bad = np.union1d(bad, lower_bad)
    if not len(bad):
        return c, lengths
    from clsrun.runtime.textnorm import normalize as normalize_one

    return splice(c, lengths, bad, [normalize_one(texts[i], norm) for i in bad.tolist()])


def splice(
    c: np.ndarray, lengths: np.ndarray, which: np.ndarray, texts: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Texts ``which`` (sorted) of ``(c, lengths)`` replaced by ``texts``."""
    replaced = np.zeros(len(lengths), dtype=bool)
    replaced[which] = True
    new_lengths = lengths.copy()
    new_lengths[which] = [len(t) for t in texts]
    out = np.empty(int(new_lengths.sum()), dtype=np.uint32)
    old_kept = np.repeat(~replaced, lengths)
    new_kept = np.repeat(~replaced, new_lengths)
    out[new_kept] = c[old_kept]
    out[~new_kept] = codepoints(texts)[0]
    return out, new_lengths
