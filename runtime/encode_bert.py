"""BERT-family encoding: WordPiece ids through the ``tokenizers`` library, truncated the way the bundle says.

One code path for training and scoring: the trainer tokenizes through :class:`BertEncoder` too, so a
model never sees text cut differently from what it was trained on.

Truncation (``spec.model["truncation"]``), with ``body = max_length - 2`` tokens between [CLS] and [SEP]:

- ``head``: the first ``body`` tokens (what ``transformers`` does with ``truncation=True``).
- ``head-tail``: the first ``round(body * 128 / 510)`` and the last ``body - head`` tokens: 128 + 382 at
  512 (Sun et al., 2019, "How to Fine-Tune BERT for Text Classification?"), the same ratio at any other
  ``max_length``. Long news articles put their topic in the title and lead and their conclusion at the end.

Special tokens are added here, not by the tokenizer's post-processor, because truncation must happen
between tokenizing and adding them. Only one segment is ever encoded, so ``token_type_ids`` would be all
zeros, which is what BERT uses when they are absent: the model inputs are ``input_ids`` and
``attention_mask`` only (one fewer input to feed and export).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import chain
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from clsrun.runtime.bundle import SPECIAL_TOKENS_FILE, TOKENIZER_FILE, Bundle
from clsrun.runtime.encode import Tokens, pad_rows
from clsrun.runtime.errors import BundleError, damaged

TRUNCATIONS = ("head", "head-tail")
# Head share of head-tail truncation: 128 of the 510 body tokens at max_length 512.
_HEAD_SHARE = 128 / 510
# Texts longer than this many characters per kept token are cut (keeping both ends) before tokenizing:
# no WordPiece token spans 64 characters of collapsed text except an [UNK] word, so the kept tokens are
# the same, and a multi-megabyte row costs no more than a long article.
_CHARS_PER_TOKEN_CAP = 64


def head_tail_split(body: int, truncation: str) -> tuple[int, int]:
    """How many leading and trailing tokens of an over-long text to keep, ``head + tail == body``."""
    if truncation == "head":
        return body, 0
    if truncation == "head-tail":
        head = round(body * _HEAD_SHARE)
        return head, body - head
    raise BundleError(f"unknown truncation {truncation!r}; expected one of {', '.join(TRUNCATIONS)}")


def _special_token(
    tokenizer: Tokenizer, specials: dict[str, object], role: str, default: str, where: Path
) -> int:
    """The id of the ``role`` token (``cls_token``, ``sep_token``, ``pad_token``) of the tokenizer at ``where``."""
    value = specials.get(role, default)
    name = str(value["content"]) if isinstance(value, dict) else str(value)
    token_id = tokenizer.token_to_id(name)
    if token_id is None:
        raise BundleError(f"{where}: the tokenizer has no {role} {name!r}")
    return int(token_id)


def _read_specials(path: Path | None) -> dict[str, object]:
    """``special_tokens_map.json`` as a dict; empty when there is none (BERT's defaults apply)."""
    if path is None or not path.is_file():
        return {}
    with damaged(path, "valid JSON"):
        data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object")
    return data


def _encode_batch(tokenizer: Tokenizer) -> Callable[..., list[Encoding]]:
    """``encode_batch_fast`` (tokenizers 0.20 and later: no character offsets, which nothing here reads)."""
    fast: Callable[..., list[Encoding]] | None = getattr(tokenizer, "encode_batch_fast", None)
    return fast if fast is not None else tokenizer.encode_batch


class BertEncoder:
    """Encoder of a ``bert`` bundle (the :class:`~clsrun.runtime.encode.Encoder` protocol)."""

    input_names: tuple[str, ...] = ("input_ids", "attention_mask")

    def __init__(self, bundle: Bundle) -> None:
        """The encoder of a bundle: its tokenizer files are opened through ``bundle.file`` (listed, hashed)."""
        spec = bundle.spec
        specials = bundle.file(SPECIAL_TOKENS_FILE) if bundle.has(SPECIAL_TOKENS_FILE) else None
        self._setup(
            bundle.file(TOKENIZER_FILE), specials, spec.max_length, str(spec.model.get("truncation", "head"))
        )

    @classmethod
    def from_folder(cls, folder: Path | str, max_length: int, truncation: str) -> BertEncoder:
        """An encoder for a tokenizer folder that is not (yet) a bundle: the trainer's staging folder."""
        encoder = cls.__new__(cls)
        folder = Path(folder)
        encoder._setup(folder / TOKENIZER_FILE, folder / SPECIAL_TOKENS_FILE, max_length, truncation)
        return encoder

    def _setup(self, path: Path, specials_path: Path | None, max_length: int, truncation: str) -> None:
        if not path.is_file():
            raise BundleError(f"{path}: missing; a BERT model needs its tokenizer.json")
        if max_length < 3:
            raise BundleError(f"max_length {max_length} leaves no room for text between [CLS] and [SEP]")
        with damaged(path, "a readable tokenizer file"):
            self.tokenizer = Tokenizer.from_file(str(path))
        # Truncation and padding are done here, identically for every text; the file's own are off.
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.max_length = max_length
        self.truncation = truncation
        self.head, self.tail = head_tail_split(max_length - 2, truncation)
        specials = _read_specials(specials_path)
        self.cls_id = _special_token(self.tokenizer, specials, "cls_token", "[CLS]", path)
        self.sep_id = _special_token(self.tokenizer, specials, "sep_token", "[SEP]", path)
        self.pad_id = _special_token(self.tokenizer, specials, "pad_token", "[PAD]", path)

    def _clip_chars(self, text: str) -> str:
        cap = _CHARS_PER_TOKEN_CAP * (self.head + self.tail)
        if len(text) <= cap:
            return text
        head_chars = _CHARS_PER_TOKEN_CAP * self.head
        tail_chars = _CHARS_PER_TOKEN_CAP * self.tail
        return text[:head_chars] + " " + (text[-tail_chars:] if tail_chars else "")

    def tokenize(self, texts: list[str]) -> Tokens:
        """Tokenize a window of texts to ``[CLS] body [SEP]`` ids, ``body`` cut as the truncation says.

        ``tokenizers`` encodes the window on every core with the GIL released; what runs here under the
        GIL is one list of ids per text, and numpy for the rest: the ids are flattened in C
        (``chain.from_iterable``) and [CLS]/[SEP] written at positions computed from the lengths, instead
        of a Python step per token, which cost several times the encoding itself on a GPU run's short texts.
        """
        clipped = [self._clip_chars(t) for t in texts]
        encodings = _encode_batch(self.tokenizer)(clipped, add_special_tokens=False)
        bodies = [enc.ids for enc in encodings]
        body = self.head + self.tail
        found = np.fromiter(map(len, bodies), dtype=np.int64, count=len(bodies))  # (n,) before truncation
        for i in np.flatnonzero(found > body):  # the few over-long texts: keep head and tail
            row = bodies[i]
            bodies[i] = row[: self.head] + (row[-self.tail :] if self.tail else [])
        kept = np.minimum(found, body)  # (n,)
        flat_body = np.fromiter(chain.from_iterable(bodies), dtype=np.int64, count=int(kept.sum()))
        lengths = kept + 2  # (n,) with [CLS] and [SEP]
        ends = np.cumsum(lengths)  # (n,) one past each row's [SEP]
        ids = np.empty(int(ends[-1]) if len(ends) else 0, dtype=np.int64)  # (total,)
        special = np.zeros(len(ids), dtype=bool)  # (total,) True at [CLS] and [SEP]
        special[ends - lengths] = special[ends - 1] = True
        ids[ends - lengths] = self.cls_id
        ids[ends - 1] = self.sep_id
        ids[~special] = flat_body
        clipped_any = np.fromiter(
            (c is not t for c, t in zip(clipped, texts, strict=True)), dtype=bool, count=len(texts)
        )
        return Tokens.from_lengths(ids, lengths, (found > body) | clipped_any)

    def pad(self, tokens: Tokens, rows: np.ndarray) -> dict[str, np.ndarray]:
        ids, mask = pad_rows(tokens, rows, self.pad_id)
        return {"input_ids": ids, "attention_mask": mask.astype(np.int64)}  # each (B, T)
