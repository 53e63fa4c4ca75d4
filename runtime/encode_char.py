"""Character encoding for the char-CNN: a vocabulary built from training text, and the encoder that scores with it.

Ids: 0 is padding, 1 is an unknown character, 2.. are the vocabulary's characters. Every character of
any script is one id, so Chinese works as well as English. Encoding a window is a handful of numpy
operations over the UTF-32 code points of the joined texts, with no per-character Python loop.

- :class:`CharVocab`: characters -> ids (built by the trainer, saved in the bundle);
- :class:`CharEncoder`: the runtime's :class:`~clsrun.runtime.encode.Encoder` for ``charcnn`` bundles.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clsrun.runtime.bundle import VOCAB_FILE, Bundle
from clsrun.runtime.encode import Tokens, pad_rows
from clsrun.runtime.errors import BundleError, damaged

PAD_ID = 0
UNK_ID = 1
_N_CODEPOINTS = 0x110000


@dataclass
class CharVocab:
    """An ordered list of distinct characters; character ``chars[i]`` has id ``i + 2``."""

    chars: list[str]
    _lut: np.ndarray = field(init=False, repr=False)  # (0x110000,) int32: code point -> id

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars):
            raise BundleError("character vocabulary has a character twice")
        if any(len(c) != 1 for c in self.chars):
            raise BundleError("character vocabulary entries must be single characters")
        lut = np.full(_N_CODEPOINTS, UNK_ID, dtype=np.int32)
        if self.chars:
            cps = np.fromiter((ord(c) for c in self.chars), dtype=np.int64, count=len(self.chars))
            lut[cps] = np.arange(2, len(self.chars) + 2, dtype=np.int32)
        self._lut = lut

    @property
    def size(self) -> int:
        """Number of ids, padding and unknown included (the embedding table's row count)."""
        return len(self.chars) + 2

    @classmethod
    def build(cls, texts: Iterable[str], max_size: int = 6000, min_freq: int = 2) -> CharVocab:
        """The ``max_size`` most frequent characters seen at least ``min_freq`` times (ties by code point)."""
        counts: Counter[str] = Counter()
        for t in texts:
            counts.update(t)
        ranked = sorted((c for c, n in counts.items() if n >= min_freq), key=lambda c: (-counts[c], ord(c)))
        return cls(ranked[:max_size])

    def save(self, path: Path | str) -> None:
        Path(path).write_text(
            json.dumps({"pad_id": PAD_ID, "unk_id": UNK_ID, "chars": self.chars}, ensure_ascii=False),
            encoding="utf-8",
        )

    @classmethod
    def load(cls, path: Path | str) -> CharVocab:
        with damaged(path, "a valid character vocabulary"):
            return cls(list(json.loads(Path(path).read_text(encoding="utf-8"))["chars"]))

    def ids_of(self, text: str) -> np.ndarray:
        """(len(text),) int64 ids of every character of ``text``: one table lookup over its code points."""
        # surrogatepass: a lone surrogate is one (unknown) character rather than an exception.
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        return self._lut[cps].astype(np.int64)


class CharEncoder:
    """Char-CNN encoder: one id per character, input ``input_ids`` only.

    Batches are padded to their longest row and no further: the network's convolutions use "same"
    padding, so it accepts any length, a one-character batch included.
    """

    input_names: tuple[str, ...] = ("input_ids",)

    def __init__(self, vocab: CharVocab, max_length: int) -> None:
        self.vocab = vocab
        self.max_length = max_length

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> CharEncoder:
        """The encoder of a char-CNN bundle. A vocabulary of another size than the model's embedding
        (``model.vocab_size``) is refused here, for every backend: an id past the embedding would fail
        inside the ONNX graph only when a row first holds such a character, mid-run."""
        path = bundle.file(VOCAB_FILE)
        vocab = CharVocab.load(path)
        size = bundle.spec.model.get("vocab_size")
        if isinstance(size, int) and vocab.size != size:
            raise BundleError(f"{path}: {vocab.size} ids, but clsrun.json says vocab_size {size}")
        return cls(vocab, bundle.spec.max_length)

    def tokenize(self, texts: list[str]) -> Tokens:
        n = len(texts)
        limit = self.max_length
        full = np.fromiter(map(len, texts), dtype=np.int64, count=n)  # (n,) characters before truncation
        truncated = full > limit
        if truncated.any():
            texts = [t[:limit] for t in texts]
        lengths = np.minimum(full, limit)
        return Tokens.from_lengths(self.vocab.ids_of("".join(texts)), lengths, truncated)

    def pad(self, tokens: Tokens, rows: np.ndarray) -> dict[str, np.ndarray]:
        ids, _ = pad_rows(tokens, rows, PAD_ID)
        return {"input_ids": ids}  # (B, T)
