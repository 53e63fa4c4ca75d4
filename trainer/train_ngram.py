"""Train the n-gram model (``clsrun train --model ngram``) and write its bundle.

Path of a row: raw text -> ``textnorm.normalize`` (the bundle's settings) -> ``NgramEncoder.tokenize``
(hashed n-grams, kept ids, TF-IDF-like weights; ``runtime/encode_ngram.py``) -> :class:`NgramLinear`.
Scoring loads the same encoder from the bundle, so it computes exactly the features trained on.

Steps: the language rule picks the n-grams from the training text; the buckets found in at least
``--min-df`` training texts are kept, with their idf; then two fits of the same linear model on the same
features, and the better on the validation rows is kept (both are reported and recorded):

- logistic regression (scikit-learn, lbfgs, ``C = --logreg-c``): the convex optimum. It won on
  inews_zh (macro-F1 0.7247 against 0.699), where AdamW's validation loss bottoms out after one epoch;
- AdamW through the shared engine (:func:`clsrun.trainer.engine.fit`: early stopping, best epoch
  restored, TensorBoard): it won on reviews_zh (0.861-0.866 against 0.857).

"Better" is macro-F1 with ``--class-weights auto`` (the metric imbalanced data is judged by), else
accuracy; a tie goes to the lower validation loss. ``--fit torch|logreg`` runs only one of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clsrun.runtime.bundle import NGRAM_FEATURES_FILE, BundleSpec, Normalization
from clsrun.runtime.encode import Tokens
from clsrun.runtime.encode_ngram import (
    NgramEncoder,
    NgramScheme,
    NgramVocabulary,
    TermFrequency,
    detect_script,
    hash_features,
)
from clsrun.runtime.errors import InputError, file_errors_of
from clsrun.runtime.metrics import ClassificationReport, report_from_indices
from clsrun.runtime.textnorm import normalize_many
from clsrun.trainer import distributed, engine
from clsrun.trainer.baseline import without_class_count_note
from clsrun.trainer.bundle_writer import finish_bundle, save_weights
from clsrun.trainer.config import TrainConfig
from clsrun.trainer.data import Split
from clsrun.trainer.frozen import one_thread
from clsrun.trainer.ngram import NgramConfig, NgramLinear
from clsrun.trainer.options import NGRAM_LONG_TEXT_CHARS, NgramOptions
from clsrun.trainer.reporting import EpochRecord, cut_note, headline_metric

log = logging.getLogger("clsrun.trainer")


# Buckets by text length: long texts (where --tf auto picks sublinear) hold millions of distinct n-grams
# (inews_zh about 3.2M 1-3-grams): 2**22 buckets collide less (README, "The n-gram model").
SHORT_TEXT_BUCKET_BITS, LONG_TEXT_BUCKET_BITS = 20, 22


def term_frequency(texts: list[str], options: NgramOptions) -> TermFrequency:
    """``--tf``, or for ``auto``: sublinear when the texts average :data:`NGRAM_LONG_TEXT_CHARS` or more."""
    if options.tf == "raw":
        return "raw"
    if options.tf == "sublinear":
        return "sublinear"
    mean = sum(map(len, texts)) / max(len(texts), 1)
    return "sublinear" if mean >= NGRAM_LONG_TEXT_CHARS else "raw"


def scheme_for(texts: list[str], options: NgramOptions) -> NgramScheme:
    """The language rule's scheme for ``texts`` (cut to the training length), with the n-gram lengths,
    term frequency and bucket count the options set (``auto``/None: by text length, as ``--tf auto``)."""
    tf = term_frequency(texts, options)
    bits = options.bucket_bits or (LONG_TEXT_BUCKET_BITS if tf == "sublinear" else SHORT_TEXT_BUCKET_BITS)
    scheme = NgramScheme.for_script(detect_script(texts), bits)
    return NgramScheme(
        scheme.script,
        options.char_ngrams or scheme.char_ngrams,
        scheme.word_ngrams if options.word_ngrams is None else options.word_ngrams,
        scheme.lowercase,
        scheme.bucket_bits,
        tf,
    )


def build_encoder(texts: list[str], options: NgramOptions, max_length: int) -> NgramEncoder:
    """The encoder of a model trained on ``texts`` (normalised): scheme, kept buckets and their idf."""
    texts = [t[:max_length] for t in texts]
    scheme = scheme_for(texts, options)
    buckets, offsets = hash_features(texts, scheme)
    vocabulary = NgramVocabulary.build(
        buckets, offsets, 1 << scheme.bucket_bits, options.min_df, options.max_features
    )
    return NgramEncoder(scheme, vocabulary, max_length)


@dataclass
class Fit:
    """One fit of the linear model: its weights and how it scored on the validation rows."""

    name: str  # "logreg" or "torch"
    table: np.ndarray  # (V, C) float32
    bias: np.ndarray  # (C,) float32
    val_logits: np.ndarray  # (N_val, C) float32
    seconds: float
    history: list[EpochRecord] = field(default_factory=list)  # torch: per-epoch records
    best_epoch: int = 0  # torch: the epoch kept

    def scores(self, targets: np.ndarray, labels: list[str]) -> dict[str, float]:
        """Accuracy, macro-F1 and (unweighted) cross-entropy on the validation rows."""
        report = report_from_indices(targets.tolist(), self.val_logits.argmax(axis=1).tolist(), labels)
        shifted = self.val_logits - self.val_logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = float(-log_probs[np.arange(len(targets)), targets].mean())
        return {"accuracy": report.accuracy, "macro_f1": report.macro_f1, "val_loss": loss}


def features_matrix(tokens: Tokens, n_features: int) -> Any:
    """``tokens`` as a (texts, n_features) CSR matrix of weights (repeated ids summed). A copy: summing
    duplicates sorts and compacts the arrays in place, which would scramble ``tokens`` for the torch fit."""
    from scipy.sparse import csr_matrix

    matrix = csr_matrix(
        (tokens.weights, tokens.ids, tokens.offsets), shape=(len(tokens), n_features), copy=True
    )
    matrix.sum_duplicates()
    matrix.eliminate_zeros()  # the encoder's padding ids (weight 0) are no evidence
    return matrix


def fit_logreg(
    train: Tokens,
    val: Tokens,
    targets: np.ndarray,
    shape: NgramConfig,
    config: TrainConfig,
    options: NgramOptions,
) -> Fit:
    """Logistic regression (lbfgs, multinomial) on the same features; its coefficients are the table."""
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    model = LogisticRegression(
        C=options.logreg_c,
        max_iter=1000,
        class_weight="balanced" if config.class_weights == "auto" else None,
    )
    with without_class_count_note():
        model.fit(features_matrix(train, shape.n_features), targets)
    table = model.coef_.T.astype(np.float32)  # (V, C), or (V, 1) for two labels
    bias = model.intercept_.astype(np.float32)
    if shape.n_labels == 2:  # one logit z for the second label: softmax([0, z]) = sigmoid(z), as LR
        table = np.concatenate([np.zeros_like(table), table], axis=1)
        bias = np.concatenate([np.zeros_like(bias), bias])
    table[0] = 0.0  # padding
    val_logits = np.asarray(features_matrix(val, shape.n_features) @ table + bias, dtype=np.float32)
    return Fit("logreg", table, bias, val_logits, time.perf_counter() - start)


def _rows(tokens: Tokens) -> dict[str, Sequence[Any]]:
    """Per-text ``input_ids`` and ``weights`` arrays (views into ``tokens``) for the engine's datasets."""
    assert tokens.weights is not None, "NgramEncoder.tokenize always gives weights"
    cuts = tokens.offsets[1:-1]
    return {"input_ids": np.split(tokens.ids, cuts), "weights": np.split(tokens.weights, cuts)}


def fit_torch(
    train: Tokens, val: Tokens, split: Split, shape: NgramConfig, config: TrainConfig, out: Path
) -> Fit | None:
    """AdamW through the shared engine (early stopping, best epoch restored); None on other torchrun ranks."""
    start = time.perf_counter()
    engine.seed_everything(config.seed)
    result = engine.fit(
        NgramLinear(shape),
        # Random batches: batches of texts of one length (the engine's default, to save padding) cost the
        # linear bag model accuracy (reviews_zh validation 0.8504 against 0.8679 and 0.8639 over two seeds):
        # each step then sees one kind of text. Padding n-gram features costs little.
        engine.ClassificationDataset(_rows(train), split.train_targets(), group_by_length=False),
        engine.ClassificationDataset(_rows(val), split.val_targets(), val.lengths),
        engine.pad_collate({"input_ids": 0, "weights": 0}),
        config,
        split.labels,
        out_dir=out,
    )
    if not result.is_main_process:
        return None
    model = result.model
    assert isinstance(model, NgramLinear)
    table = model.table.weight.detach().cpu().numpy().astype(np.float32)
    bias = model.bias.detach().cpu().numpy().astype(np.float32)
    seconds = time.perf_counter() - start
    return Fit("torch", table, bias, result.val_logits, seconds, result.history, result.best_epoch)


def choose(
    fits: list[Fit], targets: np.ndarray, labels: list[str], metric: str
) -> tuple[Fit, dict[str, Any]]:
    """The fit with the best ``metric`` on validation (ties: lower loss), and what each scored."""
    scored = {fit.name: {**fit.scores(targets, labels), "seconds": round(fit.seconds, 2)} for fit in fits}
    best = max(fits, key=lambda f: (round(scored[f.name][metric], 6), -scored[f.name]["val_loss"]))
    for fit in fits:
        s = scored[fit.name]
        log.info(
            "n-gram %s fit: validation accuracy %.4f, macro-F1 %.4f, unweighted loss %.4f (%.1f s)%s",
            "logistic regression" if fit.name == "logreg" else "AdamW",
            *(s["accuracy"], s["macro_f1"], s["val_loss"], s["seconds"]),
            "  <- kept" if fit is best and len(fits) > 1 else "",
        )
    return best, {"fits": scored, "kept": best.name, "chosen_by": metric}


@dataclass
class NgramOutcome:
    """What :func:`finish_bundle` records (``bundle_writer.Outcome``): the kept fit's validation logits."""

    val_logits: np.ndarray
    val_targets: np.ndarray
    history: list[EpochRecord]
    best_epoch: int
    train_seconds: float
    device: str = "cpu"
    precision: str = "fp32"


def train_ngram(
    split: Split,
    out: Path,
    config: TrainConfig,
    options: NgramOptions,
    normalization: Normalization | None = None,
) -> ClassificationReport | None:
    """Train the n-gram model on ``split`` and, on the main process, write the bundle into ``out``.

    ``out`` must be ready (:func:`clsrun.trainer.train` prepares it). Returns the validation report, or
    None on ``torchrun`` processes that do not write.
    """
    options.validate()
    config.validate()
    start = time.perf_counter()
    norm = normalization or Normalization()
    train_texts = normalize_many(split.train_texts, norm)
    encoder = build_encoder(train_texts, options, config.max_length)
    train, val = encoder.tokenize(train_texts), encoder.tokenize(normalize_many(split.val_texts, norm))
    shape = NgramConfig(encoder.vocabulary.size, len(split.labels))
    _say_features(encoder, train, split)
    if encoder.vocabulary.size <= 1:  # only the padding bucket: every text would score the same
        raise InputError(
            f"no n-gram occurs in --min-df {options.min_df} of the {len(train_texts)} training texts: the "
            f"model would have no feature to go by; lower --min-df"
        )
    fits: list[Fit] = []
    targets = split.val_targets()
    if options.fit in ("best", "logreg") and distributed.is_main():
        fits.append(fit_logreg(train, val, split.train_targets(), shape, config, options))
    if options.fit in ("best", "torch"):
        with (
            one_thread()
        ):  # a second thread only spins on a model this small; the baseline uses the other core
            torch_fit = fit_torch(train, val, split, shape, config, out)
        if torch_fit is None:
            return None
        fits.append(torch_fit)
    if not distributed.is_main():
        return None
    best, record = choose(fits, targets, split.labels, headline_metric(config))
    save_weights(NgramLinear.from_linear(shape, best.table, best.bias).state_dict(), out)
    _save_features(encoder.vocabulary, out)
    spec = BundleSpec(
        kind="ngram",
        labels=list(split.labels),
        max_length=config.max_length,
        normalization=norm,
        model={"features": encoder.scheme.to_json(), **shape.to_json(), "fit": best.name},
        training={"ngram": record},
    )
    torch_fits = [f for f in fits if f.name == "torch"]
    outcome = NgramOutcome(
        best.val_logits,
        targets,
        torch_fits[0].history if torch_fits else [],
        torch_fits[0].best_epoch if torch_fits else 0,
        time.perf_counter() - start,
    )
    return finish_bundle(out, spec, split, outcome, config, options.hyperparameters())


def _say_features(encoder: NgramEncoder, train: Tokens, split: Split) -> None:
    if not distributed.is_main():
        return
    scheme = encoder.scheme
    low, high = scheme.char_ngrams
    what = [f"character {low}-{high}-grams"] if high else []
    what += [["", "words", "words and word pairs"][scheme.word_ngrams]] if scheme.word_ngrams else []
    cut = float(train.truncated.mean()) if len(train) else 0.0
    log.info(
        "n-gram: %d training rows, %d validation rows, %d labels; %s text: %s, %s tf; %d of %d buckets kept "
        "(%.0f features per row); %s",
        *(len(train), len(split.val_texts), len(split.labels), scheme.script, " + ".join(what), scheme.tf),
        *(encoder.vocabulary.size - 1, 1 << scheme.bucket_bits, float(train.lengths.mean())),
        cut_note(cut, encoder.max_length, "characters"),
    )


def _save_features(vocabulary: NgramVocabulary, out: Path) -> None:
    """``ngram_features.safetensors``: the kept buckets and their idf, readable by all."""
    from safetensors.numpy import save_file

    path = out / NGRAM_FEATURES_FILE
    with file_errors_of(path):
        save_file(vocabulary.tensors(), str(path))
    path.chmod(0o644)  # safetensors creates it owner-only
