"""Training settings shared by every model kind: one frozen dataclass, one comment per field.

The values that suit one model kind ruin another (the char-CNN's learning rate would wreck a BERT), so those
fields have no default here: :meth:`TrainConfig.for_kind` fills them from the kind's options
(``clsrun.trainer.options``) and applies what the user set on top. ``TrainConfig()`` alone is a
``TypeError``, never a BERT run at the char-CNN's settings. :meth:`TrainConfig.validate`'s errors name the
flag the user typed (``--lr``), not the field. Kind-specific settings (the char-CNN's width, BERT's
pooling) are the kind's options.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, get_args

from clsrun.runtime.errors import UsageError
from clsrun.runtime.variant import DEVICES, Device

if TYPE_CHECKING:
    from clsrun.trainer.options import KindOptions

Schedule = Literal["linear", "cosine", "cosine_with_restarts", "constant"]
SCHEDULES: tuple[str, ...] = ("linear", "cosine", "cosine_with_restarts", "constant")
# Mixed precision of the training loop: not the scoring precisions of ``runtime.variant`` (which exported
# variant runs) nor ``clsrun.export.EXPORT_PRECISIONS`` (which variants export builds).
TrainingPrecision = Literal["auto", "fp32", "bf16", "fp16"]
TRAINING_PRECISIONS: tuple[str, ...] = get_args(TrainingPrecision)
CLASS_WEIGHTS: tuple[str, ...] = ("none", "auto")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train: optimisation, schedule, stopping, split seed, hardware. Build it with :meth:`for_kind`."""

    # Set by the model kind (see each kind's ``train_defaults``): no default here.
    lr: float  # peak learning rate of AdamW (after warmup)
    epochs: int  # maximum number of passes over the training set (early stopping may end sooner)
    batch_size: int  # rows per optimizer step per process, before gradient accumulation
    eval_batch_size: int  # rows per forward pass when scoring the validation set
    max_length: int  # texts are cut to this many tokens (characters for the char-CNN)
    warmup: float  # warmup of the learning rate: a fraction of all steps when < 1, else a step count
    early_stopping_patience: int | None  # stop after N epochs without a lower validation loss; None = off
    # The same for every kind.
    weight_decay: float = 0.01  # AdamW weight decay; never applied to biases and LayerNorm weights
    schedule: Schedule = "linear"  # learning-rate decay after warmup
    restarts: int = 2  # number of cosine cycles for schedule "cosine_with_restarts"
    grad_accum: int = 1  # optimizer step every N batches (effective batch = batch_size * N * processes)
    class_weights: Literal["none", "auto"] = "none"  # "auto": loss weights = inverse class frequency
    seed: int = 42  # seeds python, numpy and torch (model init, shuffling, dropout) and the validation split
    device: Device = "auto"  # "auto" uses CUDA when present (``runtime.variant.resolve_device``)
    precision: TrainingPrecision = (
        "auto"  # mixed precision on CUDA: "auto" = bf16 when supported; CPU is always fp32
    )
    num_workers: int = 0  # data-loader worker processes (0: load in the training process)
    logs: bool = True  # write TensorBoard logs into BUNDLE/logs
    quiet: bool = False  # no progress bar

    @classmethod
    def for_kind(cls, model: str, options: KindOptions | None = None, **overrides: Any) -> TrainConfig:
        """The settings for ``model`` (a ``--model`` value: ``"charcnn"``, ``"minilm"``, a checkpoint folder),
        with ``overrides`` (e.g. the flags a user typed) replacing only those fields. Validated.

        ``options`` (the kind's options object) picks among a kind's regimes: BERT with ``freeze_encoder``
        trains only a head, with other defaults. Omitted: the kind's default options. An unknown field name
        in ``overrides`` is a ``TypeError``.
        """
        from clsrun.trainer.kinds import kind_of

        chosen = options if options is not None else kind_of(model).options()
        return cls(**{**chosen.train_defaults(), **overrides}).validate()

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied, validated."""
        return replace(self, **changes).validate()

    def validate(self) -> TrainConfig:
        """Check every value; raise one :class:`UsageError` naming each offending flag. Returns self."""
        problems: list[str] = []

        def need(ok: bool, flag: str, what: str, value: Any) -> None:
            if not ok:
                problems.append(f"{flag} must be {what}, got {value!r}")

        need(0 < self.lr < math.inf, "--lr", "a finite number > 0", self.lr)
        need(self.epochs >= 1, "--epochs", ">= 1", self.epochs)
        need(self.batch_size >= 1, "--batch-size", ">= 1", self.batch_size)
        need(self.eval_batch_size >= 1, "--eval-batch-size", ">= 1", self.eval_batch_size)
        need(self.max_length >= 1, "--max-length", ">= 1", self.max_length)
        need(
            self.warmup >= 0 and (self.warmup < 1 or float(self.warmup).is_integer()),
            "--warmup",
            ">= 0: a fraction < 1 or a whole step count",
            self.warmup,
        )
        need(0 <= self.weight_decay < math.inf, "--weight-decay", "a finite number >= 0", self.weight_decay)
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
        precisions = ", ".join(TRAINING_PRECISIONS)
        need(self.precision in TRAINING_PRECISIONS, "--precision", f"one of {precisions}", self.precision)
        need(self.num_workers >= 0, "--num-workers", ">= 0", self.num_workers)
        need(0 <= self.seed < 2**32, "--seed", "a whole number from 0 to 4294967295", self.seed)
        if problems:
            raise UsageError("; ".join(problems))
        return self

    def unused(self, given: set[str]) -> str | None:
        """A warning naming settings among ``given`` (the fields a user set) that these settings make no
        use of: ``--restarts`` counts only under ``--schedule cosine_with_restarts``."""
        if "restarts" in given and self.schedule != "cosine_with_restarts":
            return f"--restarts: unused with --schedule {self.schedule} (it counts the cycles of cosine_with_restarts)"
        return None

    def to_json(self) -> dict[str, Any]:
        """The hyper-parameters recorded in the bundle (``training.hyperparameters``)."""
        data = asdict(self)
        for key in ("quiet", "logs", "num_workers"):
            data.pop(key)
        return data
