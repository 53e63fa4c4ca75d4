"""The texts every backend scores: read from FILE once, normalised and tokenized once, batched as predict does.

Bulk throughput runs the length-sorted, token-budget batches ``clsrun predict`` plans for this bundle and
device (``BatchOptions`` resolved as ``Classifier.load`` resolves them), so every model backend runs
exactly the same padded batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clsrun.bench.config import BenchConfig
from clsrun.runtime.bundle import Bundle
from clsrun.runtime.encode import Tokens, make_encoder
from clsrun.runtime.errors import InputError


@dataclass
class Inputs:
    """The texts every backend scores, normalised and tokenized once."""

    raw: list[str]  # as in FILE (the predict path reads them from a file again)
    texts: list[str]  # normalised (what the encoder and the pipeline see)
    tokens: Tokens
    bulk_batches: list[np.ndarray]  # the length-sorted, token-budget batches `predict` would plan
    path: Path  # FILE
    text_col: str
    whole_file: bool  # every row of FILE was taken (no --max-rows cut): the predict path scores FILE itself


def _read(bundle: Bundle, cfg: BenchConfig) -> tuple[list[str], list[str], bool]:
    """The first ``max_rows`` texts of FILE with readable text after normalisation: raw, normalised, and
    whether that was every row of the file."""
    from clsrun.runtime.readers import iter_texts
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
