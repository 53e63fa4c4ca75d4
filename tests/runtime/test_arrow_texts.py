"""Texts kept as their Arrow column: a sequence like the list it replaces, code points straight from its
UTF-8 bytes, and windows and encodings equal to the ones Python strings give."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from clsrun.runtime import charmaps
from clsrun.runtime.arrow_texts import ArrowTexts
from clsrun.runtime.batching import windows
from clsrun.runtime.bundle import Normalization
from clsrun.runtime.encode_ngram import NgramEncoder, NgramScheme, NgramVocabulary, hash_features
from clsrun.runtime.encode_pool import encode_texts
from clsrun.runtime.input_files import ReadOptions
from clsrun.runtime.readers import open_records

TEXTS = ["好的", "abc", "", "é\U0001f600x", "  spaced  out ", "…½ﬁ", "Ǆ\u0301"]


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_a_sequence_like_the_list_it_stands_for(kind: pa.DataType) -> None:
    texts = ArrowTexts(pa.array([*TEXTS, None], type=kind))
    listed = [*TEXTS, None]
    assert len(texts) == len(listed) and list(texts) == listed and texts == listed
    assert texts[1] == "abc" and texts[-1] is None and None in texts and "abc" in texts
    part = texts[2:5]
    assert isinstance(part, ArrowTexts) and part == listed[2:5] and None not in part
    assert texts[::2] == listed[::2] and texts[5:2] == []
    joined = ArrowTexts.concat([texts[:3], ArrowTexts(pa.array(["x"])), texts[3:]])
    assert joined == [*listed[:3], "x", *listed[3:]]
    with pytest.raises(TypeError):
        ArrowTexts(pa.array([1, 2]))


def test_code_points_are_pythons_for_any_slice() -> None:
    rng = random.Random(3)
    pool = [*"ab 好…", "\U0001f600", "é", "\u0301", "\u3000"]
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 9))) for _ in range(200)]
    column = ArrowTexts(pa.array(texts))
    for start, stop in ((0, 200), (17, 93), (50, 50), (199, 200)):
        c, lengths = column[start:stop].codepoints()
        expected_c, expected_lengths = charmaps.codepoints(texts[start:stop])
        np.testing.assert_array_equal(c, expected_c)
        np.testing.assert_array_equal(lengths, expected_lengths)
        assert c.dtype == np.uint32 and lengths.dtype == np.int64
    with pytest.raises(ValueError, match="error rows"):
        ArrowTexts(pa.array(["a", None])).codepoints()


def test_read_windows_stay_arrow_and_encode_as_python_strings_do(tmp_path: Path) -> None:
    """A CSV read in small blocks: windows cut across blocks are still Arrow columns (error rows null), and
    an n-gram encoder gives the same tokens for them as for the same texts as Python strings."""
    rng = random.Random(5)
    pool = [*"好差很服务酒店 ab,", "…", "ﬁ", "\u3000"]
    rows = [
        rng.choice("好差ab") + "".join(rng.choice(pool) for _ in range(rng.randint(0, 30)))
        for _ in range(3000)
    ]
    rows[7] = "   "  # a per-row error: its text is None in the window
    path = tmp_path / "in.csv"
    path.write_text("text\n" + "".join(f'"{r}"\n' for r in rows), encoding="utf-8")
    chunks = open_records(path, ReadOptions(block_bytes=1 << 14)).chunks()
    got = list(windows(chunks, 1000))
    assert [len(w) for w in got] == [1000, 1000, 1000]
    assert all(isinstance(w.texts, ArrowTexts) for w in got)
    assert got[0].texts[7] is None and got[0].errors[7] == "empty or whitespace-only text"
    assert [t for w in got for t in w.texts] == [None if i == 7 else r for i, r in enumerate(rows)]

    scheme = NgramScheme("cjk", (1, 3), 0, False, 12, "raw")
    encoder = NgramEncoder(scheme, NgramVocabulary.build(*hash_features(rows, scheme), 1 << 12, 2, None), 64)
    norm = Normalization()
    for window in got[1:]:  # windows without an error row: their texts go to the encoder as they are
        arrow = encode_texts(encoder, norm, window.texts)  # type: ignore[arg-type]
        python = encode_texts(encoder, norm, list(window.texts))  # type: ignore[arg-type]
        np.testing.assert_array_equal(arrow.kept, python.kept)
        np.testing.assert_array_equal(arrow.tokens.ids, python.tokens.ids)
        np.testing.assert_array_equal(arrow.tokens.offsets, python.tokens.offsets)
        assert arrow.tokens.weights is not None and python.tokens.weights is not None
        np.testing.assert_array_equal(arrow.tokens.weights, python.tokens.weights)


def test_error_rows_keep_none_of_their_bytes() -> None:
    """A text over the size cap is an error row, counted as no characters when windows are cut: its bytes
    must go with it. They stayed in the column, so a window of 8,192 such rows (a dictionary-encoded Parquet
    file of 113 KB) held gigabytes and then could not be concatenated: the run failed, every row lost."""
    from clsrun.runtime.columns import texts_and_errors

    column = pa.array(["x" * 5000] * 10 + ["fine", None, "  "])
    texts, errors = texts_and_errors(column, max_bytes=1000)
    assert isinstance(texts, ArrowTexts)
    assert list(texts) == [None] * 10 + ["fine", None, None]
    assert errors[:10] == ["text over the 1000-byte size cap"] * 10
    assert errors[10:] == ["", "null text", "empty or whitespace-only text"]
    assert texts.array.buffers()[2].size < 100  # "fine" only, not 10 x 5,000 bytes
