"""``--freeze-encoder``: run the encoder once over every row, then train only the linear head on the features.

A frozen encoder computes the same pooled vector for a text in every epoch, so running it each epoch (as
the tutorials' "frozen BERT + linear layer" loop does) repeats the expensive part for nothing. Here:

1. :func:`extract_features`: one no-grad pass over all rows (training and validation), sorted by token
   length and batched so padding stays small; under ``torchrun`` each process encodes a 1/N share and the
   shares are all-gathered.
2. :func:`train_head`: AdamW on the ``(N, H)`` features for many epochs (milliseconds each), minibatches
   shuffled with the run's seed, validation loss after every epoch, early stopping with the best head
   restored. Features are standardised for the optimiser and the scaling is folded back into the weights,
   so the head in the bundle applies to the raw pooled vector exactly as in full fine-tuning.

The result is an ordinary BERT bundle: the pretrained encoder plus the trained head.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clsrun.runtime.encode import Tokens
from clsrun.trainer import distributed
from clsrun.trainer.config import TrainConfig
from clsrun.trainer.reporting import EpochRecord

log = logging.getLogger("clsrun.trainer")

PadFn = Callable[[Tokens, np.ndarray], dict[str, np.ndarray]]
FeatureFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.inference_mode()
def extract_features(
    features: FeatureFn,
    tokens: Tokens,
    pad: PadFn,
    batch_size: int,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """``(N, H)`` float32 pooled features of every row of ``tokens``, in row order.

    Rows are encoded shortest first in batches of ``batch_size`` (each padded only to its longest row).
    ``progress(rows_done)`` is called after each batch. Under ``torch.distributed`` each process encodes
    every N-th batch and the results are all-gathered, so every process returns all rows.
    """
    rank, world = distributed.joined()
    order = np.argsort(tokens.lengths, kind="stable")  # (N,) shortest first
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    mine = batches[rank::world]
    parts: list[tuple[np.ndarray, torch.Tensor]] = []
    for rows in mine:
        inputs = {k: torch.from_numpy(v).to(device) for k, v in pad(tokens, rows).items()}  # each (B, T)
        parts.append((rows, features(inputs["input_ids"], inputs["attention_mask"]).float().cpu()))  # (B, H)
        if progress is not None:
            progress(len(rows) * world)
    if world > 1:
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, parts)
        parts = [p for share in gathered for p in share]
    width = parts[0][1].shape[1]
    out = torch.empty(len(tokens), width, dtype=torch.float32)  # (N, H)
    for rows, feats in parts:
        out[torch.from_numpy(rows)] = feats
    return out


@dataclass
class HeadResult:
    """The trained head (best epoch restored) and its history."""

    best_epoch: int
    history: list[EpochRecord] = field(default_factory=list)
    val_logits: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (N_val, C)


@dataclass(frozen=True)
class HeadTraining:
    """How the head is trained (from ``TrainConfig``; defaults: ``options.FROZEN_DEFAULTS``)."""

    lr: float  # AdamW step size: features are standardised, so one value suits most encoders
    epochs: int  # upper bound; each epoch is milliseconds
    batch_size: int  # rows per AdamW step
    weight_decay: float  # on the weight matrix only, never the bias
    patience: int | None  # stop after this many epochs without a lower validation loss; None = off
    seed: int  # initial weights and minibatch order

    @classmethod
    def from_config(cls, config: TrainConfig) -> HeadTraining:
        """The fields of ``config`` under the same names (``patience`` is ``early_stopping_patience``)."""
        names = {"patience": "early_stopping_patience"}
        return cls(**{f.name: getattr(config, names.get(f.name, f.name)) for f in fields(cls)})


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread for the block (or, as ``@one_thread()``, the function), then restore.

    For models too small to split: the head's (batch, H) x (H, C) products, and the tests' tiny models. A
    second thread gains nothing there, and on a shared CPU a spinning OpenMP thread slows them severalfold.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@one_thread()
def train_head(
    head: nn.Linear,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    settings: HeadTraining,
    class_weight: torch.Tensor | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> HeadResult:
    """Train ``head`` in place on features ``train_x (N, H)`` with targets ``train_y (N,)``.

    Validation loss after every epoch picks the best epoch; ``settings.patience`` epochs without a lower
    one stop training. ``head`` ends holding the best epoch's weights, expressed on the raw
    (unstandardised) features. ``class_weight`` ``(C,)`` weights the loss (``--class-weights auto``).
    """
    mean = train_x.mean(dim=0)  # (H,)
    std = train_x.std(dim=0).clamp(min=1e-6)  # (H,)
    xs, vs = (train_x - mean) / std, (val_x - mean) / std  # (N, H), (N_val, H)
    work, optim, generator = _fresh_head(head, settings)
    result = HeadResult(best_epoch=0)
    best_loss = math.inf
    best_state: dict[str, torch.Tensor] = {}
    for epoch in range(1, settings.epochs + 1):
        train_loss, train_acc = _epoch(work, optim, xs, train_y, settings.batch_size, generator, class_weight)
        with torch.no_grad():
            logits = work(vs)  # (N_val, C)
            val_loss = float(F.cross_entropy(logits, val_y, weight=class_weight))
            val_acc = float((logits.argmax(-1) == val_y).float().mean())
        record = EpochRecord(epoch, train_loss, train_acc, val_loss, val_acc)
        result.history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if val_loss < best_loss:
            best_loss, result.best_epoch = val_loss, epoch
            best_state = copy.deepcopy(work.state_dict())
        elif settings.patience is not None and epoch - result.best_epoch >= settings.patience:
            break
    work.load_state_dict(best_state)
    with torch.no_grad():
        # work(x') with x' = (x - mean) / std  ==  x @ (W / std).T + (b - (W / std) @ mean)
        weight = work.weight / std  # (C, H)
        head.weight.copy_(weight)
        head.bias.copy_(work.bias - weight @ mean)
        result.val_logits = head(val_x).numpy().astype(np.float32)
    return result


def _fresh_head(
    head: nn.Linear, settings: HeadTraining
) -> tuple[nn.Linear, torch.optim.Optimizer, torch.Generator]:
    """A new linear layer shaped like ``head`` (small seeded weights), its AdamW (no decay on the bias), and
    the generator that shuffles the minibatches."""
    work = nn.Linear(head.in_features, head.out_features)
    generator = torch.Generator().manual_seed(settings.seed)
    with torch.no_grad():
        work.weight.normal_(0.0, 0.01, generator=generator)
        work.bias.zero_()
    groups = [
        {"params": [work.weight], "weight_decay": settings.weight_decay},
        {"params": [work.bias], "weight_decay": 0.0},
    ]
    return work, torch.optim.AdamW(groups, lr=settings.lr), generator


def _epoch(
    work: nn.Linear,
    optim: torch.optim.Optimizer,
    xs: torch.Tensor,
    ys: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    class_weight: torch.Tensor | None,
) -> tuple[float, float]:
    """One pass over shuffled minibatches of ``xs (N, H)``; returns the mean training loss and accuracy."""
    perm = torch.randperm(len(xs), generator=generator)  # (N,)
    total, correct = 0.0, 0
    for start in range(0, len(xs), batch_size):
        idx = perm[start : start + batch_size]
        logits = work(xs[idx])  # (B, C)
        loss = F.cross_entropy(logits, ys[idx], weight=class_weight)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        total += float(loss.detach()) * len(idx)
        correct += int((logits.detach().argmax(-1) == ys[idx]).sum())
    return total / len(xs), correct / len(xs)
