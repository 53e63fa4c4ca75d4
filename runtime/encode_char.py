"""Character encoding for the char-CNN: a vocabulary built from training text and a vectorised encoder.

Ids: 0 is padding, 1 is an unknown character, 2.. are the vocabulary's characters. Every character of
any script is one id, so Chinese works as well as English. Encoding a batch is a handful of numpy
operations over the UTF-32 code points of the joined batch, with no per-character Python loop.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clsrun.runtime.errors import BundleError

PAD_ID = 0
UNK_ID = 1
_N_CODEPOINTS = 0x110000
VOCAB_FILE = "vocab.json"


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
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(list(data["chars"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BundleError(f"{path}: not a valid character vocabulary ({e})") from e

    def ids_of(self, text: str) -> np.ndarray:
        """(len(text),) int64 ids of every character of ``text``: one table lookup over its code points."""
        # surrogatepass: a lone surrogate is one (unknown) character rather than an exception.
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        return self._lut[cps].astype(np.int64)

    def encode(self, texts: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """Encode texts to ids, padded to the longest (clipped) text of the batch.

        Returns ``(ids, lengths)``: ids is ``(B, T)`` int64 with ``T = min(longest, max_length)``
        (at least 1), lengths is ``(B,)`` int64 of the clipped lengths. Texts over ``max_length``
        characters keep their head.
        """
        n = len(texts)
        clipped = [t[:max_length] for t in texts]
        lengths = np.fromiter(map(len, clipped), dtype=np.int64, count=n)
        width = max(int(lengths.max()) if n else 0, 1)
        ids = np.zeros((n, width), dtype=np.int64)
        total = int(lengths.sum())
        if total == 0:
            return ids, lengths
        flat = self.ids_of("".join(clipped))  # (total,)
        rows = np.repeat(np.arange(n), lengths)
        starts = np.cumsum(lengths) - lengths
        cols = np.arange(total) - np.repeat(starts, lengths)
        ids[rows, cols] = flat
        return ids, lengths
