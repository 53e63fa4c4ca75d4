"""The ngram feature function: the hash spec (against a scalar reference and pinned values), the language
rule, the weights, and that a text's features never depend on the window it is encoded in."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from clsrun.runtime.encode_ngram import (
    CHAR_MULTIPLIERS,
    PAIR_MULTIPLIER,
    WORD_MULTIPLIER,
    NgramEncoder,
    NgramScheme,
    NgramVocabulary,
    cjk_share,
    detect_script,
    hash_features,
)
from clsrun.runtime.errors import BundleError

MOD = 2**64
PRIME = 0x100000001B3
CJK = NgramScheme.for_script("cjk")
ALPHA = NgramScheme.for_script("alphabetic")
TEXTS = [
    "这个酒店很好,服务棒",
    "Hello, world_2 of Café's",
    "a",
    "太差了 bad  x",
    "UPPER lower İstanbul",
    "好",
    "ab cd",
]


def _horner(s: str) -> int:
    h = 0
    for ch in s:
        h = (h * PRIME + ord(ch) + 1) % MOD
    return h


def _bucket(h: int, multiplier: int, bits: int) -> int:
    return (h * multiplier % MOD) >> (64 - bits)


def reference(text: str, scheme: NgramScheme) -> list[int]:
    """The spec of ``encode_ngram``'s docstring, one Python integer at a time."""
    if scheme.lowercase:
        text = text.lower()
    bits = scheme.bucket_bits
    out = []
    low, high = scheme.char_ngrams
    for k in range(low, high + 1) if high else ():
        out += [
            _bucket(_horner(text[p : p + k]), CHAR_MULTIPLIERS[k - 1], bits) for p in range(len(text) - k + 1)
        ]
    words = [_horner(w) for w in re.findall(r"(?u)\b\w\w+\b", text)]
    if scheme.word_ngrams >= 1:
        out += [_bucket(h, WORD_MULTIPLIER, bits) for h in words]
    if scheme.word_ngrams == 2:
        out += [_bucket((a * PRIME + b) % MOD, PAIR_MULTIPLIER, bits) for a, b in itertools.pairwise(words)]
    return out


@pytest.mark.parametrize("scheme", [CJK, ALPHA, NgramScheme("alphabetic", (1, 5), 1, False, 12)])
def test_hashes_follow_the_scalar_reference(scheme: NgramScheme) -> None:
    buckets, offsets = hash_features(TEXTS, scheme)
    for i, text in enumerate(TEXTS):
        assert buckets[offsets[i] : offsets[i + 1]].tolist() == reference(text, scheme), text


def test_pinned_bucket_values() -> None:
    """The spec must not drift: bundles trained before a change would score with other features."""
    buckets, _ = hash_features(["好的"], CJK)
    assert buckets.tolist() == [166390, 806619, 346785]
    buckets, _ = hash_features(["Good day"], ALPHA)
    assert buckets[-3:].tolist() == [569863, 659403, 216790]


def test_words_never_run_across_texts() -> None:
    one, _ = hash_features(["ab"], NgramScheme("alphabetic", (0, 0), 1, False, 20))
    buckets, offsets = hash_features(["xx ab", "cd yy"], NgramScheme("alphabetic", (0, 0), 1, False, 20))
    assert offsets.tolist() == [0, 2, 4]
    assert buckets[1] == one[0]  # "ab" ends its text: it is not "abcd"


def test_language_rule() -> None:
    assert detect_script(["这个酒店很好", "服务 ok"]) == "cjk"
    assert detect_script(["The hotel was fine", "东京 is far"]) == "alphabetic"
    assert detect_script([" ", "\u3000"]) == "alphabetic"
    # the whole file decides, not its first million characters: English rows above Chinese ones
    english, chinese = ["The hotel was fine " * 100] * 600, ["这个酒店很好服务周到" * 100] * 3000
    assert detect_script(english + chinese) == detect_script(chinese + english) == "cjk"
    # one long row counts as long as it is, wherever it is (45 % CJK either way)
    long_first, long_last = ["x" * 2_000_000, *["中文"] * 800_000], [*["中文"] * 800_000, "x" * 2_000_000]
    assert abs(cjk_share(long_first) - 0.444) < 0.03 and abs(cjk_share(long_last) - 0.444) < 0.03


def _encoder(texts: list[str], scheme: NgramScheme = CJK, min_df: int = 1) -> NgramEncoder:
    buckets, offsets = hash_features(texts, scheme)
    vocabulary = NgramVocabulary.build(buckets, offsets, 1 << scheme.bucket_bits, min_df, None)
    return NgramEncoder(scheme, vocabulary, max_length=1000)


def test_weights_are_l2_normalised_idf_and_pruned_features_weigh_nothing() -> None:
    train = ["好好", "好差", "差"]
    encoder = _encoder(train, min_df=2)  # kept: 好 (2 texts), 差 (2 texts)
    tokens = encoder.tokenize(["好好", "差", "没有"])
    # By position, the 1-, 2- and 3-gram starting at each character: 好 好好 - | 好 - - | 差 - - | ...
    assert tokens.lengths.tolist() == [6, 3, 6]
    good, bad = tokens.ids[0], tokens.ids[6]
    assert sorted([good, bad]) == [1, 2]
    # pruned (好好, 没, 有, 没有) and past the text's end: id 0 (padding)
    assert tokens.ids.tolist() == [good, 0, 0, good, 0, 0, bad, 0, 0, 0, 0, 0, 0, 0, 0]
    assert tokens.weights is not None
    np.testing.assert_allclose(
        tokens.weights, [2**-0.5, 0, 0, 2**-0.5, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0], rtol=1e-6
    )
    idf = encoder.vocabulary.idf
    np.testing.assert_allclose(idf[1:], np.log(4 / 3) + 1, rtol=1e-6)  # smooth idf, df = 2 of 3 texts


@pytest.mark.parametrize("texts", [TEXTS, ["这个酒店很好，服务棒", "好", "", "太差了 bad  x", "ab"] * 3])
def test_the_layout_by_position_holds_the_same_features_as_the_compact_one(texts: list[str]) -> None:
    """Character-only schemes lay features out by position (no scatter); the ids and weights of each
    text are the compact layout's, in another order, plus zero-weight padding ids."""
    encoder = _encoder(texts)
    tokens = encoder.tokenize(texts)
    assert tokens.weights is not None
    for i, text in enumerate(texts):
        part = slice(tokens.offsets[i], tokens.offsets[i + 1])
        ids, weights = tokens.ids[part], tokens.weights[part]
        assert len(ids) == 3 * len(text)
        assert sorted(ids[ids > 0].tolist()) == sorted(
            encoder._lut[b] for b in reference(text, CJK) if encoder._lut[b] > 0
        )
        assert (weights[ids == 0] == 0).all()
        if len(text):
            np.testing.assert_allclose(np.square(weights).sum(), 1.0, rtol=1e-5)


def test_sublinear_weights_are_scikit_learns_tfidf_with_sublinear_tf() -> None:
    """Long texts are weighed as ``TfidfVectorizer(sublinear_tf=True)`` weighs the same n-grams: (1 + ln tf)
    times the smooth idf, l2-normalised, one feature per kept n-gram of the text."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    scheme = replace(CJK, tf="sublinear")
    train = ["好好好好差很好", "很差差差", "服务很好", "酒店好好", "差", "很好很好很好很好"]
    texts = ["好好好好好差差很好服务", "很很很很", "没有", "", *train]
    encoder = _encoder(train, scheme, min_df=2)
    tokens = encoder.tokenize(texts)
    assert tokens.weights is not None
    sklearn = TfidfVectorizer(
        analyzer=lambda t: [str(b) for b in reference(t, scheme)], min_df=2, sublinear_tf=True
    )
    sklearn.fit(train)
    expected = sklearn.transform(texts).toarray()  # (texts, kept n-grams)
    column = {int(b): j for b, j in sklearn.vocabulary_.items()}
    assert sorted(column) == encoder.vocabulary.kept.tolist()
    got = np.zeros_like(expected)
    for i in range(len(texts)):
        ids = tokens.ids[tokens.offsets[i] : tokens.offsets[i + 1]]
        assert (ids > 0).all() and (np.diff(ids) > 0).all()  # each kept n-gram once, ascending
        for id_, weight in zip(ids, tokens.weights[tokens.offsets[i] : tokens.offsets[i + 1]], strict=True):
            got[i, column[int(encoder.vocabulary.kept[id_ - 1])]] = weight
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert tokens.lengths[2] == 0 and tokens.lengths[3] == 0  # nothing kept: no features, not padding


def test_a_bundle_without_the_tf_field_keeps_raw_tf() -> None:
    """Bundles written before sublinear tf existed have no ``tf`` in ``model.features``: they score as before."""
    old = CJK.to_json()
    del old["tf"]
    scheme = NgramScheme.from_json(old)
    assert scheme == CJK and scheme.tf == "raw"
    assert NgramScheme.from_json(replace(CJK, tf="sublinear").to_json()).tf == "sublinear"
    tokens = _encoder(["好好", "好差", "差"], scheme, min_df=2).tokenize(["好好", "差"])
    assert tokens.weights is not None
    good, bad = tokens.ids[0], tokens.ids[6]
    assert tokens.ids.tolist() == [good, 0, 0, good, 0, 0, bad, 0, 0]  # every occurrence, pruned ones as id 0
    np.testing.assert_allclose(tokens.weights, [2**-0.5, 0, 0, 2**-0.5, 0, 0, 1, 0, 0], rtol=1e-6)
    with pytest.raises(BundleError, match="term frequency"):
        NgramScheme.from_json({**old, "tf": "log"})


def test_a_texts_features_do_not_depend_on_its_window() -> None:
    rng = np.random.default_rng(0)
    pool = list("好差很服务酒店 abcdeXYZ,.")
    texts = ["".join(rng.choice(pool, size=rng.integers(1, 40))) for _ in range(300)]
    for scheme in (CJK, ALPHA, replace(CJK, tf="sublinear"), replace(ALPHA, tf="sublinear")):
        encoder = _encoder(texts, scheme)
        whole = encoder.tokenize(texts)
        assert whole.weights is not None
        for start in (0, 7, 150):
            part = encoder.tokenize(texts[start : start + 31])
            assert part.weights is not None
            lo, hi = whole.offsets[start], whole.offsets[start + 31]
            assert np.array_equal(part.ids, whole.ids[lo:hi])
            assert np.array_equal(part.weights, whole.weights[lo:hi])  # bit for bit


def test_pad_puts_zero_weight_on_padding_and_truncation_cuts_characters() -> None:
    encoder = _encoder(["好差", "很好"])
    encoder.max_length = 2
    tokens = encoder.tokenize(["好", "好差很"])
    assert tokens.truncated.tolist() == [False, True]
    inputs = encoder.pad(tokens, np.array([1, 0]))
    assert inputs["input_ids"].dtype == np.int64 and inputs["weights"].dtype == np.float32
    assert inputs["input_ids"].shape == (2, 6)  # 好 好差 - | 差 - - (很 was cut)
    assert (inputs["input_ids"][0, [0, 1, 3]] > 0).all()
    assert inputs["input_ids"][1, 1:].tolist() == [0] * 5
    assert inputs["weights"][1, 1:].tolist() == [0.0] * 5


def test_bad_schemes_and_vocabularies_are_bundle_errors() -> None:
    with pytest.raises(BundleError, match="char n-gram lengths"):
        NgramScheme("cjk", (3, 1), 0, False, 20)
    with pytest.raises(BundleError, match=r"^B/clsrun\.json: model\.features has no 'char_ngrams'$"):
        NgramScheme.from_json({"script": "cjk"}, "B/clsrun.json")
    for missing in (None, {}, []):  # `"model": null` in a damaged clsrun.json
        with pytest.raises(BundleError, match=r"model\.features is missing"):
            NgramScheme.from_json(missing)
    with pytest.raises(BundleError, match="not an n-gram scheme"):
        NgramScheme.from_json({**CJK.to_json(), "char_ngrams": 3})
    with pytest.raises(BundleError, match="script 'klingon': need cjk or alphabetic"):
        NgramScheme.from_json({**CJK.to_json(), "script": "klingon"})
    with pytest.raises(BundleError, match="do not fit"):
        NgramVocabulary.from_tensors({"kept_buckets": np.array([1, 2]), "idf": np.ones(2)}, 16, "f")


@pytest.mark.parametrize("scheme", [CJK, ALPHA, replace(CJK, tf="sublinear")])
def test_sparse_rows_hold_what_padding_gives_in_any_row_order(scheme: NgramScheme) -> None:
    """The sparse graph's input: row i's entries sum to the padded row's weighted ids, for consecutive
    rows (a slice of the window) and for rows in any order (gathered)."""
    rng = np.random.default_rng(3)
    pool = list("好差很服务酒店 abcdeXYZ,.")
    texts = ["".join(rng.choice(pool, size=rng.integers(1, 30))) for _ in range(60)]
    encoder = _encoder(texts, scheme)
    tokens = encoder.tokenize(texts)
    table = rng.standard_normal((encoder.vocabulary.size, 3)).astype(np.float32)
    table[0] = 0  # the model's padding row
    for rows in (np.arange(10, 35), np.array([5, 3, 59, 0, 4]), np.array([7]), np.arange(0)):
        (name, csr), *rest = encoder.sparse(tokens, rows).items()
        assert name == "features" and not rest and len(csr) == len(rows)
        assert csr.width == encoder.vocabulary.size and csr.offsets[0] == 0
        assert csr.values.dtype == np.float32 and csr.columns.dtype == np.int64
        assert csr.values.flags.c_contiguous and csr.columns.flags.c_contiguous
        if len(rows) > 1 and (np.diff(rows) == 1).all():  # consecutive rows: the window's ids, not a copy
            assert np.shares_memory(csr.columns, tokens.ids)
        dense = np.zeros((len(rows), encoder.vocabulary.size), np.float64)
        for i in range(len(rows)):
            lo, hi = csr.offsets[i], csr.offsets[i + 1]
            np.add.at(dense[i], csr.columns[lo:hi], csr.values[lo:hi])  # repeats add up
        padded = encoder.pad(tokens, rows) if len(rows) else None
        if padded is not None:
            expected = (padded["weights"][:, :, None] * table[padded["input_ids"]]).sum(axis=1)
            np.testing.assert_allclose(dense @ table, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("texts", [["😀😀"], ["a"], ["ab", "c"]])
def test_a_window_shorter_than_the_longest_n_gram_tokenizes(texts: list[str]) -> None:
    """A one-row file of two emoji failed ("shape mismatch ... (0,) ... (1,)"): a window of fewer
    characters in all than the longest character n-gram has no such n-gram, which the slots miscounted."""
    scheme = NgramScheme("alphabetic", (2, 4), 2, True, 12)
    buckets, offsets = hash_features(texts, scheme)
    alone = [hash_features([t], scheme)[0].tolist() for t in texts]
    assert [buckets[offsets[i] : offsets[i + 1]].tolist() for i in range(len(texts))] == alone
    assert [sorted(a) for a in alone] == [sorted(reference(t, scheme)) for t in texts]


def test_a_sparse_batch_without_a_single_feature_scores_as_texts_without_features(
    exported_ngram_bundle: Path,
) -> None:
    """onnxruntime refuses a CSR tensor with no values ("Inner and Outer indices must either be both zero
    or non-zero"): a batch whose texts give a sublinear-tf model no kept n-gram (another script, emoji)
    ended the run with exit 1. Such rows score the bias, as eager PyTorch gives them."""
    from clsrun.runtime.classifier import Classifier
    from clsrun.runtime.encode import SparseRows
    from clsrun.runtime.infer import softmax
    from clsrun.runtime.variant import Variant

    onnx = Classifier.load(exported_ngram_bundle, Variant(backend="onnx", precision="fp32", threads=1))
    (name,) = onnx.runner.sparse_inputs  # type: ignore[attr-defined]
    width = onnx.encoder.vocabulary.size  # type: ignore[attr-defined]
    empty = SparseRows(np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(4, np.int64), width)
    probs = softmax(onnx.runner.run({name: empty}))
    torch = Classifier.load(exported_ngram_bundle, Variant(backend="torch", threads=1))
    featureless = torch.predict(["☃☃", "𝄞", "☃"]).probs  # characters the tiny model never kept
    np.testing.assert_allclose(probs, featureless, atol=1e-6)
