"""Text the model cannot read: one warning before scoring when the first rows are mostly what it never saw.

A model gives every row a label and a confident-looking score, whatever the row says. Scoring English with
the default model (Chinese reviews) labelled every article ``pos`` at 0.67-0.9999 and said nothing; a
MiniLM bundle on Chinese text reads ``[UNK]`` tokens. Each kind has its own sign of text it cannot read:

- BERT: the share of ``[UNK]`` tokens (its WordPiece vocabulary does not cover the script);
- char-CNN: the share of characters outside its vocabulary (learnt from the training text);
- n-gram: the script. Its hashed n-grams always land in some bucket, and English letters are common in
  Chinese reviews, so unknown buckets do not tell (English on the default model hits fewer unknown buckets
  than Chinese news does); its scheme records the script it was trained on (``cjk`` or ``alphabetic``),
  which the rows' letters are compared with.

Only a sample of the first rows is looked at, once, before any row is scored: a warning, never a refusal
(a user may score such text on purpose), on stderr beside the numbers-as-text one (``tables.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from clsrun.runtime.bundle import Normalization
from clsrun.runtime.encode import Encoder
from clsrun.runtime.encode_pool import encode_texts

if TYPE_CHECKING:
    from clsrun.runtime.classifier import Classifier

log = logging.getLogger(__name__)

SAMPLE_ROWS = 200  # first texts looked at
SAMPLE_CHARS = 20_000  # of which at most this many characters (the n-gram check counts letters in Python)
UNKNOWN_SHARE = 0.2  # [UNK] tokens, or characters outside the vocabulary, from which the model cannot read it
# letters of the other script (CJK for an alphabetic n-gram model, non-CJK for a CJK one) from which it is warned
OTHER_SCRIPT_SHARE = 0.9


def unreadable(kind: str, encoder: Encoder, norm: Normalization, texts: Sequence[str]) -> str | None:
    """Why the ``kind`` model behind ``encoder`` cannot read ``texts`` (a clause), or None when it can.
    Each kind's encoder module is imported only for its kind (BERT's loads ``tokenizers``)."""
    sample = _sample(texts)
    if not sample:
        return None
    if kind == "ngram":
        from clsrun.runtime.encode_ngram import NgramEncoder

        return _other_script(cast(NgramEncoder, encoder).scheme.script, sample)
    if kind == "bert":
        from clsrun.runtime.encode_bert import BertEncoder

        tokenizer = cast(BertEncoder, encoder).tokenizer
        unknown_id = tokenizer.token_to_id(getattr(tokenizer.model, "unk_token", "") or "")
        what = "tokens are [UNK] (outside its vocabulary)"
    elif kind == "charcnn":
        from clsrun.runtime.encode_char import UNK_ID

        unknown_id, what = UNK_ID, "characters are outside its vocabulary"
    else:
        return None
    ids = encode_texts(encoder, norm, sample).tokens.ids
    if unknown_id is None or not len(ids):
        return None
    share = float(np.count_nonzero(ids == unknown_id)) / len(ids)
    return f"{100 * share:.0f}% of their {what}" if share >= UNKNOWN_SHARE else None


def _sample(texts: Sequence[str]) -> list[str]:
    """The first non-empty ``texts``, at most :data:`SAMPLE_ROWS` of them and :data:`SAMPLE_CHARS` characters."""
    out: list[str] = []
    size = 0
    for text in texts[:SAMPLE_ROWS]:
        if text:
            out.append(text[: SAMPLE_CHARS - size])
            size += len(out[-1])
            if size >= SAMPLE_CHARS:
                break
    return out


def _other_script(script: str, texts: list[str]) -> str | None:
    """The clause when the letters of ``texts`` are mostly of the script an n-gram model was not trained on."""
    letters = [c for text in texts for c in text if c.isalpha()]
    if not letters:  # digits and punctuation: the numbers-as-text warning speaks for those
        return None
    from clsrun.runtime.encode_ngram import is_cjk

    cjk = float(is_cjk(np.fromiter(map(ord, letters), dtype=np.int64, count=len(letters))).mean())
    other = 1.0 - cjk if script == "cjk" else cjk
    if other < OTHER_SCRIPT_SHARE:
        return None
    trained, given = ("CJK", "not CJK") if script == "cjk" else ("alphabetic", "CJK")
    return f"{100 * other:.0f}% of their letters are {given}, and it was trained on {trained} text"


def warn_unreadable(
    path: Path | str, model: Path | str | None, clf: Classifier, texts: Sequence[str]
) -> None:
    """One warning on stderr when :func:`unreadable` finds ``texts`` (the first rows of ``path``) unreadable
    by ``clf``, loaded from ``model`` (None: the default model), as the message names it."""
    spec = clf.bundle.spec
    reason = unreadable(spec.kind, clf.encoder, spec.normalization, texts)
    if reason is not None:
        log.warning(
            "%s: %s cannot read most of the first rows: %s; its labels will mean little. Is it the "
            "right --model (or --text-col)?",
            path,
            "the default model" if model is None else f"the model {model}",
            reason,
        )
