"""What a training run shows while it runs, for every training loop: one line per epoch, the overfitting
warning, the closing summary, progress bars and TensorBoard scalars.

Only the main process reports (``distributed.is_main``). On a terminal a bar covers one epoch (or the
encoding pass) and is erased when it closes, so each epoch's line starts on a clean line; off a terminal, or
with ``--quiet``, there are no bars. Losses print with four decimals, and a rise is only called a rise when
the printed numbers differ.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clsrun.runtime.bundle import LOGS_DIR
from clsrun.runtime.terminal import bar_geometry
from clsrun.trainer import distributed
from clsrun.trainer.config import TrainConfig
from clsrun.trainer.options import at_share

log = logging.getLogger("clsrun.trainer")


@dataclass
class EpochRecord:
    """One epoch's numbers. Train figures are running means over the epoch (dropout on)."""

    epoch: int  # 1-based
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float


def _printed(loss: float) -> float:
    """``loss`` as the lines print it (four decimals)."""
    return float(f"{loss:.4f}")


def overfitting(earlier: EpochRecord, later: EpochRecord) -> str | None:
    """The warning when, from ``earlier`` to ``later``, validation loss rose while training loss fell (as
    printed: 0.0524 -> 0.0524 is no rise); None otherwise."""
    rose = _printed(later.val_loss) > _printed(earlier.val_loss)
    fell = _printed(later.train_loss) < _printed(earlier.train_loss)
    if not (rose and fell):
        return None
    since = "" if earlier.epoch == later.epoch - 1 else f" since epoch {earlier.epoch}"
    return (
        f"epoch {later.epoch}: validation loss rose ({earlier.val_loss:.4f} -> {later.val_loss:.4f}{since}) "
        f"while training loss fell ({earlier.train_loss:.4f} -> {later.train_loss:.4f}): the model starts to "
        "overfit; the epoch with the lowest validation loss is kept"
    )


@dataclass
class EpochLog:
    """Per-epoch history and what is shown about it. ``each_epoch=False`` (a head trained for hundreds of
    epochs of milliseconds) keeps the history and scalars but reports only at :meth:`finish`."""

    epochs: int  # the most epochs the run may take (the "/6" of "epoch 1/6")
    writer: Any = None  # a TensorBoard SummaryWriter, or None
    each_epoch: bool = True
    # what "validation loss" is, said where it is printed: "class-weighted" under --class-weights auto
    # (the loss training minimises and early stopping watches), which other reports give unweighted
    loss_kind: str = ""
    history: list[EpochRecord] = field(default_factory=list)
    overfit_epochs: list[int] = field(default_factory=list)  # epochs warned about

    def add(self, rec: EpochRecord) -> None:
        """Record an epoch; on the main process write its scalars, its line and any overfitting warning."""
        prev = self.history[-1] if self.history else None
        self.history.append(rec)
        if not distributed.is_main():
            return
        if self.writer is not None:
            for tag, value in (
                ("train/epoch_loss", rec.train_loss),
                ("train/epoch_accuracy", rec.train_accuracy),
                ("eval/epoch_loss", rec.val_loss),
                ("eval/epoch_accuracy", rec.val_accuracy),
            ):
                self.writer.add_scalar(tag, value, rec.epoch)
        if not self.each_epoch:
            return
        best = min(r.val_loss for r in self.history) == rec.val_loss
        log.info(
            "epoch %d/%d: train loss %.4f acc %.4f | val loss %.4f acc %.4f%s",
            *(rec.epoch, self.epochs, rec.train_loss, rec.train_accuracy, rec.val_loss, rec.val_accuracy),
            "  (best so far)" if best else "",
        )
        self._warn(prev, rec)

    @property
    def best_epoch(self) -> int:
        """1-based epoch with the lowest validation loss (the first, on a tie)."""
        losses = [r.val_loss for r in self.history]
        return 1 + losses.index(min(losses))

    def finish(self) -> int:
        """Close the TensorBoard writer, say which epoch is kept, and hint at more epochs when the last one
        was still the best. Returns :attr:`best_epoch`."""
        if self.writer is not None:
            self.writer.close()
        best = self.history[self.best_epoch - 1]
        last = self.history[-1]
        if distributed.is_main():
            if not self.each_epoch and last is not best:
                self._warn(best, last)
            log.info(
                "best epoch %d of %d (lowest %svalidation loss: %.4f, accuracy %.4f), weights restored",
                *(best.epoch, len(self.history), f"{self.loss_kind} " if self.loss_kind else ""),
                *(best.val_loss, best.val_accuracy),
            )
            # every validation row right: more epochs can only lower a loss nobody reads
            if last is best and last.epoch == self.epochs and best.val_accuracy < 1.0:
                log.info("the last epoch was still the best: training longer (a higher --epochs) may help")
        return best.epoch

    def _warn(self, earlier: EpochRecord | None, later: EpochRecord) -> None:
        warning = None if earlier is None else overfitting(earlier, later)
        if warning is not None:
            self.overfit_epochs.append(later.epoch)
            log.warning(warning)


def headline_metric(config: TrainConfig) -> str:
    """The validation number a run is judged by: macro-F1 when ``--class-weights auto`` asked for the
    rare classes to count, else accuracy (the key in ``ClassificationReport.summary()``)."""
    return "macro_f1" if config.class_weights == "auto" else "accuracy"


def cut_note(share: float, max_length: int, unit: str) -> str:
    """``"12% of training texts cut to 256 characters (--max-length)"``: what a too short length costs."""
    return f"{100 * share:.0f}% of training texts cut to {max_length} {unit} (--max-length)"


LONG_TEXTS_WARN_SHARE = 0.5  # training texts cut at --max-length from which a run warns


def long_texts_warning(lengths: Sequence[int], max_length: int, unit: str) -> str | None:
    """A warning when most training texts are longer than ``max_length`` (``lengths`` in ``unit``): the
    model then reads only their beginnings (a char-CNN at its default 256 characters read about a ninth of
    each BBC article and lost to the TF-IDF baseline: README), which the cut share alone did not flag."""
    if not len(lengths):
        return None
    ordered = sorted(lengths)
    cut = sum(1 for n in ordered if n > max_length) / len(ordered)
    if cut <= LONG_TEXTS_WARN_SHARE:
        return None
    median, p90 = at_share(ordered, 0.5), at_share(ordered, 0.9)
    return (
        f"{100 * cut:.0f}% of training texts are longer than --max-length {max_length} {unit}, so the model "
        f"reads only their first {max_length}; their median is {median:,} {unit} and 90th percentile {p90:,}: "
        "a larger --max-length (slower epochs) lets it read more of each"
    )


def tensorboard_writer(out: Path | None, config: TrainConfig, run: str | None = None) -> Any:
    """A SummaryWriter into ``out/logs`` (or ``out/logs/run``, which TensorBoard shows as a run of its own)
    on the main process when ``config.logs``; else None."""
    if out is None or not config.logs or not distributed.is_main():
        return None
    from torch.utils.tensorboard import SummaryWriter

    folder = Path(out) / LOGS_DIR
    return SummaryWriter(log_dir=str(folder if run is None else folder / run))


def progress_bar(total: int, desc: str, unit: str, config: TrainConfig) -> Any:
    """A tqdm bar on stderr, drawn only on the main process's terminal and without ``--quiet``, at the
    terminal's size (:func:`~clsrun.runtime.terminal.bar_geometry`), erased when closed."""
    from tqdm import tqdm

    shown = not config.quiet and distributed.is_main() and sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        **bar_geometry(sys.stderr),
        leave=False,
        disable=not shown,
    )
