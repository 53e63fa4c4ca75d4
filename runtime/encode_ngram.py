"""The ngram model's features: hashed character (and word) n-grams with TF-IDF-like weights.

This module is the one feature function of the ``ngram`` kind. The trainer builds the vocabulary and
encodes its training and validation rows with :class:`NgramEncoder`, and scoring loads the same encoder
from the bundle, so training and scoring cannot compute different features. No per-character Python
loop: every step is a numpy operation over the code points of a whole window of texts.

Hash spec (all arithmetic on uint64, wrapping modulo 2**64; pinned by ``tests/runtime/test_encode_ngram.py``):

- ``c_j`` = code point of character ``j`` + 1 (so no character hashes from 0);
- a character n-gram of length ``k`` starting at ``p``: ``h = c_p * P**(k-1) + ... + c_{p+k-1}``
  (Horner, ``P`` = the 64-bit FNV prime), over the whole normalised text, spaces included, never
  across two texts;
- a word is a maximal run of at least 2 ``\\w`` characters (scikit-learn's token pattern); its ``h`` is
  the same Horner sum over its characters; a word pair (two consecutive words of one text) is
  ``h1 * P + h2``;
- bucket = ``(h * M_f) >> (64 - bucket_bits)``: Fibonacci hashing, one odd multiplier ``M_f`` per
  family (each n-gram length, words, word pairs) so equal sums of different families land apart. One
  multiply and one shift: the memo's splitmix finaliser cost five passes for no measured accuracy;
- id = ``lut[bucket]``: buckets seen in at least ``min_df`` training texts get ids ``1..V-1``; the
  others are dropped (id 0 is padding);
- term frequency ``tf`` (the scheme's ``tf`` field):

  - ``"raw"``: every occurrence is one feature of weight ``idf[id] / sqrt(sum of idf**2 over the text's
    occurrences)`` with the smooth idf ``ln((1 + N) / (1 + df)) + 1``: an l2-normalised raw-tf TF-IDF
    vector when the model sums ``weight * table[id]`` over the text and no n-gram repeats (repeats are
    not merged: merging them costs a row-wise sort, and short texts hardly repeat an n-gram). With
    repeats the norm is under-counted: a text that is another repeated k times weighs sqrt(k) times
    more, so its scores are more confident (the label is the same); ``"sublinear"`` has no such effect;
  - ``"sublinear"``: repeats are merged, one feature per kept id of the text, ids ascending, weighing
    ``(1 + ln tf) * idf[id]``, l2-normalised over the text: scikit-learn's ``TfidfVectorizer(
    sublinear_tf=True)``. Long texts need it: raw tf lets an article's most frequent n-grams drown the
    rest. Pruned n-grams (id 0) are dropped, not kept as padding.

  A bundle written before the field existed has raw tf.

The language rule (:func:`detect_script`) picks the n-grams once, at training, from the share of CJK
characters; the choice is stored in the bundle and never re-detected when scoring.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from clsrun.runtime import charmaps
from clsrun.runtime.bundle import NGRAM_FEATURES_FILE, SPEC_FILE
from clsrun.runtime.encode import SparseRows, Tokens, padded_index
from clsrun.runtime.errors import BundleError, damaged

if TYPE_CHECKING:
    from clsrun.runtime.bundle import Bundle

Script = Literal["cjk", "alphabetic"]
TermFrequency = Literal["raw", "sublinear"]
TERM_FREQUENCIES: tuple[TermFrequency, ...] = ("raw", "sublinear")
P = np.uint64(0x100000001B3)  # the 64-bit FNV prime: odd, so Horner sums stay spread over all 64 bits
# Fibonacci-hashing multipliers, one per family: 2**64 / golden ratio, and odd constants after it.
CHAR_MULTIPLIERS = (  # index k - 1 for character n-grams of length k (1..8)
    0x9E3779B97F4A7C15,
    0xBF58476D1CE4E5B9,
    0x94D049BB133111EB,
    0xD6E8FEB86659FD93,
    0xC2B2AE3D27D4EB4F,
    0x165667B19E3779F9,
    0xFF51AFD7ED558CCD,
    0xC4CEB9FE1A85EC53,
)
WORD_MULTIPLIER = 0xA0761D6478BD642F
PAIR_MULTIPLIER = 0xE7037ED1A0B428DB
MAX_CHAR_NGRAM = len(CHAR_MULTIPLIERS)
# The sparse graphs' one input, in CSR form (export/ngram_graph.py): a weighing graph's, each row's
# (B, n_features) weights; a counting graph's, each row's raw n-gram counts (every occurrence a 1: repeats
# add up), which the graph weighs itself (raw tf only: the weights are then linear in the counts).
SPARSE_INPUT = "features"
COUNTS_INPUT = "counts"
# The language rule: the share of CJK characters (kana, CJK ideographs, hangul) among the non-space
# characters of the training texts. Measured shares: reviews_zh 0.856, inews_zh 0.834, bbc_en 0.000.
CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xAC00, 0xD7AF))
CJK_SUPPLEMENT = (0x20000, 0x2FFFF)
CJK_THRESHOLD = 0.3
DETECT_ROW_CHARS = 500  # characters of one sampled row read by the language rule
DETECT_SAMPLE_CHARS = 1_000_000  # characters read to decide (the share settles long before)


@dataclass(frozen=True)
class NgramScheme:
    """Which n-grams a model uses; stored in ``clsrun.json`` under ``model.features``."""

    script: Script  # what the language rule found in the training text
    char_ngrams: tuple[int, int]  # shortest and longest character n-gram; (0, 0): none
    word_ngrams: int  # 0: no words; 1: words; 2: words and pairs of consecutive words
    lowercase: bool  # lowercase before hashing (alphabetic text; the bundle's normalisation does not)
    bucket_bits: int  # features are hashed into 2**bucket_bits buckets
    tf: TermFrequency = "raw"  # term frequency: "raw" (one feature per occurrence) or "sublinear" (1 + ln tf)

    def __post_init__(self) -> None:
        if self.script not in ("cjk", "alphabetic"):  # an unknown one read as alphabetic without a word
            raise BundleError(f"script {self.script!r}: need cjk or alphabetic")
        low, high = self.char_ngrams
        if not (0 <= low <= high <= MAX_CHAR_NGRAM) or (low == 0) != (high == 0):
            raise BundleError(f"char n-gram lengths {self.char_ngrams}: need 1 <= min <= max <= 8, or (0, 0)")
        if self.word_ngrams not in (0, 1, 2) or not (high or self.word_ngrams):
            raise BundleError(f"word n-grams {self.word_ngrams}: need 0, 1 or 2, and some features")
        if not 8 <= self.bucket_bits <= 30:
            raise BundleError(f"bucket bits {self.bucket_bits}: need 8 to 30")
        if self.tf not in TERM_FREQUENCIES:
            raise BundleError(f"term frequency {self.tf!r}: need one of {', '.join(TERM_FREQUENCIES)}")

    @classmethod
    def for_script(cls, script: Script, bucket_bits: int = 20, tf: TermFrequency = "raw") -> NgramScheme:
        """The measured choice per script: character 1-3-grams for CJK text; lowercased words, word pairs
        and character 2-4-grams for alphabetic text (bbc_en: words alone 0.9777, + char 2-4 0.9832)."""
        if script == "cjk":
            return cls("cjk", (1, 3), 0, False, bucket_bits, tf)
        return cls("alphabetic", (2, 4), 2, True, bucket_bits, tf)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str = "clsrun.json") -> NgramScheme:
        """The scheme recorded at ``model.features`` of the bundle file ``where`` (named in every refusal)."""
        if not isinstance(data, dict) or not data:
            raise BundleError(
                f"{where}: model.features is missing (an n-gram bundle records its feature scheme there)"
            )
        try:
            return cls(
                script=data["script"],
                char_ngrams=(int(data["char_ngrams"][0]), int(data["char_ngrams"][1])),
                word_ngrams=int(data["word_ngrams"]),
                lowercase=bool(data["lowercase"]),
                bucket_bits=int(data["bucket_bits"]),
                tf=data.get("tf", "raw"),  # bundles written before sublinear tf existed have raw tf
            )
        except KeyError as e:
            raise BundleError(f"{where}: model.features has no {e.args[0]!r}") from e
        except (TypeError, ValueError, IndexError) as e:
            raise BundleError(f"{where}: model.features is not an n-gram scheme ({e})") from e


def cjk_share(texts: list[str], max_chars: int = DETECT_SAMPLE_CHARS) -> float:
    """Share of CJK characters among the non-space characters of ``texts``: all of them when they hold at
    most ``max_chars``, else estimated from ``max_chars // DETECT_ROW_CHARS`` rows drawn at random (seeded)
    in proportion to their length, each read to :data:`DETECT_ROW_CHARS` characters. The first million
    characters alone decided before, so row order could (English rows above Chinese ones)."""
    lengths = np.fromiter(map(len, texts), dtype=np.float64, count=len(texts))
    total = float(lengths.sum())
    if total <= max_chars:
        sample, weigh = list(texts), True
    else:
        draws = max(1, max_chars // DETECT_ROW_CHARS)
        picked = np.random.default_rng(0).choice(len(texts), size=draws, p=lengths / total)
        sample, weigh = [texts[i][:DETECT_ROW_CHARS] for i in picked.tolist()], False
    cps, read_lengths = charmaps.codepoints(sample)  # (N,), (rows,)
    row = np.repeat(np.arange(len(sample)), read_lengths)  # (N,) the row of each code point
    read = ~charmaps.is_space(cps)
    counted = np.bincount(row[read], minlength=len(sample)).astype(np.float64)  # (rows,) non-space
    in_cjk = np.bincount(row[read], weights=is_cjk(cps[read]), minlength=len(sample))  # (rows,)
    if weigh:  # every character once
        return float(in_cjk.sum() / counted.sum()) if counted.sum() else 0.0
    shares = in_cjk[counted > 0] / counted[counted > 0]  # rows drawn by length: each draw weighs alike
    return float(shares.mean()) if len(shares) else 0.0


def is_cjk(cps: np.ndarray) -> np.ndarray:
    """(n,) bool: which of the code points ``cps`` (n,) are CJK (:data:`CJK_RANGES`, the supplement)."""
    cjk = np.zeros(len(cps), dtype=bool)
    for low, high in (*CJK_RANGES, CJK_SUPPLEMENT):
        cjk |= (cps >= low) & (cps <= high)
    return cjk


def detect_script(texts: list[str]) -> Script:
    """``"cjk"`` when at least :data:`CJK_THRESHOLD` of the characters are CJK, else ``"alphabetic"``."""
    return "cjk" if cjk_share(texts) >= CJK_THRESHOLD else "alphabetic"


@functools.lru_cache(maxsize=1)
def _word_chars() -> np.ndarray:
    """(0x110000,) bool: the code point is a regex ``\\w`` character (``str.isalnum()`` or ``_``, as
    Python's ``re`` defines it), built once."""
    table = np.fromiter((chr(c).isalnum() for c in range(0x110000)), dtype=bool, count=0x110000)
    table[ord("_")] = True
    return table


def _hashable(c: np.ndarray, lengths: np.ndarray, lowercase: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(c + 1 as uint64, lengths)`` of normalised texts' code points, lowercased first if asked."""
    if lowercase:
        c, lengths = charmaps.lower(c, lengths)
    return np.add(c, np.uint64(1), dtype=np.uint64), lengths  # one pass: widened as it is added to


def _bucket(h: np.ndarray, multiplier: int, bits: int) -> np.ndarray:
    """Top ``bits`` bits of ``h * multiplier`` (Fibonacci hashing): (m,) int64 bucket numbers."""
    return ((h * np.uint64(multiplier)) >> np.uint64(64 - bits)).view(np.int64)  # < 2**bits: a free view


@functools.lru_cache(maxsize=8)
def _powers(m: int) -> np.ndarray:
    """(m,) uint64 ``P**0 .. P**(m-1)`` modulo 2**64."""
    steps = np.full(m, P, dtype=np.uint64)
    steps[0] = 1
    return np.cumprod(steps, dtype=np.uint64)


def _words(c: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Words (maximal runs of >= 2 ``\\w`` characters, never across texts): ``(hashes (w,) uint64 Horner
    sums, texts (w,) int64)`` in text order."""
    n = len(c)
    word = _word_chars()[(c - np.uint64(1)).view(np.int64)]  # (N,) bool
    text_start = np.zeros(n, dtype=bool)
    text_start[(np.cumsum(lengths) - lengths)[lengths > 0]] = True
    joins_previous = np.zeros(n, dtype=bool)  # the character continues a run begun before it
    joins_previous[1:] = word[:-1] & word[1:] & ~text_start[1:]
    begins = np.flatnonzero(word & ~joins_previous)
    ends = np.flatnonzero(word & ~np.append(joins_previous[1:], False)) + 1  # one past each run's end
    size = ends - begins
    begins, size = begins[size >= 2], size[size >= 2]
    if not len(begins):
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    # Horner over each word: c_j * P**(distance to the word's end), summed per word (wrapping).
    member = np.repeat(np.arange(len(begins)), size)  # (W,) word of each word character
    first = np.cumsum(size) - size  # (w,) index of each word's first character in (W,)
    offset = np.arange(int(size.sum()), dtype=np.int64) - first[member]  # (W,) position within the word
    terms = c[begins[member] + offset] * _powers(int(size.max()))[size[member] - 1 - offset]
    texts = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)[begins]
    return np.add.reduceat(terms, first), texts


def _place(
    c: np.ndarray, lengths: np.ndarray, scheme: NgramScheme, lut: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Hash every feature and write it to its slot, text by text: ``(values (F,), offsets (n + 1,))``.

    A value is the bucket number, or ``lut[bucket]`` when a lut is given; int64 either way: a sparse
    graph's column indices are, so a batch of consecutive rows passes them on without a copy.
    Character n-grams are scattered straight from their positions in the joined text (no compaction):
    the positions whose n-gram would run past its text's end write to a spare slot past the end.
    """
    n, total = len(lengths), len(c)
    low, high = scheme.char_ngrams
    grams = list(range(low, high + 1)) if high else []
    counts = [np.maximum(lengths - k + 1, 0) for k in grams]  # per family: (n,) features per text
    words = _words(c, lengths) if scheme.word_ngrams else None
    if words is not None:
        hashes, texts = words
        pair = texts[1:] == texts[:-1]  # (w - 1,) consecutive words of one text
        families = [(hashes, texts, WORD_MULTIPLIER)]
        if scheme.word_ngrams == 2:
            families.append((hashes[:-1][pair] * P + hashes[1:][pair], texts[1:][pair], PAIR_MULTIPLIER))
        counts += [np.bincount(t, minlength=n) for _, t, _ in families]
    per_text = np.stack(counts)  # (families, n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(per_text.sum(axis=0), out=offsets[1:])
    before = offsets[:-1] + np.cumsum(per_text, axis=0) - per_text  # (families, n): a family's first slot
    size = int(offsets[-1])
    out = np.empty(size + 1, dtype=np.int64)  # + the spare slot

    def put(slots: np.ndarray, h: np.ndarray, multiplier: int) -> None:
        buckets = _bucket(h, multiplier, scheme.bucket_bits)
        out[slots] = buckets if lut is None else lut.take(buckets)  # take: a tenth faster than lut[...]

    starts = charmaps.starts_of(lengths)
    ends = starts + lengths
    position = np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)  # (N,) index in its text
    h, span = c, 1  # h: (N - span + 1,) Horner sums of the span characters from each position
    for f, k in enumerate(grams):
        while span < k:
            span += 1
            h = h[:-1] * P + c[span - 1 :]
        m = total - k + 1
        if m <= 0:  # the window's texts hold fewer than k characters in all: no k-gram, nor any longer
            break
        slots = np.repeat(before[f], lengths)[:m] + position[:m]  # (m,)
        for j in range(1, k):  # the last k - 1 positions of each text start no whole n-gram
            tail = ends[lengths >= j] - j
            slots[tail[tail < m]] = size
        put(slots, h, CHAR_MULTIPLIERS[k - 1])
    if words is not None:
        for f, (h_words, texts, multiplier) in enumerate(families, start=len(grams)):
            first = np.cumsum(per_text[f]) - per_text[f]  # (n,) index of each text's first feature
            put(before[f][texts] + np.arange(len(texts)) - first[texts], h_words, multiplier)
    return out[:size], offsets


def _ids_by_position(
    c: np.ndarray, lengths: np.ndarray, scheme: NgramScheme, lut: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_place` for a scheme of character n-grams only, laid out by position: ``(ids (N * K,),
    offsets (n + 1,))`` where row ``p`` of the ``(N, K)`` view holds the ids of the ``K`` n-grams
    (shortest first) that start at character ``p``, and id 0 where one would run past its text's end.

    A text's features are then its characters' rows, so nothing is scattered and no slot is computed:
    the layout costs ``K * (K - 1) / 2`` padding ids per text (weight 0) and saves most of the encoding
    of short texts. Same features as :func:`_place`, in another order, plus those zeros."""
    low, high = scheme.char_ngrams
    grams = range(low, high + 1)
    total = len(c)
    out = np.empty((total, len(grams)), dtype=np.int64)  # (N, K); int64 as in _place; every cell set below
    ends = charmaps.starts_of(lengths) + lengths
    h, span = c, 1  # h: (N - span + 1,) Horner sums of the span characters from each position
    for f, k in enumerate(grams):
        while span < k:
            span += 1
            h = h[:-1] * P + c[span - 1 :]
        out[: len(h), f] = lut.take(_bucket(h, CHAR_MULTIPLIERS[k - 1], scheme.bucket_bits))
        out[len(h) :, f] = 0  # the window's last k - 1 positions
        for j in range(1, k):  # the last k - 1 positions of each text start no whole n-gram
            out[ends[lengths >= j] - j, f] = 0
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths * len(grams), out=offsets[1:])
    return out.reshape(-1), offsets


def hash_features(texts: list[str], scheme: NgramScheme) -> tuple[np.ndarray, np.ndarray]:
    """Every feature of ``texts`` as a bucket number, text by text: ``(buckets (F,) int64, offsets
    (n + 1,) int64)``; text ``i``'s features are ``buckets[offsets[i]:offsets[i + 1]]``, family after
    family (character n-grams by length, words, word pairs), each in text order."""
    c, lengths = _hashable(*charmaps.codepoints(texts), scheme.lowercase)
    return _place(c, lengths, scheme, None)


@dataclass
class NgramVocabulary:
    """The buckets a model keeps (those in at least ``min_df`` training texts) and their idf.

    Bucket ``kept[i]`` has id ``i + 1``; id 0 is padding, with idf 0.
    """

    kept: np.ndarray  # (V - 1,) int64 bucket numbers, ascending
    idf: np.ndarray  # (V,) float32, idf[0] == 0

    @property
    def size(self) -> int:
        """Number of ids, padding included (the model table's row count)."""
        return len(self.idf)

    @classmethod
    def build(
        cls, buckets: np.ndarray, offsets: np.ndarray, n_buckets: int, min_df: int, max_features: int | None
    ) -> NgramVocabulary:
        """Keep the buckets found in at least ``min_df`` texts (at most ``max_features`` of them, most
        frequent first, ties by bucket number) of the features ``hash_features`` gave for the training texts."""
        n_texts = len(offsets) - 1
        rows = np.repeat(np.arange(n_texts, dtype=np.int64), np.diff(offsets))
        pairs = np.unique(rows * n_buckets + buckets)  # one entry per (text, bucket)
        df = np.bincount(pairs % n_buckets, minlength=n_buckets)  # (n_buckets,) texts with the bucket
        kept = np.flatnonzero(df >= min_df)
        if max_features is not None and len(kept) > max_features:
            kept = np.sort(kept[np.lexsort((kept, -df[kept]))[:max_features]])
        idf = np.log((1.0 + n_texts) / (1.0 + df[kept])) + 1.0
        return cls(kept.astype(np.int64), np.concatenate(([0.0], idf)).astype(np.float32))

    def tensors(self) -> dict[str, np.ndarray]:
        """What the bundle's :data:`NGRAM_FEATURES_FILE` holds."""
        return {"kept_buckets": self.kept.astype(np.int32), "idf": self.idf}

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], n_buckets: int, where: str) -> NgramVocabulary:
        """Rebuild from :meth:`tensors`, checking what scoring relies on."""
        try:
            kept = np.asarray(tensors["kept_buckets"], dtype=np.int64)
            idf = np.asarray(tensors["idf"], dtype=np.float32)
        except KeyError as e:
            raise BundleError(f"{where}: no tensor {e}") from e
        if len(idf) != len(kept) + 1 or (len(kept) and (kept.min() < 0 or kept.max() >= n_buckets)):
            raise BundleError(f"{where}: {len(kept)} kept buckets and {len(idf)} idf values do not fit")
        if len(kept) > 1 and not (np.diff(kept) > 0).all():
            raise BundleError(f"{where}: kept buckets are not ascending")
        return cls(kept, idf)


def merge_repeats(
    ids: np.ndarray, offsets: np.ndarray, n_ids: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each text's distinct ids other than 0, ascending, and how often each occurs in it: ``(ids (U,),
    offsets (n + 1,), tf (U,) float32)``. One sort of (text, id) keys over the whole window."""
    n = len(offsets) - 1
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
    keys, tf = np.unique(rows * n_ids + ids, return_counts=True)  # sorted by text, then id
    merged = (keys % n_ids).astype(ids.dtype)
    kept = merged != 0  # pruned n-grams weigh nothing: drop them rather than pad with them
    merged, keys, tf = merged[kept], keys[kept], tf[kept]
    new_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // n_ids, minlength=n), out=new_offsets[1:])
    return merged, new_offsets, tf.astype(np.float32)


def _inverse_norms(weights: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(n,) float32 ``1 / sqrt(sum of weights**2)`` per text (a huge number for a text with none).

    Per-text sums over exactly the text's own features (numpy's pairwise sum depends only on them), so a
    text's weights never depend on the window it is encoded in."""
    n = len(offsets) - 1
    sums = np.zeros(n, dtype=np.float32)
    some = np.flatnonzero(np.diff(offsets))  # reduceat needs strictly increasing starts below F
    if len(some):
        sums[some] = np.add.reduceat(np.square(weights), offsets[some])
    return np.float32(1) / np.sqrt(np.maximum(sums, np.float32(1e-24)))


@dataclass
class NgramEncoder:
    """The runtime's :class:`~clsrun.runtime.encode.SparseEncoder` for ``ngram`` bundles (and the trainer's).

    Inputs of a sparse graph (what export writes, :meth:`sparse`): :data:`COUNTS_INPUT`, each row's raw
    counts at its feature ids, for a counting graph (raw tf), which weighs them itself; :data:`SPARSE_INPUT`,
    each row's weights, for a weighing graph (sublinear tf, and raw-tf bundles exported before the counting
    graph). Of a dense graph (the eager model, OpenVINO and int8 variants, bundles exported before the sparse
    graph): ``input_ids`` (B, T) int64 feature ids (0 = padding) and ``weights`` (B, T) float32 (:meth:`pad`).
    A text's "length", which batch planning counts, is its number of features.
    """

    scheme: NgramScheme
    vocabulary: NgramVocabulary
    max_length: int  # texts are cut to this many characters before hashing
    input_names: tuple[str, ...] = ("input_ids", "weights")
    # Compute each feature's weight (tokenize); off only for a counting graph (for_sparse_inputs), which
    # weighs the counts itself: the idf lookup and the norms are then a matrix product's columns.
    weigh: bool = True
    _lut: np.ndarray = field(init=False, repr=False)  # (2**bucket_bits,) int32: bucket -> id, 0 dropped

    def __post_init__(self) -> None:
        lut = np.zeros(1 << self.scheme.bucket_bits, dtype=np.int32)
        lut[self.vocabulary.kept] = np.arange(1, self.vocabulary.size, dtype=np.int32)
        self._lut = lut

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> NgramEncoder:
        """The encoder a bundle was trained with: ``model.features`` and :data:`NGRAM_FEATURES_FILE`."""
        from safetensors.numpy import load_file

        scheme = NgramScheme.from_json(bundle.spec.model.get("features"), str(bundle.root / SPEC_FILE))
        path = bundle.file(NGRAM_FEATURES_FILE)  # listed and hashed, or refused
        with damaged(path, "a readable safetensors file"):
            tensors = load_file(str(path))
        vocabulary = NgramVocabulary.from_tensors(tensors, 1 << scheme.bucket_bits, str(path))
        return cls(scheme, vocabulary, bundle.spec.max_length)

    def for_sparse_inputs(self, names: frozenset[str]) -> NgramEncoder:
        """This encoder for a graph whose sparse inputs are ``names``: for a counting graph
        (:data:`COUNTS_INPUT`) one that gives counts and no weights; otherwise itself."""
        if COUNTS_INPUT not in names:
            return self
        if self.scheme.tf != "raw":
            raise BundleError(f"a graph that counts n-grams needs raw tf, this model's is {self.scheme.tf}")
        counting = copy.copy(self)  # shares the vocabulary and the lut
        counting.weigh = False
        return counting

    def tokenize(self, texts: list[str]) -> Tokens:
        """Feature ids of each text with their weights (see the module's spec), cut to ``max_length``
        characters. Raw tf: pruned features stay, as id 0 with weight 0 (dropping them costs more than
        they do). Sublinear tf: one feature per kept id of the text, ids ascending."""
        return self.tokenize_codepoints(*charmaps.codepoints(texts))

    def tokenize_codepoints(self, c: np.ndarray, lengths: np.ndarray) -> Tokens:
        """:meth:`tokenize` of texts given as their code points (``charmaps.codepoints``): what scoring
        calls, with the window normalised straight into code points (``charmaps.normalize``)."""
        truncated = lengths > self.max_length
        if truncated.any():
            kept = (
                np.arange(len(c), dtype=np.int64) - np.repeat(charmaps.starts_of(lengths), lengths)
                < self.max_length
            )
            c, lengths = c[kept], np.minimum(lengths, self.max_length)
        hashed, chars = _hashable(c, lengths, self.scheme.lowercase)
        if self.scheme.word_ngrams:
            ids, offsets = _place(hashed, chars, self.scheme, self._lut)  # (F,) int64
        else:
            ids, offsets = _ids_by_position(hashed, chars, self.scheme, self._lut)  # (F,) int64
        if not self.weigh:  # raw tf (for_sparse_inputs): a feature's count is its occurrences
            return Tokens(ids, offsets, truncated)
        if self.scheme.tf == "sublinear":
            ids, offsets, tf = merge_repeats(ids, offsets, self.vocabulary.size)
            weights = self.vocabulary.idf[ids] * (np.float32(1) + np.log(tf))  # (U,) float32
        else:
            weights = self.vocabulary.idf[ids]  # (F,) float32
        weights *= np.repeat(_inverse_norms(weights, offsets), np.diff(offsets))
        return Tokens(ids, offsets, truncated, weights)

    def pad(self, tokens: Tokens, rows: np.ndarray) -> dict[str, np.ndarray]:
        """``input_ids`` (B, T) int64 and ``weights`` (B, T) float32, zero past each text's features.

        Every cell is gathered (past a row's end from the next text's features, clipped to the window)
        and the padding then zeroed by multiplying with the mask: sequential passes, where selecting the
        real cells by the mask costs twice as much."""
        assert tokens.weights is not None, "a dense graph's encoder weighs (only a counting graph's does not)"
        gather, mask = padded_index(tokens, rows)
        if not len(tokens.ids):
            return {"input_ids": np.zeros(mask.shape, np.int64), "weights": np.zeros(mask.shape, np.float32)}
        np.minimum(gather, len(tokens.ids) - 1, out=gather)
        ids = tokens.ids.take(gather).astype(np.int64)  # (B, T)
        ids *= mask
        weights = tokens.weights.take(gather)  # (B, T)
        weights *= mask
        return {"input_ids": ids, "weights": weights}

    def sparse(self, tokens: Tokens, rows: np.ndarray) -> dict[str, SparseRows]:
        """``{COUNTS_INPUT: rows of (B, n_features) counts}`` (a counting encoder: every entry 1), else
        ``{SPARSE_INPUT: rows of weights}``: a text's features are its row's entries (ids repeat under raw
        tf and add up; id 0 has a zero table row). Rows planned in input order (no padding, so no sorting)
        are one slice of the window's features; any other order is gathered."""
        assert tokens.weights is not None or not self.weigh, "a weighing encoder's tokens have weights"
        rows = np.asarray(rows, dtype=np.int64)
        offsets = tokens.offsets
        picked: slice | np.ndarray
        if len(rows) and (np.diff(rows) == 1).all():
            first, last = int(offsets[rows[0]]), int(offsets[rows[-1] + 1])
            picked = slice(first, last)
            local = offsets[rows[0] : rows[-1] + 2] - first
        else:
            lengths = tokens.lengths[rows]
            local = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(lengths, out=local[1:])
            picked = np.repeat(offsets[rows] - local[:-1], lengths) + np.arange(local[-1], dtype=np.int64)
        columns = tokens.ids[picked].astype(np.int64, copy=False)  # consecutive rows: a view, no copy
        if tokens.weights is None:
            return {COUNTS_INPUT: SparseRows(_ones(len(columns)), columns, local, self.vocabulary.size)}
        values = np.ascontiguousarray(tokens.weights[picked])
        return {SPARSE_INPUT: SparseRows(values, columns, local, self.vocabulary.size)}


_ONES = np.ones(0, dtype=np.float32)  # read-only; grown by _ones, shared by every batch's counts
# What _ones first makes: a default batch's features (batching.DEFAULT_UNPADDED_BATCH_TOKENS).
_FIRST_ONES = 1 << 21


def _ones(n: int) -> np.ndarray:
    """(n,) float32 ones, read-only: a view of one shared array, so a batch's counts cost no pass."""
    global _ONES
    if len(_ONES) < n:
        grown = np.ones(max(n, 2 * len(_ONES), _FIRST_ONES), dtype=np.float32)
        grown.flags.writeable = False
        _ONES = grown
    return _ONES[:n]
