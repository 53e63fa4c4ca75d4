"""The shared training engine: best epoch restored, whole-set metrics, class weights, warnings, config errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clsrun.runtime.errors import UsageError
from clsrun.trainer.config import TrainConfig
from clsrun.trainer.engine import (
    ClassificationDataset,
    fit,
    inverse_frequency_weights,
    pad_collate,
    seed_everything,
    training_device,
)
from clsrun.trainer.reporting import EpochLog, EpochRecord


class _Bag(torch.nn.Module):
    """A bag-of-ids classifier: tiny and quick to train, same ``forward(input_ids) -> logits`` contract."""

    def __init__(self, vocab: int = 20, n_labels: int = 2) -> None:
        super().__init__()
        self.embed = torch.nn.EmbeddingBag(vocab, n_labels, mode="sum", padding_idx=0)
        self.bias = torch.nn.Parameter(torch.zeros(n_labels))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed(input_ids) + self.bias  # (B, C)


def _data(n: int, seed: int, noise: float = 0.2) -> ClassificationDataset:
    """Label 1 rows mostly hold ids 10..19, label 0 rows ids 2..9; ``noise`` of the labels are flipped."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    rows = [
        rng.integers(10, 20, rng.integers(1, 6)) if t else rng.integers(2, 10, rng.integers(1, 6)) for t in y
    ]
    flip = rng.random(n) < noise
    return ClassificationDataset({"input_ids": rows}, np.where(flip, 1 - y, y))


def _config(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        lr=0.5,
        epochs=4,
        batch_size=8,
        eval_batch_size=7,
        warmup=0,
        quiet=True,
        logs=False,
        early_stopping_patience=None,
    )
    return TrainConfig.for_kind("charcnn", **{**base, **kw})


def test_fit_returns_the_epoch_with_lowest_validation_loss_and_whole_set_logits() -> None:
    seed_everything(0)
    model = _Bag()
    train, val = _data(160, 1), _data(45, 2)  # 45 rows, eval batches of 7: the last batch holds 3
    result = fit(model, train, val, pad_collate({"input_ids": 0}), _config(), ["a", "b"])
    assert len(result.history) == 4
    assert result.val_logits.shape == (45, 2)
    np.testing.assert_array_equal(result.val_targets, val.targets)
    # The returned model is the best epoch's: its loss and accuracy on the whole validation set match.
    batch = pad_collate({"input_ids": 0})([val[i] for i in range(len(val))])
    with torch.no_grad():
        logits = result.model(input_ids=batch["input_ids"])
    loss = float(F.cross_entropy(logits, batch["labels"]))
    assert loss == pytest.approx(min(r.val_loss for r in result.history), rel=1e-4)
    assert result.best.val_loss == pytest.approx(loss, rel=1e-4)
    accuracy = float((result.val_logits.argmax(1) == val.targets).mean())
    assert result.best.val_accuracy == pytest.approx(accuracy)
    assert not result.model.training


def test_early_stopping_ends_training() -> None:
    seed_everything(0)
    # A huge learning rate on noisy labels: validation loss stops improving quickly.
    result = fit(
        _Bag(),
        _data(80, 1, noise=0.45),
        _data(40, 2, noise=0.45),
        pad_collate({"input_ids": 0}),
        _config(lr=50.0, epochs=30, early_stopping_patience=1),
        ["a", "b"],
    )
    assert len(result.history) < 30
    assert result.best_epoch == len(result.history) - 1


def test_inverse_frequency_weights() -> None:
    weights = inverse_frequency_weights(np.array([0, 0, 0, 1]), 3)
    # N / (C * count): 4 / (3 * 3), 4 / (3 * 1); a class absent from training gets 0
    torch.testing.assert_close(weights, torch.tensor([4 / 9, 4 / 3, 0.0]))


def test_class_weights_auto_raises_recall_of_the_rare_class() -> None:
    rng = np.random.default_rng(0)
    # 90% label 0; the two classes overlap (ids 5..14 vs 2..11), so an unweighted model leans to label 0.
    y = (rng.random(300) < 0.1).astype(int)
    rows = [rng.integers(5, 15, 3) if t else rng.integers(2, 12, 3) for t in y]
    data = ClassificationDataset({"input_ids": rows}, y)
    recalls = {}
    for mode in ("none", "auto"):
        seed_everything(0)
        result = fit(
            _Bag(), data, data, pad_collate({"input_ids": 0}), _config(lr=0.2, class_weights=mode), ["x", "y"]
        )
        pred = result.val_logits.argmax(1)
        recalls[mode] = float((pred[y == 1] == 1).mean())
    assert recalls["auto"] > recalls["none"]


def test_overfitting_warning_names_the_epoch(caplog: pytest.LogCaptureFixture) -> None:
    epochs = EpochLog(epochs=3)
    caplog.set_level(logging.INFO, logger="clsrun.trainer")
    for epoch, (train_loss, val_loss) in enumerate([(0.9, 0.7), (0.6, 0.5), (0.3, 0.6)], start=1):
        epochs.add(EpochRecord(epoch, train_loss, 1.0, val_loss, 0.5))
    assert epochs.overfit_epochs == [3]
    assert "epoch 3: validation loss rose (0.5000 -> 0.6000) while training loss fell" in caplog.text
    assert "epoch 2/3: train loss 0.6000" in caplog.text


def test_config_errors_name_every_flag() -> None:
    with pytest.raises(
        UsageError,
        match=r"--lr must be a finite number > 0.*--epochs must be >= 1.*--schedule must be one of",
    ):
        TrainConfig.for_kind("charcnn", lr=0, epochs=0, schedule="step")
    with pytest.raises(UsageError, match=r"--warmup must be >= 0: a fraction < 1 or a whole step count"):
        TrainConfig.for_kind("charcnn", warmup=2.5)


def test_device_requests_that_cannot_be_met(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="--device cuda"):
        training_device(TrainConfig.for_kind("charcnn", device="cuda"))
    with pytest.raises(UsageError, match="--precision bf16 needs CUDA"):
        training_device(TrainConfig.for_kind("charcnn", precision="bf16"))
    assert training_device(TrainConfig.for_kind("charcnn")) == ("cpu", "fp32")


def test_pad_collate_pads_to_the_longest_row() -> None:
    rows = [{"input_ids": np.array([3, 4, 5]), "labels": 1}, {"input_ids": np.array([7]), "labels": 0}]
    batch = pad_collate({"input_ids": 0})(rows)
    assert batch["input_ids"].tolist() == [[3, 4, 5], [7, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]
