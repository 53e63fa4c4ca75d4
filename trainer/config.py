"""Training settings shared by every model kind: one dataclass, one comment per field.

The CLI (``clsrun train``) fills a :class:`TrainConfig` from its flags and calls :meth:`TrainConfig.validate`,
whose errors name the flag the user typed (``--lr``), not the field. Library users build it directly.
Kind-specific settings (the char-CNN's width, BERT's pooling) live with their trainers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from clsrun.runtime.errors import UsageError

Schedule = Literal["linear", "cosine", "cosine_with_restarts", "constant"]
SCHEDULES: tuple[str, ...] = ("linear", "cosine", "cosine_with_restarts", "constant")
Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
CLASS_WEIGHTS: tuple[str, ...] = ("none", "auto")


@dataclass
class TrainConfig:
    """How to train: optimisation, schedule, stopping, data split, hardware. Defaults suit the char-CNN."""

    lr: float = 5e-3  # peak learning rate of AdamW (after warmup)
    epochs: int = 6  # maximum number of passes over the training set (early stopping may end sooner)
    batch_size: int = 64  # rows per optimizer step per process, before gradient accumulation
    eval_batch_size: int = 256  # rows per forward pass when scoring the validation set
    max_length: int = 256  # texts are cut to this many tokens (characters for the char-CNN)
    warmup: float = 0.05  # warmup of the learning rate: a fraction of all steps when < 1, else a step count
    weight_decay: float = 0.01  # AdamW weight decay; never applied to biases and LayerNorm weights
    schedule: Schedule = "linear"  # learning-rate decay after warmup
    restarts: int = 2  # number of cosine cycles for schedule "cosine_with_restarts"
    grad_accum: int = 1  # optimizer step every N batches (effective batch = batch_size * N * processes)
    early_stopping_patience: int | None = 2  # stop after N epochs without a lower validation loss; None = off
    class_weights: Literal["none", "auto"] = "none"  # "auto": loss weights = inverse class frequency
    seed: int = 42  # seeds python, numpy and torch (model init, shuffling, dropout) and the validation split
    device: Literal["auto", "cpu", "cuda"] = "auto"  # "auto" uses CUDA when present
    precision: Precision = "auto"  # mixed precision on CUDA: "auto" = bf16 when supported; CPU is always fp32
    val_split: float = 0.1  # fraction of the training file held out (stratified) when no --val-data is given
    num_workers: int = 0  # data-loader worker processes (0: load in the training process)
    logs: bool = True  # write TensorBoard logs into BUNDLE/logs
    quiet: bool = False  # no progress bar

    def validate(self) -> TrainConfig:
        """Check every value; raise one :class:`UsageError` naming each offending flag. Returns self."""
        problems: list[str] = []

        def need(ok: bool, flag: str, what: str, value: Any) -> None:
            if not ok:
                problems.append(f"{flag} must be {what}, got {value!r}")

        need(self.lr > 0, "--lr", "> 0", self.lr)
        need(self.epochs >= 1, "--epochs", ">= 1", self.epochs)
        need(self.batch_size >= 1, "--batch-size", ">= 1", self.batch_size)
        need(self.eval_batch_size >= 1, "--eval-batch-size", ">= 1", self.eval_batch_size)
        need(self.max_length >= 1, "--max-length", ">= 1", self.max_length)
        need(self.warmup >= 0, "--warmup", ">= 0 (a fraction < 1 or a step count)", self.warmup)
        need(
            self.warmup < 1 or float(self.warmup).is_integer(),
            "--warmup",
            "a fraction < 1 or a whole step count",
            self.warmup,
        )
        need(self.weight_decay >= 0, "--weight-decay", ">= 0", self.weight_decay)
        need(self.schedule in SCHEDULES, "--schedule", f"one of {', '.join(SCHEDULES)}", self.schedule)
        need(self.restarts >= 1, "--restarts", ">= 1", self.restarts)
        need(self.grad_accum >= 1, "--grad-accum", ">= 1", self.grad_accum)
        need(
            self.early_stopping_patience is None or self.early_stopping_patience >= 1,
            "--early-stopping-patience",
            ">= 1 (0 turns it off)",
            self.early_stopping_patience,
        )
        need(self.class_weights in CLASS_WEIGHTS, "--class-weights", "'none' or 'auto'", self.class_weights)
        need(self.device in DEVICES, "--device", f"one of {', '.join(DEVICES)}", self.device)
        need(self.precision in PRECISIONS, "--precision", f"one of {', '.join(PRECISIONS)}", self.precision)
        need(0 < self.val_split < 1, "--val-split", "between 0 and 1 (exclusive)", self.val_split)
        need(self.num_workers >= 0, "--num-workers", ">= 0", self.num_workers)
        if problems:
            raise UsageError("; ".join(problems))
        return self

    def to_json(self) -> dict[str, Any]:
        """The hyper-parameters recorded in the bundle (``training.hyperparameters``)."""
        data = asdict(self)
        for key in ("quiet", "logs", "num_workers"):
            data.pop(key)
        return data
