"""Train a BERT-family classifier (``clsrun train --model minilm|PATH``).

:func:`train_bert` resolves the base checkpoint (never downloads), tokenizes through the runtime's
:class:`~clsrun.runtime.encode_bert.BertEncoder` (the same code that scores), then either fine-tunes
everything with the shared engine (:func:`clsrun.trainer.engine.fit`, the Hugging Face ``Trainer``) or,
with ``freeze_encoder``, encodes once and trains only the head (:mod:`clsrun.trainer.frozen`). Only the
main process writes the bundle: a Hugging Face folder written and read back by
:mod:`clsrun.trainer.bert_folder` (``load_bert_model``), then the shared bundle files.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from clsrun.runtime.bundle import BundleSpec, Normalization
from clsrun.runtime.encode import Tokens
from clsrun.runtime.encode_bert import BertEncoder
from clsrun.runtime.errors import InternalError, UsageError
from clsrun.runtime.metrics import ClassificationReport
from clsrun.runtime.textnorm import normalize_many
from clsrun.trainer import distributed
from clsrun.trainer.bert_checkpoint import (
    MINILM,
    resolve_checkpoint,
    resolve_pooling,
    save_tokenizer,
    too_long,
)
from clsrun.trainer.bert_folder import save_hf_folder
from clsrun.trainer.bert_model import (
    BertClassifier,
    ClsClassifier,
    MeanClassifier,
    from_checkpoint,
)
from clsrun.trainer.bundle_writer import finish_bundle
from clsrun.trainer.config import TrainConfig
from clsrun.trainer.data import Split
from clsrun.trainer.options import AUTO_HEAD_TAIL_SHARE, BertOptions
from clsrun.trainer.reporting import EpochLog, cut_note, progress_bar, tensorboard_writer

if TYPE_CHECKING:
    from clsrun.trainer.engine import FitResult

log = logging.getLogger("clsrun.trainer")

# ---------------------------------------------------------------------------------------------- training


@dataclass
class BertRun:
    """What a BERT training run produced (the main process writes it to the bundle)."""

    fit: (
        FitResult  # the classifier with the best epoch's weights (CPU, eval mode), validation logits, history
    )
    settings: dict[str, Any]  # spec.model: pooling, truncation, base_model

    @property
    def model(self) -> BertClassifier:
        model = self.fit.model
        if not isinstance(model, ClsClassifier | MeanClassifier):
            raise InternalError(f"training returned a {type(model).__name__}, not the classifier it trained")
        return model


def _check_max_length(model: BertClassifier, max_length: int) -> None:
    limit = int(getattr(model.config, "max_position_embeddings", max_length))
    if max_length > limit:
        raise too_long(max_length, limit)


def _row_collate(encoder: BertEncoder, tokens: Tokens) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """Batches padded by the runtime encoder itself, so training sees exactly what scoring sees."""

    def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
        index = np.fromiter((r["row"] for r in rows), dtype=np.int64, count=len(rows))  # (B,)
        batch = {k: torch.from_numpy(v) for k, v in encoder.pad(tokens, index).items()}  # each (B, T)
        batch["labels"] = torch.tensor([r["labels"] for r in rows], dtype=torch.long)  # (B,)
        return batch

    return collate


def train_bert(
    split: Split, out: Path, config: TrainConfig, options: BertOptions
) -> ClassificationReport | None:
    """Fine-tune (or, with ``options.freeze_encoder``, train the head of) a classifier and write its bundle.

    The main process writes the bundle into ``out`` (prepared by :func:`clsrun.trainer.train`) and returns
    its validation report; other ``torchrun`` processes write nothing and return None.
    """
    run = fit_bert(split, config, options, out=out)
    if not run.fit.is_main_process:
        return None
    return write_bert_bundle(run, split, out, config, options)


def write_bert_bundle(
    run: BertRun, split: Split, out: Path, config: TrainConfig, options: BertOptions
) -> ClassificationReport:
    """The bundle: Hugging Face folder (weights, config, tokenizer) + the shared files + ``clsrun.json``."""
    out.mkdir(parents=True, exist_ok=True)
    save_hf_folder(run.model, out, config.max_length, run.settings["truncation"])
    save_tokenizer(resolve_checkpoint(options.model), out, config.max_length)
    spec = BundleSpec(
        kind="bert", labels=list(split.labels), max_length=config.max_length, model=dict(run.settings)
    )
    return finish_bundle(out, spec, split, run.fit, config, options.hyperparameters())


@dataclass
class _Encoded:
    """Every row tokenized once by the runtime's encoder: training rows first, then validation rows."""

    encoder: BertEncoder
    tokens: Tokens
    train: tuple[np.ndarray, np.ndarray]  # (rows (N,), targets (N,)): indices into tokens, label indices
    val: tuple[np.ndarray, np.ndarray]  # (rows (N_val,), targets (N_val,))


def _encode(split: Split, checkpoint: Path, config: TrainConfig, truncation: str) -> _Encoded:
    """Tokenize both splits with the checkpoint's tokenizer through :class:`BertEncoder`, as scoring will.

    ``auto`` tokenizes with ``head``: which texts are cut does not depend on which of their tokens are kept.
    """
    train_y, val_y = split.train_targets(), split.val_targets()  # (N,), (N_val,)
    with tempfile.TemporaryDirectory(prefix="clsrun-tok-") as tmp:
        save_tokenizer(checkpoint, Path(tmp), config.max_length)
        encoder = BertEncoder.from_folder(
            tmp, config.max_length, "head" if truncation == "auto" else truncation
        )
        tokens = encoder.tokenize(normalize_many(split.train_texts + split.val_texts, Normalization()))
    train_rows = np.arange(len(train_y))  # (N,)
    val_rows = np.arange(len(train_y), len(tokens))  # (N_val,)
    return _Encoded(encoder, tokens, (train_rows, train_y), (val_rows, val_y))


# Share of the data's tokens that are [UNK] above which the checkpoint's vocabulary does not fit the text
# (all-MiniLM-L6-v2 on Chinese news: over half; on English news well under 1 %).
UNKNOWN_TOKENS_WARNING = 0.05
# ... and above which training is refused unless --allow-unreadable: a model of mostly [UNK] tokens is
# useless, and a fine-tuning run takes many minutes to find that out.
UNKNOWN_TOKENS_REFUSAL = 0.5


def unknown_share(encoder: BertEncoder, tokens: Tokens) -> float:
    """The share of ``tokens`` (every row's, special tokens included) that are the tokenizer's unknown
    token; 0 for a tokenizer without one."""
    unknown = getattr(encoder.tokenizer.model, "unk_token", None)
    unknown_id = encoder.tokenizer.token_to_id(unknown) if unknown else None
    if unknown_id is None or not len(tokens.ids):
        return 0.0
    return float(np.count_nonzero(tokens.ids == unknown_id)) / len(tokens.ids)


def _check_unknown_tokens(data: _Encoded, allow: bool) -> None:
    """A refusal when half the data's tokens or more are [UNK] (unless ``allow``), one warning when more
    than a few are: training would go on (exit 0) on [UNK] tokens, and nothing else would say why the model
    is poor. Every process decides the same (DDP: none is left waiting for the others)."""
    share = unknown_share(data.encoder, data.tokens)
    if share <= UNKNOWN_TOKENS_WARNING:
        return
    said = (
        f"{100 * share:.0f}% of the data's tokens are [UNK]: the checkpoint's vocabulary does not cover this "
        "text, so the model cannot read it; use a checkpoint made for its language (e.g. a local "
        "bert-base-chinese for Chinese), or --model ngram / charcnn, which learn their vocabulary from the data"
    )
    if share >= UNKNOWN_TOKENS_REFUSAL and not allow:
        raise UsageError(f"{said} (--allow-unreadable trains anyway)")
    if distributed.is_main():
        log.warning("%s", said)


def fit_bert(split: Split, config: TrainConfig, options: BertOptions, out: Path | None = None) -> BertRun:
    """Train on ``split`` and return the trained model with its validation logits; writes only logs
    (TensorBoard, into ``out/logs`` when ``out`` is given and ``config.logs``).

    Labels are ``split.labels``. Text is normalised with the bundle's :class:`Normalization` and tokenized
    by :class:`BertEncoder`, exactly as scoring will do it.
    """
    from clsrun.trainer import engine

    options.validate()
    config.validate()
    checkpoint = resolve_checkpoint(options.model)
    pooling = resolve_pooling(options.pooling, checkpoint)
    engine.seed_everything(config.seed)
    model = from_checkpoint(checkpoint, list(split.labels), pooling)
    _check_max_length(model, config.max_length)
    data = _encode(split, checkpoint, config, options.truncation)
    cut_share = float(data.tokens.truncated[data.train[0]].mean())
    truncation = options.truncation
    if truncation == "auto":
        truncation = "head-tail" if cut_share >= AUTO_HEAD_TAIL_SHARE else "head"
        if truncation != "head":
            data = _encode(split, checkpoint, config, truncation)
    settings = {"pooling": pooling, "truncation": truncation, "base_model": options.model}
    if distributed.is_main():
        train_rows, val_rows = data.train[0], data.val[0]
        log.info(
            "%s (%s pooling, %s truncation): %d training rows, %d validation rows; %s",
            "all-MiniLM-L6-v2" if options.model == MINILM else options.model,
            pooling,
            truncation + (" (auto)" if options.truncation == "auto" else ""),
            len(train_rows),
            len(val_rows),
            cut_note(cut_share, config.max_length, "tokens"),
        )
    _check_unknown_tokens(data, options.allow_unreadable)
    train = _train_frozen if options.freeze_encoder else _fine_tune
    fit = train(model, data, list(split.labels), config, out)
    return BertRun(replace(fit, model=fit.model.cpu().eval()), settings)


def _fine_tune(
    model: BertClassifier, data: _Encoded, labels: list[str], config: TrainConfig, out: Path | None
) -> FitResult:
    """Full fine-tuning on the shared engine (the Hugging Face Trainer)."""
    from clsrun.trainer import engine

    (train_rows, train_y), (val_rows, val_y) = data.train, data.val
    return engine.fit(
        model,
        engine.ClassificationDataset({"row": train_rows.tolist()}, train_y),
        engine.ClassificationDataset({"row": val_rows.tolist()}, val_y),
        _row_collate(data.encoder, data.tokens),
        config,
        labels,
        out_dir=out,
    )


def _train_frozen(
    model: BertClassifier, data: _Encoded, labels: list[str], config: TrainConfig, out: Path | None
) -> FitResult:
    """``--freeze-encoder``: encode every row once, then train only the linear head (``frozen.py``)."""
    from clsrun.trainer import engine
    from clsrun.trainer.frozen import HeadTraining, train_head

    if not model.has_features:
        raise UsageError(
            f"--freeze-encoder with --pooling cls needs a BERT-style head (pooler + linear classifier); "
            f"{type(model).__name__} of this checkpoint has none: use --pooling mean"
        )
    device, _ = engine.training_device(config)  # features are computed in fp32
    distributed.join(device)
    start = time.perf_counter()
    feats = _features(model, data, config, device)  # (N + N_val, H)
    (train_rows, train_y), (val_rows, val_y) = data.train, data.val
    epochs = EpochLog(config.epochs, tensorboard_writer(out, config), each_epoch=False)
    result = train_head(
        model.head,
        *(feats[torch.from_numpy(train_rows)], torch.from_numpy(train_y)),  # (N, H), (N,)
        *(feats[torch.from_numpy(val_rows)], torch.from_numpy(val_y)),  # (N_val, H), (N_val,)
        HeadTraining.from_config(config),
        engine.class_weights(config, train_y, labels),
        epochs.add,
    )
    return engine.FitResult(
        model=model.eval(),
        history=result.history,
        best_epoch=epochs.finish(),
        val_logits=result.val_logits,
        val_targets=val_y,
        train_seconds=time.perf_counter() - start,
        overfit_epochs=epochs.overfit_epochs,
        device=device,
        precision="fp32",
        is_main_process=distributed.is_main(),
    )


def _features(model: BertClassifier, data: _Encoded, config: TrainConfig, device: str) -> torch.Tensor:
    """``(N + N_val, H)`` pooled features of every row, computed once (no gradient) with a progress bar."""
    from clsrun.trainer.frozen import extract_features

    torch_device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if device == "cuda" else "cpu")
    start = time.perf_counter()
    model.to(torch_device).eval()
    with progress_bar(len(data.tokens), "encoding", "rows", config) as bar:
        feats = extract_features(
            model.features, data.tokens, data.encoder.pad, config.eval_batch_size, torch_device, bar.update
        )
    model.cpu()
    if distributed.is_main():
        log.info("encoded %d rows in %.1fs; training the head", len(data.tokens), time.perf_counter() - start)
    return feats
