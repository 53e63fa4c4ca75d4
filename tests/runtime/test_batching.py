"""Windows, token-budget batches and the ragged -> padded step."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from clsrun.runtime.arrow_texts import ArrowTexts
from clsrun.runtime.batching import (
    DEFAULT_UNPADDED_BATCH_TOKENS,
    BatchOptions,
    padding_ratio,
    plan_batches,
    windows,
)
from clsrun.runtime.encode import Tokens, pad_rows
from clsrun.runtime.encode_char import CharEncoder, CharVocab
from clsrun.runtime.errors import InternalError
from clsrun.runtime.readers import RecordChunk


def _chunks(sizes: list[int]) -> list[RecordChunk]:
    out, start = [], 0
    for n in sizes:
        texts: list[str | None] = [f"t{start + i}" for i in range(n)]
        out.append(RecordChunk(start, None, texts, [""] * n))
        start += n
    return out


@pytest.mark.parametrize("sizes", [[10, 10, 10], [1] * 30, [7, 23], [30]])
def test_windows_do_not_depend_on_how_the_reader_chunked(sizes: list[int]) -> None:
    got = list(windows(_chunks(sizes), 8))
    assert [w.start for w in got] == [0, 8, 16, 24]
    assert [len(w) for w in got] == [8, 8, 8, 6]
    assert [t for w in got for t in w.texts] == [f"t{i}" for i in range(30)]


@pytest.mark.parametrize("sizes", [[12], [1] * 12, [5, 7], [3, 3, 6]])
@pytest.mark.parametrize("arrow", [False, True])
def test_long_texts_end_a_window_at_its_character_budget_wherever_the_reader_chunked(
    sizes: list[int], arrow: bool
) -> None:
    """Rows bound nothing when texts are long (8,192 texts at the 1 MiB cap): a window also ends at the
    row that brings it to the character budget, counted in code points whether the reader gave an Arrow
    column or Python strings, and the same windows come out of any chunking (so a resume sees them)."""
    lengths = [1, 2, 3, 40, 1, 1, 1, 1, 25, 0, 100, 2]  # 0: an error row (no text)
    texts = [None if n == 0 else "é" * n for n in lengths]
    out, start = [], 0
    for n in sizes:
        run: list[str | None] = texts[start : start + n]
        part = ArrowTexts(pa.array(run, pa.string())) if arrow else run
        out.append(RecordChunk(start, None, part, [""] * n))
        start += n
    got = list(windows(out, 8, max_chars=30))
    assert [(w.start, len(w)) for w in got] == [(0, 4), (4, 7), (11, 1)]  # 46, then 129 characters
    assert [t for w in got for t in w.texts] == texts  # every row once, in order


def test_batches_cover_every_row_once_within_the_budget() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=5000)
    batches = plan_batches(lengths, batch_tokens=4096, max_rows=256)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(5000))
    for b in batches:
        assert len(b) <= 256
        assert int(lengths[b].max()) * len(b) <= 4096


def test_batches_of_one_padded_width_have_one_row_count_within_the_padded_budget() -> None:
    """A runner that pads widths to a multiple of 8 meets one shape per width, not one per longest row."""
    rng = np.random.default_rng(2)
    lengths = rng.integers(20, 130, size=2000)

    def shapes(batches: list[np.ndarray]) -> list[tuple[int, int]]:  # (padded width, rows) of each batch
        return [(-(-int(lengths[b].max()) // 8) * 8, len(b)) for b in batches]

    batches = plan_batches(lengths, batch_tokens=1024, max_rows=1024, width_multiple=8)
    assert sorted(np.concatenate(batches).tolist()) == list(range(2000))
    planned = shapes(batches)
    assert all(width * rows <= 1024 for width, rows in planned)  # the budget bounds the padded cost
    # every batch is full but the one that ends a width's rows: two shapes per width at most
    assert all(n <= 2 for n in Counter(width for width, _ in set(planned)).values())
    own = shapes(plan_batches(lengths, batch_tokens=1024, max_rows=1024))  # planned on the rows' own lengths
    assert len(set(planned)) < len(set(own))


def test_a_row_longer_than_the_budget_gets_its_own_batch() -> None:
    batches = plan_batches(np.array([3, 5000, 4]), batch_tokens=100)
    assert [len(b) for b in batches] == [2, 1]


def test_sorting_cuts_padding_on_mixed_lengths() -> None:
    rng = np.random.default_rng(1)
    lengths = np.clip(rng.lognormal(3.5, 0.8, size=8192).astype(np.int64), 1, 512)  # like short reviews
    unsorted = padding_ratio(lengths, plan_batches(lengths, 32 * 512, max_rows=32, sort=False))
    sorted_ = padding_ratio(lengths, plan_batches(lengths, 32 * 512, max_rows=32, sort=True))
    assert unsorted > 1.5
    assert sorted_ < 1.05


def test_pad_rows_mask_comes_from_lengths_not_ids() -> None:
    tokens = Tokens.from_lengths(np.array([5, 0, 7, 8, 9]), np.array([2, 3]), np.array([False, True]))
    ids, mask = pad_rows(tokens, np.array([1, 0]), pad_id=0)
    assert ids.tolist() == [[7, 8, 9], [5, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, True, False]]  # the real id 0 is attended to


def test_char_encoder_truncates_counts_and_pads_to_the_longest_row_only() -> None:
    enc = CharEncoder(CharVocab(list("ab好")), max_length=4)  # ids: a=2, b=3, 好=4; 0 pads
    tokens = enc.tokenize(["ab", "好abab", "b"])
    assert tokens.lengths.tolist() == [2, 4, 1]
    assert tokens.truncated.tolist() == [False, True, False]
    # a one-character batch stays one wide: the char-CNN accepts any length
    assert enc.pad(tokens, np.array([2]))["input_ids"].tolist() == [[3]]
    assert enc.pad(tokens, np.array([0, 1]))["input_ids"].tolist() == [[2, 3, 0, 0], [4, 2, 3, 2]]


def test_a_gpu_gets_few_large_batches_within_its_budget() -> None:
    cpu, cuda = BatchOptions().resolved("bert", "cpu"), BatchOptions().resolved("bert", "cuda")
    assert (cpu.batch_tokens, cpu.max_batch_rows) == (1024, 1024)
    assert (cuda.batch_tokens, cuda.max_batch_rows) == (262144, 8192)
    lengths = np.random.default_rng(0).integers(8, 80, size=8192)  # a window of short texts
    batches = cuda.plan(lengths)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(8192))  # every row once
    assert all(int(lengths[b].max()) * len(b) <= 262144 and len(b) <= 8192 for b in batches)
    assert len(batches) <= 3 and len(cpu.plan(lengths)) > 100 * len(batches)  # a launch per ~3000 rows
    assert len(cuda.plan(np.full(16384, 4))) == 2  # tiny texts: the row cap, not the token budget


def test_sizes_given_are_kept_on_every_device() -> None:
    given = BatchOptions(batch_tokens=500, max_batch_rows=7)
    assert given.resolved("bert", "cuda") == given.resolved("charcnn", "cpu") == given


def test_planning_before_resolving_is_a_bug() -> None:
    with pytest.raises(InternalError, match="this is a bug"):
        BatchOptions().plan(np.array([3, 4]))


def test_unpadded_rows_are_planned_in_order_by_their_tokens() -> None:
    """A sparse-input model: no sorting (nothing is padded), consecutive rows, real tokens within budget."""
    rng = np.random.default_rng(2)
    lengths = rng.integers(1, 300, size=3000)
    options = BatchOptions(batch_tokens=5000, max_batch_rows=100).resolved("ngram", "cpu", padded=False)
    batches = options.plan(lengths)
    assert np.array_equal(np.concatenate(batches), np.arange(3000))
    for b in batches:
        assert np.array_equal(b, np.arange(b[0], b[-1] + 1))
        assert len(b) <= 100 and (int(lengths[b].sum()) <= 5000 or len(b) == 1)
        assert len(b) == 100 or b[-1] == 2999 or int(lengths[b[0] : b[-1] + 2].sum()) > 5000  # full
    assert [len(b) for b in plan_batches(np.array([3, 5000, 4]), 100, sort=False, padded=False)] == [1, 1, 1]
    defaults = BatchOptions(window=500).resolved("ngram", "cpu", padded=False)
    assert defaults.max_batch_rows == 500 and defaults.batch_tokens == DEFAULT_UNPADDED_BATCH_TOKENS
    assert len(defaults.plan(np.full(500, 200))) == 1  # a window of short texts is one batch
