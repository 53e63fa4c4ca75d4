"""Windows and batches: regroup the input stream into fixed-size windows, then plan length-sorted batches.

Why windows: sorting a bounded read-ahead window by token length puts texts of similar length together,
so a batch padded to its longest row wastes little (README: padded tokens per real token, sorted vs
random batches). A window has a fixed number of rows (fewer when its texts are long: a
character budget bounds its memory), and where one ends depends only on the rows from its start, so the
windows of a resumed run are exactly those of an uninterrupted one (``partial.py`` checkpoints whole windows).

Why a token budget: the cost of a padded batch is ``longest length x rows``. Filling batches against a
budget of padded tokens keeps that cost constant, so short texts go in big batches and long ones in
small ones, instead of a fixed row count that is too small for one and too big (memory) for the other.

A model that takes its rows unpadded (a sparse input, ``encode.SparseRows``) gains nothing from sorting:
its batches are consecutive rows, each batch's tokens (not padded tokens) within the budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import cast

import numpy as np
import pyarrow.compute as pc

from clsrun.runtime.arrow_texts import ArrowTexts
from clsrun.runtime.errors import InternalError, UsageError
from clsrun.runtime.readers import RecordChunk

DEFAULT_WINDOW = 8192  # rows sorted together; also the unit of a resume checkpoint
# A window also ends once its texts hold this many characters: a row count alone bounds nothing when texts
# are long (8,192 texts at the 1 MiB cap are 8 GiB, and the n-gram encoder holds about 60 bytes per
# character while it works), and two windows are in flight at once. Short texts never reach it.
WINDOW_TEXT_CHARS = 1 << 22
# Rows in one batch at most, by device. On CUDA the host launches every kernel of a batch from Python
# (a few milliseconds for a BERT forward, whatever its size), so a batch must hold enough rows for the
# GPU's share of the work to outlast that; the token budget still bounds its memory.
DEFAULT_MAX_BATCH_ROWS = {"cpu": 1024, "cuda": DEFAULT_WINDOW}
# Padded tokens per batch when --batch-tokens is not given, by model kind and device. char-CNN
# convolutions are cheap per token, so large batches amortise the per-call overhead. BERT on CPU: a
# batch whose activations stay in the CPU caches (README: the MiniLM batch-budget comparison). BERT on
# CUDA: 262144 tokens (about 4000 rows of 64 tokens, 512 of 512), a quarter of the launches of 65536
# tokens per row scored: eager PyTorch launches every kernel from one Python thread, and that thread, not
# the GPU, bounds short texts (README: the GPU check). Activations grow with the budget: on a small GPU
# a BERT-base model may need a lower --batch-tokens.
# ngram: "tokens" are features, a table lookup and a multiply-add each, so the per-call overhead dominates
# until batches are large.
DEFAULT_BATCH_TOKENS = {
    "charcnn": {"cpu": 32768, "cuda": 32768},
    "bert": {"cpu": 1024, "cuda": 262144},
    "ngram": {"cpu": 65536, "cuda": 65536},
}


# A model that takes its rows unpadded (a sparse input) costs per feature, not per padded cell, and each batch
# costs the inference stream a few hand-offs of the GIL: a window of short texts per batch scored faster than
# 65536-feature batches in alternating runs (README: n-gram scoring). The budget bounds what a batch's CSR
# matrix holds (12 bytes per feature); half of it scored about 5 % slower with a fifth less peak memory.
DEFAULT_UNPADDED_BATCH_TOKENS = 1 << 21


def default_batch_tokens(kind: str, device: str) -> int:
    """The padded-token budget of one batch for a bundle ``kind`` running on ``device``."""
    return DEFAULT_BATCH_TOKENS.get(kind, {}).get(device, 8192)


def default_max_batch_rows(device: str) -> int:
    """The most rows one batch holds on ``device`` (``cpu``/``cuda``)."""
    return DEFAULT_MAX_BATCH_ROWS.get(device, DEFAULT_MAX_BATCH_ROWS["cpu"])


@dataclass(frozen=True)
class BatchOptions:
    """How rows are grouped: read-ahead windows, sorted by length, cut into token-budget batches."""

    window: int = DEFAULT_WINDOW  # --window: rows read ahead and length-sorted together
    batch_tokens: int | None = None  # --batch-tokens: padded (or unpadded) tokens per batch; None: default
    max_batch_rows: int | None = None  # rows per batch at most; None: by device (unpadded: the window)
    sort: bool = True  # length-sort each window (off only to measure what sorting buys)
    padded: bool = True  # the model takes padded rows; False (a sparse input): consecutive rows, no sorting
    # the runner pads widths to a multiple of this: batches are planned on those widths
    width_multiple: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.window < 1:
            problems.append(f"--window {self.window}: must be a positive number of rows")
        if self.batch_tokens is not None and self.batch_tokens < 1:
            problems.append(f"--batch-tokens {self.batch_tokens}: must be a positive number of tokens")
        if self.max_batch_rows is not None and self.max_batch_rows < 1:
            problems.append(f"max_batch_rows {self.max_batch_rows}: must be at least 1")
        if self.width_multiple < 1:
            problems.append(f"width_multiple {self.width_multiple}: must be at least 1")
        if problems:
            raise UsageError("; ".join(problems))

    def resolved(self, kind: str, device: str, padded: bool = True, width_multiple: int = 1) -> BatchOptions:
        """These options with ``batch_tokens`` and ``max_batch_rows`` filled in for a ``kind`` bundle
        running on ``device``, for a model that takes ``padded`` rows (or a sparse input) and pads their
        widths to a multiple of ``width_multiple``."""
        if not padded:  # batches of consecutive rows, up to a whole window, within a budget of real tokens
            return replace(
                self,
                batch_tokens=self.batch_tokens or DEFAULT_UNPADDED_BATCH_TOKENS,
                max_batch_rows=self.max_batch_rows or self.window,
                padded=False,
            )
        return replace(
            self,
            batch_tokens=self.batch_tokens or default_batch_tokens(kind, device),
            max_batch_rows=self.max_batch_rows or default_max_batch_rows(device),
            padded=True,
            width_multiple=width_multiple,
        )

    def plan(self, lengths: np.ndarray) -> list[np.ndarray]:
        """:func:`plan_batches` of rows with token ``lengths`` (n,) under these (:meth:`resolved`) options."""
        if self.batch_tokens is None or self.max_batch_rows is None:
            raise InternalError("BatchOptions.plan() before resolved(): this is a bug")
        return plan_batches(
            lengths,
            self.batch_tokens,
            self.max_batch_rows,
            sort=self.sort and self.padded,
            padded=self.padded,
            width_multiple=self.width_multiple,
        )


def windows(
    chunks: Iterable[RecordChunk], size: int, max_chars: int = WINDOW_TEXT_CHARS
) -> Iterator[RecordChunk]:
    """Regroup consecutive chunks into windows of ``size`` rows, or fewer where their texts reach
    ``max_chars`` characters (the row that reaches it ends the window; the last window may be shorter).

    Where a window ends depends only on the rows from its start on, whatever the reader's chunk sizes
    were, so a resume that starts at a window boundary sees the same windows as an uninterrupted run.
    """
    if size <= 0:
        raise ValueError(f"window size must be positive, got {size}")
    pending: list[RecordChunk] = []
    chars = np.zeros(0, dtype=np.int64)  # characters of each pending row
    for chunk in chunks:
        pending.append(chunk)
        chars = np.concatenate([chars, text_chars(chunk)])
        while (n := _window_rows(chars, size, max_chars)) is not None:
            window, pending = _split(pending, n)
            chars = chars[n:]
            yield window
    if len(chars):
        yield _split(pending, len(chars))[0]


def _window_rows(chars: np.ndarray, size: int, max_chars: int) -> int | None:
    """Rows of the next complete window among pending rows of ``chars`` characters, None until one is."""
    reached = np.flatnonzero(np.cumsum(chars[:size]) >= max_chars)
    if len(reached):
        return int(reached[0]) + 1
    return size if len(chars) >= size else None


def text_chars(chunk: RecordChunk) -> np.ndarray:
    """Characters (code points) of each text of ``chunk``; 0 for an error row. Code points, not bytes: the
    same count whether the reader gave the rows as an Arrow column or as Python strings."""
    texts = chunk.texts
    if isinstance(texts, ArrowTexts):
        counts = pc.utf8_length(texts.array).fill_null(0)
        return np.asarray(counts.to_numpy(zero_copy_only=False), dtype=np.int64)
    return np.fromiter((0 if t is None else len(t) for t in texts), dtype=np.int64, count=len(texts))


def _split(chunks: list[RecordChunk], n: int) -> tuple[RecordChunk, list[RecordChunk]]:
    """The first ``n`` rows of ``chunks`` as one chunk, and the chunks that remain."""
    ids: list[str | None] | None = None if chunks[0].ids is None else []
    texts: list[Sequence[str | None]] = []
    errors: list[str] = []
    start = chunks[0].start
    rest: list[RecordChunk] = []
    need = n
    for i, c in enumerate(chunks):
        take = min(need, len(c))
        texts.append(c.texts[:take])
        errors += c.errors[:take]
        if ids is not None and c.ids is not None:
            ids += c.ids[:take]
        need -= take
        if take < len(c):
            tail_ids = None if c.ids is None else c.ids[take:]
            rest = [RecordChunk(c.start + take, tail_ids, c.texts[take:], c.errors[take:]), *chunks[i + 1 :]]
            break
        if need == 0:
            rest = list(chunks[i + 1 :])
            break
    return RecordChunk(start, ids, _joined(texts), errors), rest


def _joined(runs: list[Sequence[str | None]]) -> Sequence[str | None]:
    """Consecutive runs of texts as one: still an Arrow column when every run is one (ArrowTexts)."""
    if all(isinstance(run, ArrowTexts) for run in runs):
        return ArrowTexts.concat(cast(list[ArrowTexts], runs))
    return [text for run in runs for text in run]


def plan_batches(
    lengths: np.ndarray,
    batch_tokens: int,
    max_rows: int = DEFAULT_MAX_BATCH_ROWS["cpu"],
    sort: bool = True,
    padded: bool = True,
    width_multiple: int = 1,
) -> list[np.ndarray]:
    """Split rows ``0..n-1`` into batches whose padded cost ``longest x rows`` stays within ``batch_tokens``.

    ``lengths``: (n,) token counts. With ``sort``, rows are taken in order of length (stable, so equal
    lengths keep input order); without it, in input order (the baseline the benchmark compares with).
    ``padded=False`` (a model that takes unpadded rows): the cost is the sum of the lengths instead.
    A row longer than the whole budget still gets a batch of its own. Returns arrays of row indices.

    ``width_multiple``: the runner pads each batch's width up to a multiple of this (padded rows only), so
    lengths are rounded up to it first: the budget then bounds the cost that runs, and every full batch of
    one padded width has the same number of rows. A runner that prepares kernels per input shape (OpenVINO
    on CPU) meets fewer shapes that way; without the rounding, batches of one padded width had rows
    ``budget // longest`` for each longest row in it.
    """
    n = len(lengths)
    if n == 0:
        return []
    if padded and width_multiple > 1:
        lengths = -(-np.asarray(lengths) // width_multiple) * width_multiple
    order = np.argsort(lengths, kind="stable") if sort else np.arange(n)
    ordered = np.maximum(lengths[order], 1)  # (n,)
    batches: list[np.ndarray] = []
    start = 0
    while start < n:
        span = ordered[start : start + max_rows]  # (<= max_rows,)
        # (<= max_rows,) tokens of each candidate batch: padded (its longest row so far x rows), or real ones
        cost = np.maximum.accumulate(span) * np.arange(1, len(span) + 1) if padded else np.cumsum(span)
        fits = int(np.searchsorted(cost > batch_tokens, True))  # cost is non-decreasing: first overflow
        take = max(fits, 1)
        batches.append(order[start : start + take])
        start += take
    return batches


def padding_ratio(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Padded tokens per real token over ``batches`` (1.0 means no padding at all)."""
    real = int(lengths.sum())
    padded = sum(int(lengths[b].max()) * len(b) for b in batches if len(b))
    return padded / max(real, 1)
