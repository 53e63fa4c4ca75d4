"""The texts every backend scores: read from FILE once, normalised once, batched as predict does.

Bulk throughput runs the batches ``clsrun predict`` plans. The shared plan (:attr:`Inputs.bulk_batches`):
length-sorted, token-budget batches for this bundle and device (``BatchOptions`` resolved as
``Classifier.load`` resolves them by default). A backend whose classifier plans otherwise runs its own plan
(:func:`planned_for`): an n-gram bundle's sparse fp32 graph takes unpadded batches in input order under a
larger budget, and the OpenVINO runner pads widths to a multiple of 8. Timing every variant on the shared
plan made a sparse graph look several times slower than ``predict`` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clsrun.bench.config import BenchConfig
from clsrun.runtime.bundle import Bundle
from clsrun.runtime.encode import Tokens, make_encoder
from clsrun.runtime.errors import InputError

if TYPE_CHECKING:
    from clsrun.runtime.classifier import Classifier


@dataclass
class Planned:
    """The rows one backend runs, as its classifier would run them in ``clsrun predict``."""

    tokens: Tokens  # from the classifier's own encoder (a counting graph's encoder gives no weights)
    batches: list[np.ndarray]
    padded: bool  # batches are padded to their longest row (else a sparse graph takes them as they are)
    width_multiple: int = 1  # the runner pads each batch's width up to a multiple of this

    def shapes(self) -> list[tuple[int, int]]:
        """``(rows, width)`` of every model input the batches make: a padded batch is one shape, its width
        rounded up to the runner's multiple; an unpadded batch costs what its rows would each alone."""
        lengths = self.tokens.lengths
        if not self.padded:
            return [(1, int(n)) for b in self.batches for n in lengths[b]]
        m = self.width_multiple
        return [(len(b), -(-int(lengths[b].max()) // m) * m) for b in self.batches if len(b)]

    def padded_tokens(self) -> int:
        """Tokens the model computes over: real ones plus padding (the real ones when unpadded)."""
        return sum(rows * width for rows, width in self.shapes())


@dataclass
class Inputs:
    """The texts every backend scores, normalised and tokenized once."""

    raw: list[str]  # as in FILE (the predict path reads them from a file again)
    texts: list[str]  # normalised (what the encoder and the pipeline see)
    tokens: Tokens
    bulk_batches: list[np.ndarray]  # the length-sorted, token-budget batches `predict` plans by default
    path: Path  # FILE
    text_col: str
    whole_file: bool  # every row of FILE was taken (no --max-rows cut): the predict path scores FILE itself


def _read(bundle: Bundle, cfg: BenchConfig) -> tuple[list[str], list[str], bool]:
    """The first ``max_rows`` texts of FILE with readable text after normalisation: raw, normalised, and
    whether that was every row of the file."""
    from clsrun.runtime.tables import iter_texts
    from clsrun.runtime.textnorm import normalize, readable

    raw: list[str] = []
    texts: list[str] = []
    for text in iter_texts(cfg.data, cfg.text_col):
        if cfg.max_rows and len(texts) >= cfg.max_rows:
            return raw, texts, False
        if text is None:
            continue
        norm = normalize(text, bundle.spec.normalization)
        if readable(norm):  # the texts predict scores (encode_pool.encode_texts)
            raw.append(text)
            texts.append(norm)
    return raw, texts, True


def load_inputs(bundle: Bundle, cfg: BenchConfig, device: str) -> Inputs:
    """Read the first ``max_rows`` non-empty texts of FILE, tokenize them and plan the bulk batches that
    ``clsrun predict`` would plan on ``device``."""
    from clsrun.runtime.batching import BatchOptions

    raw, texts, whole_file = _read(bundle, cfg)
    if not texts:
        raise InputError(f"{cfg.data}: no non-empty texts in column {cfg.text_col!r}")
    tokens = make_encoder(bundle).tokenize(texts)
    batches = BatchOptions().resolved(bundle.spec.kind, device).plan(tokens.lengths)  # as predict plans
    return Inputs(raw, texts, tokens, batches, cfg.data, cfg.text_col, whole_file)


def shared_plan(inputs: Inputs) -> Planned:
    """The plan of a backend that runs the shared batches (the pipeline, eager PyTorch, onnxruntime on a
    dense graph)."""
    return Planned(inputs.tokens, inputs.bulk_batches, padded=True)


def planned_for(clf: Classifier, inputs: Inputs) -> Planned:
    """The rows as ``clf`` runs them in ``clsrun predict``: its encoder's tokens and its batch plan. The
    shared plan when that is the same; a padded graph takes the shared tokens (its encoder is the bundle's)."""
    batching = clf.batching
    if batching.padded and batching.width_multiple == 1:
        return shared_plan(inputs)
    tokens = inputs.tokens if batching.padded else clf.encoder.tokenize(inputs.texts)
    return Planned(tokens, batching.plan(tokens.lengths), batching.padded, batching.width_multiple)
