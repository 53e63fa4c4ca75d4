"""Train the character-level CNN (``clsrun train --model charcnn``) and write its bundle.

Path of a row: raw text -> ``textnorm.normalize`` (the bundle's settings) -> cut to ``max_length``
characters -> ``CharVocab`` ids (vocabulary built from the training text only) -> :class:`CharCNN`.
Scoring (``runtime/encode_char.py``'s ``CharEncoder``) does the same steps in the same order.

Training runs on the shared engine (:func:`clsrun.trainer.engine.fit`, the Hugging Face ``Trainer``); its
per-step overhead against a bare PyTorch loop on the same batches is in the README (Train).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from clsrun.runtime.bundle import VOCAB_FILE, BundleSpec, Normalization
from clsrun.runtime.encode_char import CharVocab
from clsrun.runtime.metrics import ClassificationReport
from clsrun.runtime.textnorm import normalize_many
from clsrun.trainer import distributed, engine
from clsrun.trainer.bundle_writer import finish_bundle, save_weights
from clsrun.trainer.charcnn import CharCNN, CharCNNConfig
from clsrun.trainer.config import TrainConfig
from clsrun.trainer.data import Split
from clsrun.trainer.options import CharCNNOptions
from clsrun.trainer.reporting import cut_note, long_texts_warning

log = logging.getLogger("clsrun.trainer")


def encode_texts(texts: list[str], vocab: CharVocab, max_length: int) -> list[Any]:
    """Per text, a ``(min(len, max_length),)`` int64 array of character ids (texts already normalised)."""
    return [vocab.ids_of(t[:max_length]) for t in texts]


def _model_config(vocab: CharVocab, n_labels: int, options: CharCNNOptions) -> CharCNNConfig:
    return CharCNNConfig(
        vocab_size=vocab.size,
        n_labels=n_labels,
        embed_dim=options.embed_dim,
        channels=list(options.channels),
        kernel_sizes=list(options.kernel_sizes),
        dropout=options.dropout,
        pooling=options.pooling,
    )


def train_charcnn(
    split: Split,
    out: Path,
    config: TrainConfig,
    options: CharCNNOptions,
    normalization: Normalization | None = None,
) -> ClassificationReport | None:
    """Train a char-CNN on ``split`` and, on the main process, write the bundle into ``out``.

    ``out`` must be ready (:func:`clsrun.trainer.train` prepares it). Returns the validation report, or
    None on ``torchrun`` processes that do not write.
    """
    options.validate()
    config.validate()
    norm = normalization or Normalization()
    train_texts = normalize_many(split.train_texts, norm)
    val_texts = normalize_many(split.val_texts, norm)
    vocab = CharVocab.build(train_texts, max_size=options.vocab_size, min_freq=options.min_char_freq)
    model_config = _model_config(vocab, len(split.labels), options)
    if distributed.is_main():
        cut = sum(len(t) > config.max_length for t in train_texts) / len(train_texts)
        log.info(
            "char-CNN: %d training rows, %d validation rows, %d labels, %d characters in the vocabulary; %s",
            len(train_texts),
            len(val_texts),
            len(split.labels),
            len(vocab.chars),
            cut_note(cut, config.max_length, "characters"),
        )
        long_texts = long_texts_warning([len(t) for t in train_texts], config.max_length, "characters")
        if long_texts:
            log.warning("%s", long_texts)
    engine.seed_everything(config.seed)
    result = engine.fit(
        CharCNN(model_config),
        engine.ClassificationDataset(
            {"input_ids": encode_texts(train_texts, vocab, config.max_length)}, split.train_targets()
        ),
        engine.ClassificationDataset(
            {"input_ids": encode_texts(val_texts, vocab, config.max_length)}, split.val_targets()
        ),
        engine.pad_collate({"input_ids": 0}),
        config,
        split.labels,
        out_dir=out,
    )
    if not result.is_main_process:
        return None
    vocab.save(out / VOCAB_FILE)
    save_weights(result.model.state_dict(), out)
    spec = BundleSpec(
        kind="charcnn",
        labels=list(split.labels),
        max_length=config.max_length,
        normalization=norm,
        model=model_config.to_json(),
    )
    return finish_bundle(out, spec, split, result, config, options.hyperparameters())
