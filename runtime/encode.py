"""The encoder contract: texts -> ragged token ids (once per window) -> model inputs (per batch).

Tokenizing happens once for a whole read-ahead window, so the batcher can sort the window by token length
before any padding is done; padding happens per batch, to the longest row of that batch only. A graph
whose input is a sparse matrix (the n-gram model's) takes its batch as :class:`SparseRows` instead: no
padding at all, so its windows are neither sorted nor padded (``BatchOptions.padded``).

- :class:`Tokens`: a window of texts tokenized once, stored ragged (flat ids + offsets; the ngram
  encoder adds a weight per id).
- :class:`Encoder`: what every model kind provides (``CharEncoder`` in ``encode_char.py``,
  ``BertEncoder`` in ``encode_bert.py``, ``NgramEncoder`` in ``encode_ngram.py``).
- :func:`pad_rows` / :func:`padded_index`: the shared ragged -> padded step (vectorised), reused by
  every encoder.
- :class:`SparseRows` / :class:`SparseEncoder`: rows as a CSR matrix, for a runner whose graph takes one
  (``Runner.sparse_inputs``).
- :func:`make_encoder`: the encoder of a bundle.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from clsrun.runtime.errors import BundleError

if TYPE_CHECKING:
    from clsrun.runtime.bundle import Bundle


@dataclass
class Tokens:
    """A window of ``n`` texts tokenized once, ragged: text ``i`` is ``ids[offsets[i]:offsets[i + 1]]``.

    ``lengths`` is what batch planning counts: tokens, characters, or (ngram) features.
    """

    ids: np.ndarray  # (total,) int64 flat token ids of all texts, concatenated
    offsets: np.ndarray  # (n + 1,) int64, offsets[0] == 0, offsets[-1] == total
    truncated: np.ndarray  # (n,) bool: the text was cut to the encoder's max_length
    weights: np.ndarray | None = None  # (total,) float32 weight of each id (ngram), else None

    @functools.cached_property
    def lengths(self) -> np.ndarray:
        """(n,) int64 token count of each text (after truncation); computed once (every batch asks)."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def from_lengths(
        cls, ids: np.ndarray, lengths: np.ndarray, truncated: np.ndarray, weights: np.ndarray | None = None
    ) -> Tokens:
        """Build from flat ids (and weights) and per-text lengths (the usual output of a tokenizer)."""
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if offsets[-1] != len(ids) or (weights is not None and len(weights) != len(ids)):
            raise AssertionError(
                f"lengths sum to {offsets[-1]} but there are {len(ids)} ids"
                + ("" if weights is None else f" and {len(weights)} weights")
            )
        return cls(ids.astype(np.int64, copy=False), offsets, truncated.astype(bool, copy=False), weights)


@dataclass(frozen=True)
class SparseRows:
    """``B`` rows of a ``(B, width)`` float32 matrix in CSR form: row ``i`` holds ``values[offsets[i]:
    offsets[i + 1]]`` at columns ``columns[offsets[i]:offsets[i + 1]]`` (unsorted, repeats add up).

    What a graph with a sparse input takes: the n-gram model's features are a few hundred of a hundred
    thousand columns, so a padded ``(B, T)`` gather costs more than the model itself (README: n-gram
    scoring).
    """

    values: np.ndarray  # (nnz,) float32
    columns: np.ndarray  # (nnz,) int64
    offsets: np.ndarray  # (B + 1,) int64, offsets[0] == 0
    width: int  # columns of the matrix

    def __len__(self) -> int:
        return len(self.offsets) - 1


# One batch's model inputs: {graph input name: (B, T) array, or SparseRows for a sparse graph input}.
ModelInputs = Mapping[str, np.ndarray | SparseRows]


class Encoder(Protocol):
    """Turns normalised texts into model inputs. ``input_names`` are the ONNX graph's input names."""

    max_length: int
    # ("input_ids",), ("input_ids", "attention_mask"[, "token_type_ids"]) or ("input_ids", "weights")
    input_names: tuple[str, ...]

    def tokenize(self, texts: list[str]) -> Tokens:
        """Tokenize a window of (already normalised, non-empty) texts, truncating to ``max_length``."""
        ...

    def pad(self, tokens: Tokens, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Model inputs for ``rows`` of ``tokens``: each ``(B, T)`` (int64 ids and masks, float32 weights),
        ``T`` = longest of those rows."""
        ...


@runtime_checkable
class CodepointEncoder(Encoder, Protocol):
    """An encoder that works on code points: its window is normalised straight into an array of them
    (``charmaps.normalize``), never into Python strings (the n-gram encoder)."""

    def tokenize_codepoints(self, c: np.ndarray, lengths: np.ndarray) -> Tokens:
        """:meth:`Encoder.tokenize` of the texts whose code points are ``c`` (N,), ``lengths`` (n,) each."""
        ...


@runtime_checkable
class SparseEncoder(Encoder, Protocol):
    """An encoder that can also give a batch as one sparse matrix (the n-gram encoder): for a graph whose
    input is sparse (``Runner.sparse_inputs``)."""

    def for_sparse_inputs(self, names: frozenset[str]) -> SparseEncoder:
        """The encoder to use for a graph whose sparse inputs are ``names`` (its tokens then suit them)."""
        ...

    def sparse(self, tokens: Tokens, rows: np.ndarray) -> dict[str, SparseRows]:
        """Model inputs for ``rows`` of ``tokens``: ``{sparse input name: rows as SparseRows}``."""
        ...


def pad_rows(tokens: Tokens, rows: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Gather ``rows`` of ragged ``tokens`` into a padded matrix, without a Python loop.

    Returns ``(ids, mask)``: ids ``(B, T)`` int64 filled with ``pad_id`` past each row's end, mask
    ``(B, T)`` bool, True on real tokens; ``T`` is the longest of ``rows``. The mask comes from the
    lengths, never from id values, so a real token whose id equals ``pad_id`` is still attended to.
    """
    gather, mask = padded_index(tokens, rows)
    ids = np.full(mask.shape, pad_id, dtype=np.int64)  # (B, T)
    ids[mask] = tokens.ids[gather[mask]]
    return ids, mask


def padded_index(tokens: Tokens, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(gather, mask)`` for padding ``rows`` of ``tokens``: gather ``(B, T)`` int64 index into the flat
    ids (meaningful where ``mask``), mask ``(B, T)`` bool, True on real tokens; ``T`` the longest row."""
    rows = np.asarray(rows, dtype=np.int64)
    lengths = tokens.lengths[rows]  # (B,)
    width = int(lengths.max()) if len(rows) else 0
    positions = np.arange(width, dtype=np.int64)  # (T,)
    mask = positions[None, :] < lengths[:, None]  # (B, T)
    gather = tokens.offsets[rows][:, None] + positions[None, :]  # (B, T) index into tokens.ids
    return gather, mask


def make_encoder(bundle: Bundle) -> Encoder:
    """The encoder for a bundle's kind; each is imported only when needed (BERT's loads ``tokenizers``)."""
    kind = bundle.spec.kind
    encoder: Encoder
    if kind == "charcnn":
        from clsrun.runtime.encode_char import CharEncoder

        encoder = CharEncoder.from_bundle(bundle)
        return encoder
    if kind == "bert":
        from clsrun.runtime.encode_bert import BertEncoder

        encoder = BertEncoder(bundle)
        return encoder
    if kind == "ngram":
        from clsrun.runtime.encode_ngram import NgramEncoder

        encoder = NgramEncoder.from_bundle(bundle)
        return encoder
    raise BundleError(f"{bundle.root}: no encoder for model kind {kind!r}")
