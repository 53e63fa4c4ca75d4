"""Normalising windows as code points (``charmaps``) gives exactly ``textnorm.normalize`` and ``str.lower``,
text by text, whatever the neighbours of a character are."""

from __future__ import annotations

import itertools
import random
import unicodedata

import numpy as np
import pytest

from clsrun.runtime import charmaps
from clsrun.runtime.bundle import Normalization
from clsrun.runtime.textnorm import normalize

NORMS = [
    Normalization(unicode_form=form, lowercase=lower, collapse_whitespace=collapse)  # type: ignore[arg-type]
    for form in (None, "NFC", "NFD", "NFKC", "NFKD")
    for lower in (False, True)
    for collapse in (False, True)
]
# Characters whose form depends on their neighbours or is longer than one character: combining marks,
# Hangul jamo (conjoining and compatibility), starters that compose with the character before them, the
# capital sigma, ligatures, the ellipsis, a dotted capital I, spaces of several kinds, a lone surrogate.
TRICKY = [
    *"eEaA가각\u1100\u1161\u11a8\u3131\u314f\u0301\u0300\u0327\u0323\u0345\u0340",
    *"\u0cc6\u0cd5\u0cc2\u0bc6\u0bbe\u0dd9\u0dcf\u09c7\u09be\u0b47\u0b3e",
    *"ΣσςΑİIıﬁﬀ…℃½①Ⅻ，ＡｶﾞÅ\u212b\u2126",
    *" \t\n\u3000\u00a0\u1680\u2028\x1c\x85",
    "\ud800",
]


def _decoded(c: np.ndarray, lengths: np.ndarray) -> list[str]:
    starts = charmaps.starts_of(lengths)
    return [charmaps.text_of(c[s : s + n]) for s, n in zip(starts.tolist(), lengths.tolist(), strict=True)]


@pytest.mark.parametrize("norm", NORMS, ids=str)
def test_every_pair_of_tricky_characters_normalises_as_python_does(norm: Normalization) -> None:
    texts = ["".join(p) for p in itertools.product(TRICKY, repeat=2)]
    texts += ["".join(p) for p in itertools.product(TRICKY[:16], "xΣ ", TRICKY[:16])]
    c, lengths = charmaps.normalize(texts, norm)
    assert c.dtype == np.uint32
    assert _decoded(c, lengths) == [normalize(t, norm) for t in texts]


@pytest.mark.parametrize("norm", NORMS, ids=str)
def test_random_windows_normalise_as_python_does(norm: Normalization) -> None:
    rng = random.Random(1)
    pool = [chr(c) for c in range(0x20, 0x3100)] + [chr(c) for c in range(0xAC00, 0xAC40)] + ["\U0001d400"]
    texts = [
        "".join(
            rng.choice(TRICKY) if rng.random() < 0.3 else rng.choice(pool) for _ in range(rng.randint(0, 30))
        )
        for _ in range(2000)
    ]
    assert _decoded(*charmaps.normalize(texts, norm)) == [normalize(t, norm) for t in texts]


def test_every_code_point_alone_and_between_letters() -> None:
    """Each of the 1.1 million code points, under the default normalisation (NFKC, spaces collapsed)."""
    norm = Normalization()
    chars = [chr(c) for c in range(0x110000)]
    texts = [f"a{ch}b" for ch in chars] + chars
    assert _decoded(*charmaps.normalize(texts, norm)) == [normalize(t, norm) for t in texts]


def test_lower_is_str_lower_text_by_text() -> None:
    """Text by text, not over the window joined: a final sigma ends its own text."""
    texts = ["ΑΣ", "Β", "İSTANBUL", "ΣΑΣ ΑΣ.", "", "ﬁ ÀÉ", "\ud800A"]
    c, lengths = charmaps.lower(*charmaps.codepoints(texts))
    assert _decoded(c, lengths) == [t.lower() for t in texts]


def test_whitespace_collapse_keeps_text_boundaries() -> None:
    texts = ["  a  b  ", " ", "", "c\u3000\td", "e ", " f"]
    c, lengths = charmaps.collapse_whitespace(*charmaps.codepoints(texts))
    assert _decoded(c, lengths) == [" ".join(t.split()) for t in texts]


def test_whitespace_collapse_of_random_windows_and_windows_of_only_whitespace() -> None:
    """Runs at a text's start or end or spanning a text boundary, whitespace-only texts and windows, and
    windows with no whitespace at all (given back as they are)."""
    rng = random.Random(7)
    pool = [*"ab好", " ", "  ", "\t", "\u3000", "\u00a0", "\n", "\x1c"]
    windows = [[], ["好a"], [" "], ["\u3000", "", "\t\n"]]
    windows += [
        ["".join(rng.choice(pool) for _ in range(rng.randint(0, 12))) for _ in range(rng.randint(1, 40))]
        for _ in range(300)
    ]
    for texts in windows:
        c, lengths = charmaps.codepoints(texts)
        collapsed, new_lengths = charmaps.collapse_whitespace(c, lengths)
        assert _decoded(collapsed, new_lengths) == [" ".join(t.split()) for t in texts]
    c, lengths = charmaps.codepoints(["好a", "bc"])
    assert charmaps.collapse_whitespace(c, lengths)[0] is c  # nothing to do: no copy


def test_the_kept_list_of_composing_starters_is_this_pythons() -> None:
    """The starters that compose with the character before them are kept per Unicode version (scanning
    costs a third of a second); for the running Python's version they are what a scan finds."""
    known = charmaps._SECOND_HALF_STARTERS.get(unicodedata.unidata_version)
    scanned = charmaps.scan_second_half_starters()
    assert scanned and (known is None or frozenset(known) == scanned)
    assert scanned <= charmaps._second_halves()


def test_readable_rows_agrees_with_readable_text_by_text() -> None:
    from clsrun.runtime.textnorm import readable

    rng = random.Random(5)
    pool = ["\x00", "\x01", "\x7f", "\x85", "\u00ad", "\u200b", "\u200d", "\u2028", "\u3000", "\ufeff", " "]
    pool += ["\U000e0041", "\U0001d173", "a", "好", "\u0301", "\U0001f600", "\ue000"]
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 4))) for _ in range(3000)]
    c, lengths = charmaps.codepoints(texts)
    assert charmaps.readable_rows(c, lengths).tolist() == [readable(t) for t in texts]
    assert not readable("\u200b\ufeff\x00 ") and readable("\ue000") and not readable("")
