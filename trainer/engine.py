"""The training engine shared by every model kind: :func:`fit` trains a classifier and restores its best epoch.

Built on the Hugging Face ``Trainer`` (chosen, not hand-written): it already does correctly what the
tutorials got wrong or left out, and the char-CNN and BERT trainers then share one tested loop.
What it brings: AdamW with weight decay kept off biases and LayerNorm weights, warmup (steps or ratio),
linear / cosine / cosine-with-restarts schedules, gradient accumulation, per-epoch evaluation over the whole
validation set, early stopping with the best checkpoint restored (``load_best_model_at_end`` +
``EarlyStoppingCallback`` on ``eval_loss``), seeded shuffling, bf16/fp16 autocast on CUDA, and
DistributedDataParallel when launched with ``torchrun`` (only the main process writes the bundle).
What this module adds: cross-entropy on logits with optional inverse-frequency class weights (a
``compute_loss`` override), length-grouped training batches, one progress bar per epoch, and the epoch's
numbers handed to :class:`~clsrun.trainer.reporting.EpochLog` (its line, the overfitting warning,
TensorBoard); checkpoints stay in a temporary folder, never in the bundle. The frozen-encoder head
(``frozen.py``) reports through the same ``EpochLog``.

Per-step overhead: measured on the 2-core CPU with the default char-CNN, see the README (Train).

Contract for models: ``model(**inputs)`` returns logits ``(B, C)`` (a tensor, or an object with ``.logits``),
where ``inputs`` is what ``collate_fn`` returns minus ``"labels"``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from transformers import (
    EarlyStoppingCallback,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers import logging as hf_logging
from transformers.integrations import TensorBoardCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from clsrun.runtime import stopping
from clsrun.runtime.errors import UsageError
from clsrun.trainer import distributed
from clsrun.trainer.config import TrainConfig
from clsrun.trainer.reporting import EpochLog, EpochRecord, progress_bar, tensorboard_writer

log = logging.getLogger("clsrun.trainer")

LABELS_KEY = "labels"
Batch = dict[str, torch.Tensor]
CollateFn = Callable[[list[dict[str, Any]]], Batch]


class ClassificationDataset(Dataset[dict[str, Any]]):
    """Rows of model inputs with integer targets: item ``i`` is ``{name: features[name][i], "labels": int}``.

    ``features`` maps an input name (``input_ids``, ``attention_mask``, or anything the collate function
    understands, e.g. a row index) to one entry per row. ``targets`` are label indices. ``lengths`` (token
    count per row) lets the training sampler batch rows of similar length together, so per-batch padding
    stays small; when omitted it is taken from ``features["input_ids"]`` if present, else batches are random.
    ``group_by_length=False`` asks for random batches whatever the lengths.
    """

    def __init__(
        self,
        features: dict[str, Sequence[Any]],
        targets: Sequence[int] | np.ndarray,
        lengths: Sequence[int] | np.ndarray | None = None,
        group_by_length: bool = True,
    ) -> None:
        self.targets = np.asarray(targets, dtype=np.int64)  # (N,)
        for name, column in features.items():
            if len(column) != len(self.targets):
                raise ValueError(f"feature {name!r} has {len(column)} rows, targets have {len(self.targets)}")
        self.features = features
        ids = features.get("input_ids")
        if lengths is None and ids is not None:
            lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        if not group_by_length:
            lengths = None
        self.lengths = None if lengths is None else np.asarray(lengths, dtype=np.int64)  # (N,) or None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = {name: column[i] for name, column in self.features.items()}
        row[LABELS_KEY] = int(self.targets[i])
        return row


def pad_collate(pad_values: dict[str, int]) -> CollateFn:
    """A ``collate_fn`` that right-pads each named 1-D column to the batch's longest row and stacks labels.

    ``pad_values`` maps each padded input (e.g. ``{"input_ids": 0, "attention_mask": 0}``) to its pad value;
    other columns are stacked as they are. Padding per batch (not to ``max_length``) keeps short batches cheap.
    """

    def collate(rows: list[dict[str, Any]]) -> Batch:
        batch: Batch = {}
        for name in rows[0]:
            if name == LABELS_KEY:
                continue
            values = [torch.as_tensor(r[name]) for r in rows]
            if name in pad_values:
                width = max(1, max(len(v) for v in values))
                out = torch.full((len(values), width), pad_values[name], dtype=values[0].dtype)  # (B, T)
                for i, v in enumerate(values):
                    out[i, : len(v)] = v
                batch[name] = out
            else:
                batch[name] = torch.stack(values)
        batch[LABELS_KEY] = torch.tensor([r[LABELS_KEY] for r in rows], dtype=torch.long)  # (B,)
        return batch

    return collate


@dataclass
class FitResult:
    """What :func:`fit` returns. ``model`` holds the best epoch's weights (lowest validation loss), eval mode."""

    model: torch.nn.Module
    history: list[EpochRecord]
    best_epoch: int  # 1-based epoch whose weights ``model`` holds
    val_logits: np.ndarray  # (N_val, C) float32 logits of the restored model, in validation-set order
    val_targets: np.ndarray  # (N_val,) int64
    train_seconds: float  # wall time of training and per-epoch evaluation
    overfit_epochs: list[int] = field(default_factory=list)  # epochs warned about (val up, train down)
    device: str = "cpu"  # "cpu" or "cuda"
    precision: str = "fp32"  # "fp32", "bf16" or "fp16" (autocast on CUDA)
    is_main_process: bool = True  # False on DDP ranks > 0: those must not write the bundle

    @property
    def best(self) -> EpochRecord:
        return self.history[self.best_epoch - 1]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch. Call it before building the model so initial weights are reproducible."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def inverse_frequency_weights(targets: np.ndarray, n_classes: int) -> torch.Tensor:
    """(C,) loss weights ``N / (C * count_c)`` (sklearn's "balanced"); a class absent from training gets 0."""
    counts = np.bincount(targets, minlength=n_classes).astype(np.float64)  # (C,)
    weights = np.where(counts > 0, len(targets) / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def training_device(config: TrainConfig) -> tuple[str, str]:
    """``(device, precision)`` a run trains with: ``--device`` resolved as the runtime resolves it for the
    torch backend (``variant.resolve_device``: CUDA when asked for or when ``auto`` finds it), and
    ``--precision`` the autocast on CUDA (CPU trains in fp32)."""
    from clsrun.runtime.variant import resolve_device

    device = resolve_device(config.device, "torch")
    precision: str = config.precision
    if device == "cpu":
        if precision in ("bf16", "fp16"):
            raise UsageError(f"--precision {precision} needs CUDA; on CPU training runs in fp32")
        return device, "fp32"
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return device, precision


def class_weights(config: TrainConfig, targets: np.ndarray, labels: Sequence[str]) -> torch.Tensor | None:
    """The loss weights ``--class-weights`` asks for (None for ``none``); the main process says them once."""
    if config.class_weights != "auto":
        return None
    weights = inverse_frequency_weights(targets, len(labels))
    if distributed.is_main():
        pairs = zip(labels, weights.tolist(), strict=True)
        log.info("class weights: %s", ", ".join(f"{n} {w:.2f}" for n, w in pairs))
    return weights


def _logits(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.logits


class _RunningStats:
    """Sums of loss and correct predictions over the current epoch, kept on device (no sync per step)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss_sum: torch.Tensor | float = 0.0
        self.correct: torch.Tensor | float = 0.0
        self.rows = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        n = labels.shape[0]
        self.loss_sum = self.loss_sum + loss.detach().float() * n
        self.correct = self.correct + (logits.detach().argmax(-1) == labels).sum()
        self.rows += n

    def means(self) -> tuple[float, float]:
        if not self.rows:
            return math.nan, math.nan
        return float(self.loss_sum) / self.rows, float(self.correct) / self.rows


def _accuracy(eval_pred: Any) -> dict[str, float]:
    """Accuracy over the whole validation set (the Trainer concatenates every batch before calling this)."""
    logits, targets = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    return {"accuracy": float((np.asarray(logits).argmax(-1) == np.asarray(targets)).mean())}


class _ClassifierTrainer(Trainer):
    """The Trainer with cross-entropy on the model's logits (class-weighted on request), running train stats,
    and length-grouped training batches."""

    def __init__(self, class_weight: torch.Tensor | None, stats: _RunningStats, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.class_weight = class_weight
        self.stats = stats
        for unwanted in (ProgressCallback, PrinterCallback):  # bars and printed log dicts: ours instead
            self.remove_callback(unwanted)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: Batch,
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        targets = inputs.pop(LABELS_KEY)  # (B,)
        logits = _logits(model(**inputs))  # (B, C)
        weight = None if self.class_weight is None else self.class_weight.to(logits.device)
        loss = F.cross_entropy(logits.float(), targets, weight=weight)
        if model.training:
            self.stats.add(loss, logits, targets)
        return (loss, {"logits": logits}) if return_outputs else loss

    def _get_train_sampler(self, dataset: Any = None) -> Any:
        # Shuffled batches of similar length (the Trainer's LengthGroupedSampler, given precomputed
        # lengths): padding per batch then costs little (on reviews_zh, several times fewer padded
        # positions than random batches). Validation keeps its order (sequential sampler), so
        # ``val_logits`` line up with the dataset.
        dataset = self.train_dataset if dataset is None else dataset
        lengths = getattr(dataset, "lengths", None)
        if lengths is None:
            return super()._get_train_sampler(dataset)
        return LengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=lengths.tolist()
        )


class _EpochReporter(TrainerCallback):
    """Hands each epoch's numbers (running train stats, the evaluation's metrics) to the :class:`EpochLog`."""

    def __init__(self, stats: _RunningStats, epochs: EpochLog) -> None:
        self.stats = stats
        self.epochs = epochs

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.stats.reset()

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        if metrics is None or "eval_loss" not in metrics:
            return
        train_loss, train_acc = self.stats.means()
        epoch = len(self.epochs.history) + 1
        val_acc = float(metrics.get("eval_accuracy", math.nan))
        self.epochs.add(EpochRecord(epoch, train_loss, train_acc, float(metrics["eval_loss"]), val_acc))


class _EpochBar(TrainerCallback):
    """One progress bar per epoch, closed (and erased) before the epoch's evaluation and its line."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.epoch = 0
        self.bar: Any = None

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.epoch += 1
        steps = math.ceil(state.max_steps / max(1, args.num_train_epochs))
        desc = f"epoch {self.epoch}/{self.config.epochs}"
        self.bar = progress_bar(steps, desc, "step", self.config)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    on_train_end = on_epoch_end  # training stopped inside an epoch


def _arguments(config: TrainConfig, ckpt: Path, device: str, precision: str, rows: int) -> TrainingArguments:
    """The Trainer's settings: ours from ``config``, evaluation and a checkpoint every epoch, best restored."""
    per_step = config.batch_size * distributed.world_size() * config.grad_accum
    steps_per_epoch = max(1, math.ceil(rows / per_step))
    if config.warmup >= 1 and config.warmup > steps_per_epoch * config.epochs:
        # The learning rate would still be climbing when training ends: a model left nearly untrained.
        raise UsageError(
            f"--warmup {int(config.warmup):,} steps is more than the whole training's "
            f"{steps_per_epoch * config.epochs:,} steps ({config.epochs} epoch(s) of {steps_per_epoch:,}); "
            "give a fraction of them (e.g. --warmup 0.1) or fewer steps"
        )
    return TrainingArguments(
        output_dir=str(ckpt),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup,
        lr_scheduler_type=config.schedule,
        lr_scheduler_kwargs={"num_cycles": config.restarts}
        if config.schedule == "cosine_with_restarts"
        else {},
        eval_strategy="epoch",
        save_strategy="epoch",
        save_only_model=True,
        save_total_limit=1,
        save_on_each_node=True,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_strategy="steps",
        logging_steps=max(1, steps_per_epoch // 4),
        report_to="none",
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        dataloader_num_workers=config.num_workers,
        dataloader_pin_memory=device == "cuda",
        label_names=[LABELS_KEY],
        remove_unused_columns=False,
        disable_tqdm=True,  # its bars (one over all epochs, one per evaluation) are replaced by _EpochBar
        ddp_find_unused_parameters=False,
    )


class _HonourStops(TrainerCallback):
    """A stop that Python dropped (``stopping.honour``) ends the training at the next step, not at its end."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        stopping.honour()


def _callbacks(config: TrainConfig, stats: _RunningStats, epochs: EpochLog) -> list[Any]:
    callbacks: list[Any] = [_EpochReporter(stats, epochs), _EpochBar(config), _HonourStops()]
    if config.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    if epochs.writer is not None:
        callbacks.append(TensorBoardCallback(tb_writer=epochs.writer))
    return callbacks


def _epoch_log(config: TrainConfig, out_dir: Path | str | None) -> EpochLog:
    """The run's epoch history and lines; its validation loss is named class-weighted when it is."""
    return EpochLog(
        config.epochs,
        tensorboard_writer(None if out_dir is None else Path(out_dir), config),
        loss_kind="class-weighted" if config.class_weights == "auto" else "",
    )


def fit(
    model: torch.nn.Module,
    train_dataset: ClassificationDataset,
    val_dataset: ClassificationDataset,
    collate_fn: CollateFn,
    config: TrainConfig,
    labels: Sequence[str],
    out_dir: Path | str | None = None,
) -> FitResult:
    """Train ``model`` on ``train_dataset``, evaluate after every epoch, restore the best epoch.

    ``model(**inputs)`` returns logits ``(B, len(labels))``; ``collate_fn`` turns dataset rows into
    ``inputs`` plus ``"labels"`` (:func:`pad_collate`). The loss (and the validation loss that picks the
    best epoch) is cross-entropy, class-weighted when ``config.class_weights == "auto"``. TensorBoard logs
    go to ``out_dir/logs`` when ``out_dir`` is given and ``config.logs``. Under ``torchrun`` each process
    calls ``fit`` (``batch_size`` is per process); only ``FitResult.is_main_process`` writes files.
    Raises :class:`UsageError` for impossible device/precision requests (naming the flag).
    """
    config.validate()
    device, precision = training_device(config)
    if len(train_dataset) == 0 or len(val_dataset) == 0:
        raise UsageError(
            f"need training and validation rows, got {len(train_dataset)} and {len(val_dataset)}"
        )
    hf_logging.set_verbosity_error()  # the Trainer's own info chatter; our per-epoch lines replace it
    distributed.join(device)
    stats = _RunningStats()
    epochs = _epoch_log(config, out_dir)
    with distributed.shared_temp_dir("clsrun-ckpt-") as ckpt:
        trainer = _ClassifierTrainer(
            class_weights(config, train_dataset.targets, labels),
            stats,
            model=model,
            args=_arguments(config, ckpt, device, precision, len(train_dataset)),
            train_dataset=train_dataset,
            eval_dataset=val_dataset,
            data_collator=collate_fn,
            compute_metrics=_accuracy,
            callbacks=_callbacks(config, stats, epochs),
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        prediction = trainer.predict(val_dataset)
    logits = (
        prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    )
    trained = trainer.model if trainer.model is not None else model
    return FitResult(
        model=trained.eval(),
        history=epochs.history,
        best_epoch=epochs.finish(),
        val_logits=np.asarray(logits, dtype=np.float32),
        val_targets=np.asarray(prediction.label_ids, dtype=np.int64),
        train_seconds=seconds,
        overfit_epochs=epochs.overfit_epochs,
        device=device,
        precision=precision,
        is_main_process=distributed.is_main(),
    )
