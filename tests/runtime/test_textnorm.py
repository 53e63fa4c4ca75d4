"""Text normalisation: the fast path gives exactly what the plain definition gives."""

from __future__ import annotations

import random
import re
import unicodedata

import pytest

from clsrun.runtime.bundle import Normalization
from clsrun.runtime.textnorm import normalize


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
