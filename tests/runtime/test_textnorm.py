"""Text normalisation: the fast path gives exactly what the plain definition gives."""

from __future__ import annotations

import random
import re
import unicodedata

import pytest

from clsrun.runtime.bundle import Normalization
from clsrun.runtime.textnorm import normalize, normalize_many


def _reference(text: str, norm: Normalization) -> str:
    """The definition: unicode form, then every whitespace run to one space and stripped, then lowercase."""
    if norm.unicode_form:
        text = unicodedata.normalize(norm.unicode_form, text)
    if norm.collapse_whitespace:
        text = re.sub(r"\s+", " ", text).strip()
    return text.lower() if norm.lowercase else text


def _random_texts(n: int) -> list[str]:
    rng = random.Random(0)
    pool = [chr(c) for c in range(0x20, 0x3000)] + list(
        "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2028\u3000\ufeff"
    )
    pool += [*"，。！？（）ＡＢＣ１２３ｱｲｳ好差①Ⅻﬁ", "e\u0301", "\u1100\u1161"]
    return ["".join(rng.choice(pool) for _ in range(rng.randint(0, 40))) for _ in range(n)]


@pytest.mark.parametrize("form", ["NFKC", "NFC", None])
@pytest.mark.parametrize("lowercase", [False, True])
def test_fast_normalize_equals_the_definition(form: str | None, lowercase: bool) -> None:
    norm = Normalization(unicode_form=form, lowercase=lowercase)  # type: ignore[arg-type]
    for text in _random_texts(3000):
        assert normalize(text, norm) == _reference(text, norm), repr(text)


@pytest.mark.parametrize("form", ["NFKC", "NFC", "NFKD", None])
@pytest.mark.parametrize("lowercase", [False, True])
def test_normalize_many_equals_normalize(form: str | None, lowercase: bool) -> None:
    norm = Normalization(unicode_form=form, lowercase=lowercase)  # type: ignore[arg-type]
    texts = _random_texts(3000)
    assert normalize_many(texts, norm) == [normalize(t, norm) for t in texts]


def test_normalize_many_agrees_on_every_character_python_knows() -> None:
    """pyarrow's Unicode tables against Python's: every assigned code point alone, between letters and
    after spaces, and every canonical pair that composes. A list with a character Python does not know
    goes text by text, so it agrees too."""
    norm = Normalization()
    known = [c for c in range(0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Cs")]
    chunks = [known[i : i + 64] for i in range(0, len(known), 64)]
    texts = ["".join(f"a{chr(c)}b" for c in chunk) for chunk in chunks]
    texts += ["".join(f" \t{chr(c)}" for c in chunk) for chunk in chunks]
    pairs = [unicodedata.decomposition(chr(c)).split() for c in known]
    texts += ["".join(chr(int(x, 16)) for x in p) for p in pairs if len(p) == 2 and not p[0].startswith("<")]
    assert normalize_many(texts, norm) == [normalize(t, norm) for t in texts]
    newer = [c for c in range(0x20000) if unicodedata.category(chr(c)) == "Cn"][:50]
    odd = [f"x{chr(c)}\u3000y" for c in newer] + ["lone \ud800 surrogate"]
    assert normalize_many(odd, norm) == [normalize(t, norm) for t in odd]
