"""Text normalisation, applied identically before training and before scoring.

The settings live in the bundle (``BundleSpec.normalization``) so that a model never sees text prepared
differently from what it was trained on.
"""

from __future__ import annotations

import re
import unicodedata

from clsrun.runtime.bundle import Normalization

_WS = re.compile(r"\s+")


def normalize(text: str, norm: Normalization) -> str:
    """Return ``text`` normalised as ``norm`` says: unicode form, whitespace collapse, lowercase."""
    if norm.unicode_form:
        text = unicodedata.normalize(norm.unicode_form, text)
    if norm.collapse_whitespace:
        text = _WS.sub(" ", text).strip()
    if norm.lowercase:
        text = text.lower()
    return text


def normalize_many(texts: list[str], norm: Normalization) -> list[str]:
    """Normalise a list of texts (a list comprehension: unicodedata is C, this is not the bottleneck)."""
    return [normalize(t, norm) for t in texts]
