"""`clsrun.trainer.train`: one entry point; each kind trains at its own defaults, set fields override only
themselves; the kind registry; the output folder; what a run shows (epoch lines, warnings, the plot)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from clsrun.runtime.bundle import Bundle, default_model_path
from clsrun.runtime.errors import InputError, UsageError
from clsrun.trainer import BertOptions, CharCNNOptions, DataOptions, TrainConfig, train
from clsrun.trainer.kinds import KINDS, kind_of
from clsrun.trainer.options import BERT_DEFAULTS, CHARCNN_DEFAULTS, FROZEN_DEFAULTS
from clsrun.trainer.reporting import EpochLog, EpochRecord, headline_metric, overfitting
from clsrun.trainer.run import UNFINISHED, prepare_out_dir

TINY = {"embed_dim": 8, "channels": (8, 8), "kernel_sizes": (3, 3)}


# ------------------------------------------------------------------------------------- kinds and defaults


def test_a_config_without_a_kind_cannot_be_built() -> None:
    with pytest.raises(TypeError, match="lr"):
        TrainConfig()  # type: ignore[call-arg]


def test_each_kind_gets_its_own_defaults_and_set_fields_override_only_themselves(
    tiny_bert_checkpoint: Path,
) -> None:
    assert TrainConfig.for_kind("charcnn").lr == CHARCNN_DEFAULTS["lr"] == 5e-3
    bert = TrainConfig.for_kind(str(tiny_bert_checkpoint), epochs=1)
    assert (bert.lr, bert.batch_size, bert.warmup, bert.epochs) == (1e-4, 16, 0.1, 1)
    assert TrainConfig.for_kind("minilm").epochs == BERT_DEFAULTS["epochs"]
    frozen = TrainConfig.for_kind("minilm", BertOptions(freeze_encoder=True))
    assert (frozen.lr, frozen.epochs) == (FROZEN_DEFAULTS["lr"], FROZEN_DEFAULTS["epochs"])


def test_registry_resolves_model_values_and_every_kind_has_complete_defaults(tmp_path: Path) -> None:
    assert kind_of("charcnn").name == "charcnn"
    assert kind_of("minilm").name == kind_of(str(tmp_path)).name == "bert"
    for kind in KINDS.values():
        TrainConfig(**kind.options().train_defaults()).validate()  # no field left without a value


def test_options_of_another_kind_name_the_flags_typed(tiny_bert_checkpoint: Path) -> None:
    with pytest.raises(UsageError, match=r"^--embed-dim and --vocab-size apply to charcnn models, not BERT"):
        kind_of(str(tiny_bert_checkpoint)).options_for(
            str(tiny_bert_checkpoint), {"embed_dim": 8, "vocab_size": 9}
        )
    with pytest.raises(UsageError, match="BertOptions is another kind's"):
        kind_of("charcnn").options_for("charcnn", BertOptions())
    options = kind_of(str(tiny_bert_checkpoint)).options_for(
        str(tiny_bert_checkpoint), BertOptions(pooling="mean")
    )
    assert isinstance(options, BertOptions) and options.model == str(tiny_bert_checkpoint)


# -------------------------------------------------------------------------------------------- train()


def test_train_from_python_at_the_kind_defaults(tiny_charcnn_data: Path, tmp_path: Path) -> None:
    result = train(
        tiny_charcnn_data,
        tmp_path / "b",
        model="charcnn",
        config={"epochs": 1, "max_length": 32, "logs": False, "quiet": True},
        options=CharCNNOptions(**TINY),
        data_options=DataOptions(val_split=0.25),
    )
    assert result.kind == "charcnn" and result.report is not None
    hyper = Bundle.load(result.bundle).spec.training["hyperparameters"]
    assert hyper["epochs"] == 1 and hyper["lr"] == 5e-3 and hyper["batch_size"] == 64
    assert hyper["charcnn"]["channels"] == [8, 8]


def test_bert_from_python_trains_at_bert_settings(
    tiny_bert_checkpoint: Path, tiny_bert_data: Path, tmp_path: Path
) -> None:
    """The bug this entry point removes: BERT trained from Python at the char-CNN's lr 5e-3."""
    result = train(
        tiny_bert_data,
        tmp_path / "b",
        model=str(tiny_bert_checkpoint),
        config={"epochs": 1, "max_length": 32, "quiet": True},
    )
    hyper = Bundle.load(result.bundle).spec.training["hyperparameters"]
    assert (hyper["lr"], hyper["batch_size"], hyper["warmup"], hyper["epochs"]) == (1e-4, 16, 0.1, 1)
    assert result.options == BertOptions(model=str(tiny_bert_checkpoint))


def test_the_default_kind_is_the_default_models(tiny_charcnn_data: Path, tmp_path: Path) -> None:
    result = train(
        tiny_charcnn_data, tmp_path / "b", config={"epochs": 1, "logs": False, "quiet": True}, baseline=False
    )
    assert result.kind == "ngram"
    assert Bundle.load(result.bundle).spec.kind == Bundle.load(default_model_path()).spec.kind


def test_wrong_column_creates_nothing(tiny_charcnn_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    with pytest.raises(InputError, match="no column 'review'"):
        train(tiny_charcnn_data, out, data_options=DataOptions(text_col="review"))
    assert not out.exists()


def test_out_dir_with_only_a_package_marker_is_not_empty(tmp_path: Path) -> None:
    """The default model is a plain data folder now: an ``__init__.py`` is a file like any other."""
    out = tmp_path / "b"
    out.mkdir()
    (out / "__init__.py").write_text("", encoding="utf-8")
    for force in (False, True):  # --force is not offered: it would not delete such a folder either
        with pytest.raises(
            UsageError, match="not a clsrun bundle; clsrun never deletes it, even with --force"
        ):
            prepare_out_dir(out, force=force)
    assert (out / "__init__.py").exists()


def test_force_replaces_a_bundle_never_a_folder_that_merely_holds_a_clsrun_json(
    tmp_path: Path, tiny_charcnn_bundle: Path
) -> None:
    settings = tmp_path / "settings"
    (settings / "sub").mkdir(parents=True)
    (settings / "clsrun.json").write_text('{"app": "settings"}', encoding="utf-8")  # not a bundle's
    (settings / "notes.txt").write_text("precious", encoding="utf-8")
    with pytest.raises(UsageError, match="not a clsrun bundle; clsrun never deletes it"):
        prepare_out_dir(settings, force=True)
    assert (settings / "notes.txt").exists() and (settings / "sub").is_dir()
    (tiny_charcnn_bundle / "train.csv").write_text("text,label\n", encoding="utf-8")  # data kept beside it
    (tiny_charcnn_bundle / "logs").mkdir(exist_ok=True)  # TensorBoard's: part of a bundle
    with pytest.raises(UsageError, match=r"holds train\.csv, which its bundle does not list; refusing"):
        prepare_out_dir(tiny_charcnn_bundle, force=True)
    assert (tiny_charcnn_bundle / "train.csv").exists() and (tiny_charcnn_bundle / "clsrun.json").exists()
    (tiny_charcnn_bundle / "train.csv").unlink()
    prepare_out_dir(tiny_charcnn_bundle, force=True)  # a bundle and what training wrote: replaced
    assert [p.name for p in tiny_charcnn_bundle.iterdir()] == [UNFINISHED]


def test_out_that_is_a_symbolic_link_is_refused_not_replaced(tiny_charcnn_data: Path, tmp_path: Path) -> None:
    """--force moved the link aside (and left it: the next run failed "unexpected OSError: Cannot call
    rmtree on a symbolic link"), and a run naming the link and one naming its target held different locks."""
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "current"
    link.symlink_to(real, target_is_directory=True)
    with pytest.raises(UsageError, match=r"current: is a symbolic link \(to .*real\); train writes a bundle"):
        train(tiny_charcnn_data, link, force=True, baseline=False)
    assert link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["current", "real"]


# ------------------------------------------------------------------------------------ what a run shows


def _rec(epoch: int, train_loss: float, val_loss: float) -> EpochRecord:
    return EpochRecord(epoch, train_loss, 0.5, val_loss, 0.5)


def test_a_rise_that_does_not_show_in_the_printed_digits_is_no_rise() -> None:
    assert overfitting(_rec(1, 0.9, 0.05241), _rec(2, 0.5, 0.05243)) is None  # both print 0.0524
    warning = overfitting(_rec(1, 0.9, 0.0524), _rec(4, 0.5, 0.0531))
    assert warning is not None and "validation loss rose (0.0524 -> 0.0531 since epoch 1)" in warning


def test_last_epoch_still_best_hints_at_more_epochs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="clsrun.trainer")
    epochs = EpochLog(epochs=2)
    epochs.add(_rec(1, 0.9, 0.7))
    epochs.add(_rec(2, 0.6, 0.5))
    assert epochs.finish() == 2
    assert "the last epoch was still the best: training longer (a higher --epochs) may help" in caplog.text
    caplog.clear()
    perfect = EpochLog(epochs=1)  # every validation row right already: nothing for more epochs to gain
    perfect.add(EpochRecord(1, 0.1, 1.0, 0.01, 1.0))
    assert perfect.finish() == 1
    assert "training longer" not in caplog.text


def test_a_run_that_summarises_warns_once_about_overfitting(caplog: pytest.LogCaptureFixture) -> None:
    """The frozen-encoder head reports at the end only: one warning, best epoch against the last."""
    caplog.set_level(logging.INFO, logger="clsrun.trainer")
    epochs = EpochLog(epochs=50, each_epoch=False)
    for epoch, (t, v) in enumerate([(0.9, 0.7), (0.6, 0.5), (0.5, 0.6), (0.4, 0.55)], start=1):
        epochs.add(_rec(epoch, t, v))
    assert epochs.finish() == 2
    assert epochs.overfit_epochs == [4] and "epoch 1/" not in caplog.text
    assert "epoch 4: validation loss rose (0.5000 -> 0.5500 since epoch 2)" in caplog.text
    assert "training longer" not in caplog.text


def test_char_cnn_says_how_many_texts_were_cut(
    tiny_charcnn_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clsrun.trainer")
    config = {"epochs": 1, "max_length": 8, "logs": False, "quiet": True}
    train(tiny_charcnn_data, tmp_path / "b", model="charcnn", config=config, options=TINY)
    assert "% of training texts cut to 8 characters (--max-length)" in caplog.text
    share = float(caplog.text.split("% of training texts cut")[0].rsplit(" ", 1)[-1])
    assert share > 50  # every tiny text is longer than 8 characters


def test_confusion_matrix_colour_bar_is_labelled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    from clsrun.runtime.metrics import report_from_indices
    from clsrun.trainer.report import write_confusion_png

    seen: list[str] = []
    monkeypatch.setattr(
        Figure, "savefig", lambda fig, *a, **k: seen.extend(ax.get_ylabel() for ax in fig.axes)
    )
    write_confusion_png(tmp_path / "c.png", report_from_indices([0, 1, 1], [0, 1, 0], ["neg", "pos"]))
    assert seen == ["true", "share of the true label's rows"]


def test_the_trainer_package_imports_without_torch() -> None:
    """``clsrun data fetch`` and the checks of ``clsrun train`` run before (or without) torch."""
    import subprocess
    import sys

    code = (
        "import sys, clsrun.trainer, clsrun.trainer.fetch, clsrun.trainer.kinds, clsrun.trainer.run\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'transformers'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("share", "given", "weights"),
    [
        (0.1, None, "auto"),
        (0.1, "none", "none"),
        (0.1, "auto", "auto"),
        (0.4, None, "none"),
        (0.4, "auto", "auto"),
    ],
)
def test_imbalanced_labels_weigh_the_loss_unless_class_weights_is_given(
    share: float, given: str | None, weights: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without --class-weights, labels where the commonest has 4x the rows of the rarest or more train with
    the class-weighted loss (the rare label is found, the run is judged by macro-F1); balanced ones do not."""
    from tests.conftest import write_labelled_csv

    rare = int(200 * share)
    texts = [f"bad thing number {i}" for i in range(rare)] + [
        f"good thing number {i}" for i in range(200 - rare)
    ]
    data = write_labelled_csv(tmp_path / "d.csv", texts, ["neg"] * rare + ["pos"] * (200 - rare))
    config = {"logs": False, "quiet": True, **({"class_weights": given} if given else {})}
    with caplog.at_level(logging.INFO, logger="clsrun"):
        result = train(
            data, tmp_path / "b", model="ngram", options={"fit": "logreg"}, config=config, baseline=False
        )
    assert result.config.class_weights == weights
    assert Bundle.load(tmp_path / "b").spec.training["hyperparameters"]["class_weights"] == weights
    said = (
        "labels are imbalanced ('neg' has 18 of the 180 training rows, 9.0x fewer than 'pos')" in caplog.text
    )
    assert said == (given is None and weights == "auto"), caplog.text
    assert ("macro_f1" if weights == "auto" else "accuracy") == headline_metric(result.config)


def test_none_for_a_setting_means_choose_for_me(tiny_charcnn_data: Path, tmp_path: Path) -> None:
    """config={"epochs": None} raised a bare TypeError ('>=' between NoneType and int)."""
    config = {"epochs": None, "max_length": None, "lr": None, "quiet": True, "logs": False}
    result = train(tiny_charcnn_data, tmp_path / "b", model="ngram", options={"fit": "logreg"}, config=config,
                   baseline=False)  # fmt: skip
    assert result.config.epochs == 10 and result.config.max_length == 20_000


# ------------------------------------------------------------------------------- a run that fails or dies


def _ngram_train(data: Path, out: Path, **kwargs: Any) -> Any:
    return train(
        data, out, model="ngram", options={"fit": "logreg"}, config={"logs": False, "quiet": True}, **kwargs
    )


def test_a_training_that_fails_leaves_nothing_that_blocks_the_next(
    tiny_charcnn_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clsrun.trainer.run as run_module

    def disk_full(*args: Any, **kwargs: Any) -> None:  # the bundle's files are written by then
        raise OSError(28, "No space left on device")

    out = tmp_path / "b"
    with monkeypatch.context() as m:
        m.setattr(run_module, "record", disk_full)
        with pytest.raises(OSError):
            _ngram_train(tiny_charcnn_data, out)
    assert not out.exists()  # this run created it: gone
    out.mkdir()
    with monkeypatch.context() as m:
        m.setattr(run_module, "record", disk_full)
        with pytest.raises(OSError):
            _ngram_train(tiny_charcnn_data, out)
    assert out.is_dir() and not any(out.iterdir())  # the user's empty folder stays, empty
    result = _ngram_train(tiny_charcnn_data, out)  # the same command, no --force needed
    assert Bundle.load(result.bundle).spec.kind == "ngram" and not (out / run_module.UNFINISHED).exists()


def test_a_killed_training_is_named_and_replaced_with_force_only(
    tiny_charcnn_data: Path, tmp_path: Path
) -> None:
    from clsrun.trainer.run import UNFINISHED

    out = tmp_path / "b"
    out.mkdir()
    (out / UNFINISHED).write_bytes(b"")  # what a killed run leaves: its mark, some files, no clsrun.json
    (out / "model.safetensors").write_bytes(b"half")
    with pytest.raises(UsageError, match=r"holds a bundle whose training did not finish.*use --force"):
        _ngram_train(tiny_charcnn_data, out)
    result = _ngram_train(tiny_charcnn_data, out, force=True)
    assert Bundle.load(result.bundle).spec.kind == "ngram"
    assert UNFINISHED not in Bundle.load(result.bundle).files  # never hashed into the bundle


def test_a_library_error_that_carries_an_errno_is_the_os_error_it_is(tmp_path: Path) -> None:
    from clsrun.runtime.errors import file_errors_of, storage_error

    target = tmp_path / "model.safetensors"
    with pytest.raises(OSError) as e, file_errors_of(target):
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
    typed = storage_error(e.value)
    assert (
        typed is not None and str(typed) == f"{target}: no space left on the device; free some and run again"
    )
    with pytest.raises(ValueError, match="not about files"), file_errors_of(target):
        raise ValueError("not about files")


def test_an_out_folder_that_cannot_be_made_is_a_usage_error(tiny_charcnn_data: Path, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x", encoding="utf-8")
    with pytest.raises(UsageError, match=r"--out .*: its folder cannot be made: .*a\.csv is not a folder"):
        _ngram_train(tiny_charcnn_data, tmp_path / "a.csv" / "bundle")


def test_a_failed_or_stopped_retraining_with_force_gives_the_old_bundle_back(
    tiny_charcnn_bundle: Path, tiny_charcnn_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clsrun.trainer import train_charcnn
    from clsrun.trainer.run import previous_of

    spec = (tiny_charcnn_bundle / "clsrun.json").read_bytes()

    def stopped(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C (or SIGTERM, raised the same way) half way through the epochs

    monkeypatch.setattr(train_charcnn, "train_charcnn", stopped)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_charcnn_data, tiny_charcnn_bundle, model="charcnn", force=True, baseline=False)
    assert (tiny_charcnn_bundle / "clsrun.json").read_bytes() == spec  # the old bundle, whole
    Bundle.load(tiny_charcnn_bundle).verify()
    assert not previous_of(tiny_charcnn_bundle).exists()
    monkeypatch.undo()
    train(tiny_charcnn_data, tiny_charcnn_bundle, model="charcnn", force=True, baseline=False,
          config={"epochs": 1, "quiet": True, "logs": False})  # fmt: skip
    assert (tiny_charcnn_bundle / "clsrun.json").read_bytes() != spec  # replaced once the new one is complete
    assert not previous_of(tiny_charcnn_bundle).exists()


def test_a_bundle_a_killed_training_moved_aside_is_never_deleted_by_a_later_one(
    tiny_charcnn_bundle: Path, tiny_charcnn_data: Path, tmp_path: Path
) -> None:
    """After ``train --force`` was killed outright, predict says "the bundle it was replacing is in
    .B.previous.tmp: move it back to use it". A later training into B without --force (the unfinished
    folder removed by hand) deleted it unannounced when it finished; a failing one moved it into B."""
    from clsrun.trainer.run import previous_of

    out = tmp_path / "B"
    shutil.copytree(tiny_charcnn_bundle, previous_of(out))  # what SIGKILL during train --force leaves
    spec = (previous_of(out) / "clsrun.json").read_bytes()
    train(tiny_charcnn_data, out, model="charcnn", baseline=False,
          config={"epochs": 1, "quiet": True, "logs": False})  # fmt: skip
    assert (previous_of(out) / "clsrun.json").read_bytes() == spec
    Bundle.load(out).verify()


def test_force_replaces_a_bundle_beside_the_staging_folder_a_killed_export_left(
    tiny_charcnn_bundle: Path,
) -> None:
    """``.tmp-export-*`` is clsrun's own (the next export removes it): train --force refused the bundle,
    "holds .tmp-export-..., which its bundle does not list"."""
    (tiny_charcnn_bundle / ".tmp-export-abc123").mkdir()
    (tiny_charcnn_bundle / ".tmp-export-abc123" / "model.onnx").write_bytes(b"half")
    prepare_out_dir(tiny_charcnn_bundle, force=True)
    assert [p.name for p in tiny_charcnn_bundle.iterdir()] == [UNFINISHED]


def _signal_inside(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
    """``module.name`` sends this process SIGTERM once, then does what it did (a signal at that very step)."""
    import os
    import signal

    real, sent = getattr(module, name), []

    def with_signal(*args: Any, **kwargs: Any) -> Any:
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, with_signal)


def test_a_stop_while_out_is_prepared_still_gives_the_old_bundle_back(
    tiny_charcnn_bundle: Path, tiny_charcnn_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM just after ``--force`` moved the old bundle aside, before training began: it was raised
    there, outside the clean-up, and left the bundle in ``.NAME.previous.tmp`` and ``--out`` with only the
    unfinished mark (predict: "not a clsrun model bundle")."""
    from clsrun.runtime import stopping
    from clsrun.trainer import run as run_module

    spec = (tiny_charcnn_bundle / "clsrun.json").read_bytes()
    _signal_inside(monkeypatch, run_module, "make_folder")  # after the rename, before the mark
    with pytest.raises(stopping.Stop), stopping.raising():
        train(tiny_charcnn_data, tiny_charcnn_bundle, model="charcnn", force=True, baseline=False)
    assert (tiny_charcnn_bundle / "clsrun.json").read_bytes() == spec
    Bundle.load(tiny_charcnn_bundle).verify()
    assert not run_module.previous_of(tiny_charcnn_bundle).exists()


def test_a_stop_once_the_new_bundle_is_in_place_lets_the_run_complete(
    tiny_charcnn_bundle: Path, tiny_charcnn_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while the replaced bundle was deleted ended the run "interrupted" (exit 143) with the new
    bundle in place and the old one gone; past that point the run completes."""
    from clsrun.runtime import stopping
    from clsrun.trainer import run as run_module

    spec = (tiny_charcnn_bundle / "clsrun.json").read_bytes()
    _signal_inside(monkeypatch, run_module, "finish_out_dir")
    with stopping.raising() as request:
        result = train(tiny_charcnn_data, tiny_charcnn_bundle, model="charcnn", force=True, baseline=False,
                       config={"epochs": 1, "quiet": True, "logs": False})  # fmt: skip
        assert request.is_set()  # noted, not raised
    assert (tiny_charcnn_bundle / "clsrun.json").read_bytes() != spec
    Bundle.load(result.bundle).verify()
    assert not run_module.previous_of(tiny_charcnn_bundle).exists()
    assert not (tiny_charcnn_bundle / UNFINISHED).exists()


def test_a_device_that_is_not_here_is_said_before_the_data_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--device cuda without a GPU was refused only after reading and featurising the data (17 s)."""
    import torch

    from clsrun.runtime.errors import UsageError
    from clsrun.trainer import train

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="--device cuda"):  # not the missing file: that is read later
        train(tmp_path / "not-read.csv", tmp_path / "b", model="ngram", config={"device": "cuda"})
