"""``train()``: the library entry point of training. ``clsrun train`` maps its flags here in one call.

It owns what every kind shares: which kind ``--model`` names and its options (``kinds.py``), the training
settings with that kind's defaults under what the user set (``TrainConfig.for_kind``), reading the data
(the runtime's readers, ``data.py``), preparing ``--out``, and who writes it under ``torchrun`` (rank 0).
Everything up to preparing ``--out`` runs without torch: a wrong flag, a missing column or an unreadable
file fails in a second and leaves nothing behind. Then the kind's train function (torch) trains and writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clsrun.runtime import stopping
from clsrun.runtime.bundle import (
    SPEC_FILE,
    STAGING_PREFIX,
    UNFINISHED,
    VARIANT_DIRS,
    Normalization,
    previous_of,
)
from clsrun.runtime.errors import UsageError, require
from clsrun.runtime.files import is_temporary, make_folder
from clsrun.runtime.outlock import OutputLock
from clsrun.runtime.textnorm import normalize_many
from clsrun.trainer import distributed
from clsrun.trainer.baseline import BaselineResult, BaselineRun, record
from clsrun.trainer.config import TrainConfig
from clsrun.trainer.data import DataOptions, Split, imbalance
from clsrun.trainer.kinds import Kind, kind_of
from clsrun.trainer.options import (
    CHARCNN_AUTO_LENGTH,
    CHARCNN_DEFAULTS,
    CHARCNN_MAX_EPOCHS,
    CHARCNN_MIN_STEPS,
    BertOptions,
    KindOptions,
    charcnn_epochs,
    charcnn_length,
    steps_per_epoch,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from clsrun.runtime.metrics import ClassificationReport


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did."""

    bundle: Path  # the bundle folder (written by the main process only)
    kind: str  # the kind that trained it ("charcnn", "bert", ...)
    config: TrainConfig  # the settings used (the kind's defaults under what was set)
    options: KindOptions  # the kind's options used
    report: ClassificationReport | None  # validation metrics; None on torchrun processes other than rank 0
    baseline: BaselineResult | None = None  # the TF-IDF + LR baseline on the same split (None: skipped)


def train(
    data: Path | str,
    out: Path | str,
    *,
    model: str = "ngram",
    config: TrainConfig | Mapping[str, Any] | None = None,
    options: KindOptions | Mapping[str, Any] | None = None,
    data_options: DataOptions | None = None,
    force: bool = False,
    baseline: bool = True,
) -> TrainResult:
    """Train a classifier on the labelled file ``data`` and write its bundle into ``out``.

    - ``model``: ``"ngram"`` (the default: the kind of clsrun's default model, and the fastest to train),
      ``"charcnn"``, ``"minilm"``, or a local Hugging Face checkpoint folder (nothing is downloaded); any
      name registered in :data:`clsrun.trainer.kinds.KINDS`.
    - ``config``: a whole :class:`TrainConfig`, or only the fields to change (e.g. ``{"epochs": 2}``) over
      the kind's defaults; None: the kind's defaults.
    - ``options``: the kind's options object (e.g. :class:`~clsrun.trainer.options.CharCNNOptions`), or only
      the fields to set; None: the kind's defaults.
    - ``data_options``: the text and label columns, and ``--val-data`` or ``--val-split``.
    - ``force``: replace an existing bundle in ``out`` (a folder that is not a bundle is never deleted).
    - ``baseline``: also fit TF-IDF + logistic regression on the same split, beside training
      (``baseline.py``), record it in the bundle and warn when the model does not beat it.

    Under ``torchrun`` every process calls this; only rank 0 prepares and writes ``out``. Raises
    :class:`UsageError` for bad settings, :class:`InputError` for unreadable data and
    :class:`ModelNotFoundError` for a missing checkpoint, all before ``out`` is touched.
    """
    kind = kind_of(model)
    if isinstance(config, Mapping):  # None means "choose for me", as leaving it out does (patience: off)
        config = {k: v for k, v in config.items() if v is not None or k == "early_stopping_patience"}
    kind_options = kind.options_for(model, options)
    from_data = _from_data(kind, config)
    if isinstance(config, TrainConfig):
        settings = config.validate()
    else:
        settings = TrainConfig.for_kind(model, kind_options, **(config or {}))
        given = set(config or {}) | (set(options) if isinstance(options, Mapping) else set())
        for unused in (kind_options.unused(given), settings.unused(given)):
            if unused:
                log.warning("%s", unused)
    if kind.name == "bert":
        settings = _within_positions(settings, kind_options, _length_given(config, kind_options))
    if kind.name == "bert" and settings.max_length < 3:  # [CLS], one token, [SEP]: said before torch loads
        raise UsageError(
            f"--max-length {settings.max_length}: a BERT model needs at least 3 ([CLS], a token, [SEP])"
        )
    where = (data_options or DataOptions()).validate()
    out = Path(out)
    main = distributed.is_main()
    # One writer of a bundle at a time (train or export): two would delete or overwrite each other's files.
    with OutputLock.acquire(out) if main else contextlib.nullcontext():
        return _train(kind, kind_options, settings, where, Path(data), out, force, baseline, from_data)


def _length_given(config: TrainConfig | Mapping[str, Any] | None, options: KindOptions) -> bool:
    """Whether the user chose ``max_length``: a key of a ``config`` mapping, or, in a whole
    :class:`TrainConfig` (built with ``for_kind``, which fills every field), a value other than the kind's
    default."""
    if isinstance(config, TrainConfig):
        return bool(config.max_length != options.train_defaults().get("max_length"))
    return "max_length" in (config or {})


def _within_positions(settings: TrainConfig, options: KindOptions, given: bool) -> TrainConfig:
    """``settings`` with the default ``--max-length`` cut to the checkpoint's positions when it has fewer (a
    small BERT of 128): its refusal named a flag the user never gave. A value the user ``given`` that does not
    fit is refused here, before ``--out`` is touched, not cut: a silent cut would hide the mistake."""
    from clsrun.trainer.bert_checkpoint import checkpoint_positions, resolve_checkpoint, too_long

    if not isinstance(options, BertOptions):
        return settings
    limit = checkpoint_positions(resolve_checkpoint(options.model))
    if limit is None or limit >= settings.max_length:
        return settings
    if given:
        raise too_long(settings.max_length, limit)
    if distributed.is_main():
        log.info(
            "--max-length %d: this checkpoint's positions, fewer than the default %d",
            limit,
            settings.max_length,
        )
    return settings.replace(max_length=limit)


def _train(
    kind: Kind,
    kind_options: KindOptions,
    settings: TrainConfig,
    where: DataOptions,
    data: Path,
    out: Path,
    force: bool,
    baseline: bool,
    from_data: frozenset[str] = frozenset(),
) -> TrainResult:
    """:func:`train` with its settings resolved and ``out`` locked (on the main process); ``from_data``:
    the settings the training data decides (:func:`_from_data`)."""
    main = distributed.is_main()
    if main:
        check_out_dir(out, force)
    for module in ("torch", "transformers"):
        require(module, "train")
    if settings.device == "cuda" or settings.precision in ("bf16", "fp16"):
        from clsrun.trainer.engine import training_device  # imports torch: only when it can refuse

        training_device(settings)  # --device cuda without a GPU: said now, not after reading the data
    split = where.load(data, settings.seed)
    settings = _fitted_to(split, settings, from_data, say=main)
    prepared, rival = OutDir(), None
    try:
        # A stop while --out is prepared or the baseline starts lands once both are done, here in the try:
        # a bundle moved aside then always comes back, and the baseline's process always ends.
        with stopping.shielded():
            prepared = prepare_out_dir(out, force) if main else OutDir()
            # Normalization(): every kind trains on the default normalisation, and so does the baseline.
            rival = BaselineRun.start(split, settings, Normalization()) if main and baseline else None
        report = kind.train_function()(split, out, settings, kind_options)
        fitted = rival.result() if rival is not None and report is not None else None
        if fitted is not None and report is not None:
            record(out, fitted, report, settings, kind.name)
        stopping.honour()  # the last point where a stop puts the old bundle back
    except BaseException:
        if rival is not None:
            rival.cancel()
        if main:
            _discard_unfinished(out, prepared)
        raise
    if main:
        with stopping.shielded(then_raise=False):  # published: the run completes, whatever signal arrives
            finish_out_dir(out, prepared)
    return TrainResult(out, kind.name, settings, kind_options, report, fitted)


def _from_data(kind: Kind, config: TrainConfig | Mapping[str, Any] | None) -> frozenset[str]:
    """The settings the training data decides unless given (a whole :class:`TrainConfig` gives them all):
    ``class_weights``, and a char-CNN's ``max_length`` and ``epochs``. Applied by :func:`_fitted_to` once
    the data is read."""
    if isinstance(config, TrainConfig):
        return frozenset()
    wanted = {"class_weights"} | ({"max_length", "epochs"} if kind.name == "charcnn" else set())
    return frozenset(wanted - set(config or {}))


def _fitted_to(split: Split, settings: TrainConfig, from_data: frozenset[str], say: bool) -> TrainConfig:
    """``settings`` with the ones in ``from_data`` set from the training data, each said (when ``say``):

    - ``max_length`` (char-CNN): the texts' 90th-percentile length (:func:`charcnn_length`): news articles
      are read to 1,024 characters rather than their first 256.
    - ``epochs`` (char-CNN): enough for :data:`CHARCNN_MIN_STEPS` optimizer steps (:func:`charcnn_epochs`):
      bbc_en's 1,602 training rows are 26 steps an epoch, and 6 epochs left it at 0.78 accuracy.
    - ``class_weights``: ``auto`` when the labels are imbalanced (:func:`imbalance`): a loss that weighs every
      label alike finds the rare one (the n-gram model on inews_zh: macro-F1 0.6567 -> 0.7238, accuracy up
      too: README), and the run is judged by macro-F1. Balanced data keeps the plain loss.
    """
    if "max_length" in from_data:  # the lengths of what it trains on: the texts after normalisation
        texts = normalize_many(split.train_texts, Normalization())
        settings = settings.replace(max_length=charcnn_length([len(t) for t in texts]))
        if say:
            log.info(
                "char-CNN --max-length %d: the training texts' 90th-percentile length, rounded up to a multiple "
                "of 64, within %d-%d characters (--max-length sets it)",
                settings.max_length,
                *CHARCNN_AUTO_LENGTH,
            )
    if "epochs" in from_data:
        per_step = settings.batch_size * settings.grad_accum * distributed.world_size()
        settings = settings.replace(epochs=charcnn_epochs(len(split.train_texts), per_step))
        if say:
            steps = settings.epochs * steps_per_epoch(len(split.train_texts), per_step)
            log.info(
                "char-CNN --epochs %d: %s optimizer steps over %s training rows (%s wanted, within %d-%d "
                "epochs); early stopping may end it sooner (--epochs sets it)",
                settings.epochs,
                f"{steps:,}",
                f"{len(split.train_texts):,}",
                f"at least {CHARCNN_MIN_STEPS:,}",
                CHARCNN_DEFAULTS["epochs"],
                CHARCNN_MAX_EPOCHS,
            )
    uneven = imbalance(split.train_labels) if "class_weights" in from_data else None
    if uneven is not None:
        settings = settings.replace(class_weights="auto")
        if say:
            log.info(
                "labels are imbalanced (%s): the loss weighs every label alike and the run is judged by "
                "macro-F1 (--class-weights auto; --class-weights none turns it off)",
                uneven,
            )
    return settings


@dataclass(frozen=True)
class OutDir:
    """What :func:`prepare_out_dir` did to ``--out``, so that only that is undone or completed."""

    created: bool = False  # the folder did not exist
    moved_aside: bool = False  # the bundle in it was moved to :func:`previous_of` by this run


def _discard_unfinished(out: Path, prepared: OutDir) -> None:
    """Remove what a training that failed wrote into ``out`` (it was empty or new: everything in it is
    ours), and ``out`` itself when this run created it: a failed run leaves nothing that blocks the next.
    A bundle ``--force`` moved aside comes back: a failed or stopped retraining loses nothing."""
    if not (out / UNFINISHED).is_file():
        return
    _empty(out, best_effort=True)
    previous = previous_of(out)
    if prepared.moved_aside and previous.is_dir():
        with contextlib.suppress(OSError):
            out.rmdir()
            previous.rename(out)
    elif prepared.created:
        out.rmdir()


def _empty(folder: Path, best_effort: bool = False) -> None:
    """Delete everything in ``folder``; ``best_effort``: what cannot be deleted stays (cleaning up after a
    failure must not hide the failure)."""
    for p in folder.iterdir():
        shutil.rmtree(p, ignore_errors=best_effort) if p.is_dir() else p.unlink(missing_ok=best_effort)


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse an ``out`` that cannot receive a new bundle: not a folder, or not empty without ``force``, or
    not empty and not a clsrun bundle (never deleted, even with ``force``), or a symbolic link. Changes nothing.

    A link is refused, not followed: the bundle is written as a folder of its own at ``out``, so ``--force``
    moved the link aside and left it there (the next run failed on it), and two runs, one naming the link and
    one its target, held different locks while writing the same name."""
    if out.is_symlink():
        raise UsageError(
            f"--out {out}: is a symbolic link (to {os.readlink(out)}); train writes a bundle folder of its own: "
            "give the folder the link points to, or a name that is not a link"
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        unfinished = (out / UNFINISHED).is_file()
        if not force and unfinished:
            kept = (
                f"; the bundle it was replacing is in {previous_of(out)}: move it back to keep it"
                if previous_of(out).is_dir()
                else ""
            )
            raise UsageError(
                f"--out {out}: holds a bundle whose training did not finish (the process was stopped); "
                f"use --force to replace it{kept}"
            )
        foreign = [] if unfinished else _not_of_the_bundle(out)
        if foreign is None:  # said first: --force would not help, so it is not offered
            raise UsageError(
                f"--out {out}: not empty and not a clsrun bundle; clsrun never deletes it, even with --force: "
                "choose a new or empty folder"
            )
        if not force:
            raise UsageError(f"--out {out}: folder is not empty; use --force to replace the bundle in it")
        if foreign:
            raise UsageError(
                f"--out {out}: holds {', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}, which "
                f"its bundle does not list; refusing to delete them: move them away or choose another --out"
            )


# What training and export write into a bundle beside the files clsrun.json lists: TensorBoard logs, and
# the variant folders (an export that replaced its variants may leave one empty).
_BUNDLE_EXTRAS = frozenset({"logs", *VARIANT_DIRS})


def _not_of_the_bundle(out: Path) -> list[str] | None:
    """Names in ``out`` that its ``clsrun.json`` does not list (nor :data:`_BUNDLE_EXTRAS`), sorted; None
    when there is no such file or it is not a bundle's (a settings file of the same name): ``--force``
    deletes a bundle, never a folder that merely holds a ``clsrun.json``, nor files put beside a bundle
    (the training data)."""
    try:
        files = json.loads((out / SPEC_FILE).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        files = None
    if not isinstance(files, dict):
        return None
    listed = {str(name).split("/")[0] for name in files} | _BUNDLE_EXTRAS | {SPEC_FILE}
    ours = [p.name for p in out.iterdir() if p.name in listed or is_temporary(p.name)]
    ours += [p.name for p in out.glob(f"{STAGING_PREFIX}*")]  # an export killed outright left it
    return sorted(p.name for p in out.iterdir() if p.name not in ours)


def prepare_out_dir(out: Path, force: bool) -> OutDir:
    """Make ``out`` an empty folder but for the :data:`UNFINISHED` mark: created, or with ``force`` an old
    bundle in it moved aside (:func:`previous_of`: :func:`finish_out_dir` removes it once the new bundle is
    complete, :func:`_discard_unfinished` puts it back when training fails or is stopped), or an unfinished
    one removed (:func:`check_out_dir` first). Called before training, so a long run does not end in a
    refusal."""
    check_out_dir(out, force)
    created, moved = not out.exists(), False
    if out.is_dir() and any(out.iterdir()):
        if (out / UNFINISHED).is_file():
            _empty(out)  # a training killed before it finished: nothing worth keeping
        else:
            previous = previous_of(out)
            if previous.exists():  # from a run killed outright while it trained: replaced by this bundle
                shutil.rmtree(previous)
            out.rename(previous)
            moved = True
    make_folder(out, f"--out {out}")
    (out / UNFINISHED).write_bytes(b"")
    return OutDir(created, moved)


def finish_out_dir(out: Path, prepared: OutDir) -> None:
    """The new bundle in ``out`` is complete: its mark goes, and the bundle this run moved aside with it.
    One a run killed outright had moved aside stays, as the message that named it said (``move it back
    to keep it``): a later training into the same folder, without ``--force``, deleted it unannounced."""
    (out / UNFINISHED).unlink(missing_ok=True)
    previous = previous_of(out)
    if prepared.moved_aside:
        shutil.rmtree(previous, ignore_errors=True)
    elif previous.is_dir():
        log.warning(
            "%s: kept; it holds the bundle a stopped training was replacing (delete it if unwanted)", previous
        )
