"""``clsrun export`` on tiny real bundles of both kinds: files, report, fusions, gate, --force, the CLI."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from typer.testing import CliRunner

import clsrun.export.quantize as quantize_module
from clsrun.export import ExportOptions, Int8Options, export_bundle
from clsrun.runtime.bundle import Bundle, write_spec
from clsrun.runtime.cli import app
from clsrun.runtime.errors import AccuracyGateError, BundleError, ExportError, InputError, UsageError

# Happy-path tests allow any accuracy drop: their tiny validation sets (12-15 rows) make one flipped row
# worth 7-8 points, which depends on the CPU's int8 kernels. Refusal is tested with deliberate errors.
ANY_DROP = 100.0
REPORT_KEYS = {
    "file",
    "passed",
    "accuracy",
    "accuracy_drop_pts",
    "label_agreement",
    "max_abs_logit_diff",
    "reason",
}


@pytest.fixture
def bert_bundle(tiny_bert_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the shared tiny BERT bundle (export adds files to it)."""
    return Path(shutil.copytree(tiny_bert_bundle, tmp_path / "bert_bundle"))


def _permute_outputs(path: Path) -> None:
    """Make an ONNX classifier wrong on purpose: its logits come out in reversed label order."""
    model = onnx.load(str(path))
    graph = model.graph
    producer = next(n for n in graph.node if "logits" in n.output)
    producer.output[list(producer.output).index("logits")] = "logits_in_label_order"
    n_labels = graph.output[0].type.tensor_type.shape.dim[1].dim_value
    graph.initializer.append(numpy_helper.from_array(np.arange(n_labels)[::-1].astype(np.int64), "reversed"))
    graph.node.append(helper.make_node("Gather", ["logits_in_label_order", "reversed"], ["logits"], axis=1))
    onnx.save(model, str(path))


@pytest.fixture
def wrong_int8(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every dynamic int8 model the exporter builds has its label order reversed."""
    real = quantize_module.quantize_dynamic_int8

    def broken(src: Path, dst: Path, options: Int8Options, reduce_range: bool) -> None:
        real(src, dst, options, reduce_range)
        _permute_outputs(dst)

    monkeypatch.setattr(quantize_module, "quantize_dynamic_int8", broken)


def test_charcnn_export_writes_gated_variants_inside_the_bundle(tiny_charcnn_bundle: Path) -> None:
    before = {p.name for p in tiny_charcnn_bundle.parent.iterdir()}
    report = export_bundle(tiny_charcnn_bundle, max_accuracy_drop=ANY_DROP)
    assert report.passed == ["fp32", "int8"]
    data = json.loads((tiny_charcnn_bundle / "onnx/export_report.json").read_text())
    assert data["reference"]["backend"] == "torch" and data["reference"]["rows"] > 0
    for name in ("fp32", "int8"):
        assert data["variants"][name].keys() >= REPORT_KEYS
    assert data["variants"]["fp32"]["max_abs_logit_diff"] < 1e-4
    assert data["variants"]["fp32"]["label_agreement"] == 1.0
    assert data["variants"]["int8"]["quantization"]["static"] is True  # tried for the char-CNN
    bundle = Bundle.load(tiny_charcnn_bundle)  # hashes verified, the new files included
    assert {"onnx/model.onnx", "onnx/model.int8.onnx", "onnx/export_report.json"} <= set(bundle.files)
    assert not any(p.name.startswith(".tmp") for p in tiny_charcnn_bundle.rglob("*"))
    assert {p.name for p in tiny_charcnn_bundle.parent.iterdir()} == before  # nothing written beside it


def test_bert_export_fuses_attention_and_builds_all_precisions(bert_bundle: Path) -> None:
    report = export_bundle(bert_bundle, precisions=("fp32", "int8", "fp16"), max_accuracy_drop=ANY_DROP)
    fusions = report.data["fusions"]
    layers = json.loads((bert_bundle / "config.json").read_text())["num_hidden_layers"]
    assert fusions["fp32"]["Attention"] == layers
    assert fusions["fp32"]["EmbedLayerNormalization"] == 1
    assert fusions["int8"]["QAttention"] == layers
    assert report.data["variants"]["int8"]["quantization"]["method"] == "dynamic"
    # int8 is the CPU variant: its layer norms are plain operators (export/layernorm.py), fp32 keeps them fused
    assert "SkipLayerNormalization" not in fusions["int8"] and fusions["fp32"]["SkipLayerNormalization"] > 0
    assert report.data["variants"]["int8"]["quantization"]["plain_layernorm_nodes"] > 0
    assert report.variants["fp32"].max_abs_logit_diff < 1e-3 and report.variants["fp32"].gate_passed
    assert report.variants["fp16"].label_agreement >= 0.9
    assert set(report.passed) == {"fp32", "int8", "fp16"}
    assert (bert_bundle / "onnx/model.fp16.onnx").is_file()
    Bundle.load(bert_bundle)


def test_gate_refuses_a_wrong_variant_and_removes_it(
    tiny_charcnn_bundle: Path, tmp_path: Path, wrong_int8: None, self_labelled: Callable[[Path, Path], Path]
) -> None:
    eval_data = self_labelled(tiny_charcnn_bundle, tmp_path / "eval.jsonl")
    options = ExportOptions(eval_data=eval_data, int8=Int8Options(static=False))
    with pytest.raises(
        AccuracyGateError, match=r"refused 1 variant\(s\).*int8 \(onnx/model.int8.onnx\): accuracy drops"
    ):
        export_bundle(tiny_charcnn_bundle, options)
    assert not (tiny_charcnn_bundle / "onnx/model.int8.onnx").exists()
    assert (tiny_charcnn_bundle / "onnx/model.onnx").is_file()
    report = Bundle.load(tiny_charcnn_bundle).export_report()
    assert report is not None
    assert report["variants"]["int8"]["passed"] is False and report["variants"]["int8"]["kept"] is False
    assert report["variants"]["int8"]["label_agreement"] < 1.0
    assert report["variants"]["fp32"]["passed"] is True


def test_keep_refused_keeps_the_refused_variant_and_says_so(
    tiny_charcnn_bundle: Path,
    tmp_path: Path,
    wrong_int8: None,
    self_labelled: Callable[[Path, Path], Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    eval_data = self_labelled(tiny_charcnn_bundle, tmp_path / "eval.jsonl")
    with caplog.at_level("WARNING", logger="clsrun"):
        report = export_bundle(
            tiny_charcnn_bundle, eval_data=eval_data, keep_refused=True, int8=Int8Options(static=False)
        )
    assert "kept what the accuracy gate refused (--keep-refused): int8 (accuracy drops" in caplog.text
    int8 = report.data["variants"]["int8"]
    assert int8["forced"] is True and int8["gate_passed"] is False and int8["passed"] is True
    assert "accuracy drops" in int8["reason"]
    assert (tiny_charcnn_bundle / "onnx/model.int8.onnx").is_file()
    # Kept to be asked for by name: --precision auto never runs it because it measured faster.
    from clsrun.runtime.variant import Variant, choose

    bundle = Bundle.load(tiny_charcnn_bundle)
    assert choose(bundle, Variant(backend="onnx")).precision == "fp32"
    asked = choose(bundle, Variant(backend="onnx", precision="int8"))
    assert asked.file == "onnx/model.int8.onnx"
    assert asked.reason.startswith("refused by the export gate and kept by --keep-refused")  # not "passed"
    # the speeds line names what auto runs, not the kept int8 however fast it measured
    assert (
        "--backend auto runs onnx-fp32 on this CPU (it passes over what --keep-refused kept)"
        in report.to_text()
    )
    # fp32 unlisted (a damaged file an export --force then failed on): the kept int8 is all that is left
    from clsrun.export.exporter import _forget_broken_variants

    with (tiny_charcnn_bundle / "onnx/model.onnx").open("ab") as f:
        f.write(b"\n")
    _forget_broken_variants(tiny_charcnn_bundle)
    caplog.clear()
    with caplog.at_level("WARNING", logger="clsrun"):
        left = choose(Bundle.load(tiny_charcnn_bundle), Variant(backend="onnx"))
    assert left.precision == "int8" and "run because no variant the gate passed is left" in left.reason
    assert "no variant the gate passed is left" in caplog.text  # not "asked for": nothing asked


def test_force_exports_again_under_the_gate(
    tiny_charcnn_bundle: Path, tmp_path: Path, wrong_int8: None, self_labelled: Callable[[Path, Path], Path]
) -> None:
    """--force meant both "export again" and "keep what the gate refuses": re-exporting under a new
    --max-accuracy-drop, as the refusal advised, could only be done with the gate switched off."""
    eval_data = self_labelled(tiny_charcnn_bundle, tmp_path / "eval.jsonl")
    export_bundle(tiny_charcnn_bundle, precisions=("fp32",))
    options = ExportOptions(eval_data=eval_data, force=True, int8=Int8Options(static=False))
    with pytest.raises(AccuracyGateError, match=r"--max-accuracy-drop changes the allowance") as refused:
        export_bundle(tiny_charcnn_bundle, options)
    assert refused.value.exit_code == 4  # done: the passing variants are in place
    assert not (tiny_charcnn_bundle / "onnx/model.int8.onnx").exists()
    assert Bundle.load(tiny_charcnn_bundle).export_report()["variants"]["int8"]["forced"] is False  # type: ignore[index]


def test_reexport_refused_without_force(tiny_charcnn_bundle: Path) -> None:
    export_bundle(tiny_charcnn_bundle, precisions=("fp32",))
    with pytest.raises(ExportError, match=r"already exported.*--force"):
        export_bundle(tiny_charcnn_bundle, precisions=("fp32",))
    export_bundle(tiny_charcnn_bundle, precisions=("fp32", "int8"), force=True, max_accuracy_drop=ANY_DROP)
    assert Bundle.load(tiny_charcnn_bundle).has("onnx/model.int8.onnx")


def test_an_export_stopped_while_replacing_its_variants_is_repaired_by_export_force(
    tiny_charcnn_bundle: Path,
) -> None:
    """A signal between removing the old variant files and installing the new ones left clsrun.json
    listing files that are gone: predict refused the bundle, and so did export --force, for good."""
    export_bundle(tiny_charcnn_bundle, precisions=("fp32", "int8"), max_accuracy_drop=ANY_DROP)
    (tiny_charcnn_bundle / "onnx/model.int8.onnx").unlink()  # what the stopped export left
    with pytest.raises(BundleError, match=r"listed in clsrun\.json but missing .*export .* --force"):
        Bundle.load(tiny_charcnn_bundle)
    export_bundle(tiny_charcnn_bundle, precisions=("fp32", "int8"), force=True, max_accuracy_drop=ANY_DROP)
    bundle = Bundle.load(tiny_charcnn_bundle)
    assert bundle.has("onnx/model.int8.onnx") and bundle.has("onnx/model.onnx")
    bundle.verify()  # every listed file there and matching


def test_variant_files_damaged_after_export_are_rebuilt_by_export_force(tiny_charcnn_bundle: Path) -> None:
    """A changed onnx/ file (a byte appended, the report rewritten) failed predict and export --force alike,
    exit 3, with no way out named: --force now builds the variants again, and the refusal names it."""
    export_bundle(tiny_charcnn_bundle, precisions=("fp32",))
    with (tiny_charcnn_bundle / "onnx/model.onnx").open("ab") as f:
        f.write(b"\n")
    (tiny_charcnn_bundle / "onnx/export_report.json").write_text("{}", encoding="utf-8")
    with pytest.raises(BundleError, match=r"sha256 mismatch.*`clsrun export .* --force` builds the variants"):
        Bundle.load(tiny_charcnn_bundle).verify()
    export_bundle(tiny_charcnn_bundle, precisions=("fp32",), force=True)
    Bundle.load(tiny_charcnn_bundle).verify()  # every listed file there and matching


def test_an_export_force_that_fails_leaves_the_intact_variants_listed(
    tiny_charcnn_bundle: Path, tmp_path: Path
) -> None:
    """--force unlisted every variant when one was damaged, before the gate data was read: a bad --eval-data
    then left a bundle whose intact fp32 file predict no longer ran ("never exported", eager PyTorch)."""
    from clsrun.runtime.variant import Variant, choose

    export_bundle(tiny_charcnn_bundle, precisions=("fp32", "int8"))
    with (tiny_charcnn_bundle / "onnx/model.int8.onnx").open("ab") as f:
        f.write(b"\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nsome text,no-such-label\n", encoding="utf-8")
    with pytest.raises(InputError):
        export_bundle(tiny_charcnn_bundle, eval_data=bad, force=True)
    bundle = Bundle.load(tiny_charcnn_bundle)
    assert "onnx/model.onnx" in bundle.files and "onnx/model.int8.onnx" not in bundle.files
    assert choose(bundle, Variant(backend="onnx")).file == "onnx/model.onnx"


def test_a_gate_too_small_or_at_chance_is_said(
    tiny_charcnn_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One gate row, or another task's labels (eager at 0.0000), passed every variant without a word."""
    with caplog.at_level("WARNING", logger="clsrun"):
        export_bundle(tiny_charcnn_bundle, precisions=("fp32",), max_rows=1)
    assert "judged every variant on 1 row(s), too few" in caplog.text
    from clsrun.export.exporter import _warn_if_weak

    caplog.clear()
    bundle = Bundle.load(tiny_charcnn_bundle)
    with caplog.at_level("WARNING", logger="clsrun"):
        _warn_if_weak(bundle, 400, 0.0)  # every label rotated: eager PyTorch scores nothing
    assert "scores 0.0000 on the gate rows, no better than chance" in caplog.text
    assert "too few" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="clsrun"):
        _warn_if_weak(bundle, 400, 0.9)
    assert caplog.text == ""


def test_files_of_a_first_export_stopped_before_recording_them_need_no_force(
    tiny_charcnn_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A first export stopped after installing its files but before clsrun.json listed them: those files are
    never used (predict loads listed files only), so the next export replaces them and says so, where it
    had said "already exported" and asked for --force."""
    (tiny_charcnn_bundle / "onnx").mkdir()
    (tiny_charcnn_bundle / "onnx/model.onnx").write_bytes(b"half an export")
    export_bundle(tiny_charcnn_bundle, precisions=("fp32",))
    assert "replacing export files that no finished export recorded (onnx/model.onnx)" in caplog.text
    Bundle.load(tiny_charcnn_bundle).verify()  # the new file, listed and matching its hash


def test_eval_data_with_foreign_labels_refused(tiny_charcnn_bundle: Path, tmp_path: Path) -> None:
    data = tmp_path / "eval.csv"
    data.write_text("label,text\nspam,hello\n", encoding="utf-8")
    with pytest.raises(InputError, match="'spam' are not labels of this model"):
        export_bundle(tiny_charcnn_bundle, eval_data=data)
    assert not (tiny_charcnn_bundle / "onnx").exists()


def test_cli_exports_then_refuses_to_overwrite(tiny_charcnn_bundle: Path) -> None:
    runner = CliRunner()
    args = ["export", str(tiny_charcnn_bundle), "--precision", "fp32,int8", "--max-accuracy-drop", "100"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "fp32  passed" in first.output and "int8  passed" in first.output
    second = runner.invoke(app, ["export", str(tiny_charcnn_bundle)])
    assert second.exit_code == 2  # bad usage, as every refusal of what the user asked for
    assert "already exported" in second.output
    quiet = runner.invoke(app, [*args, "--force", "-q"])  # a nightly job's export: no report, same files
    assert quiet.exit_code == 0 and "passed" not in quiet.output
    assert (tiny_charcnn_bundle / "onnx" / "model.int8.onnx").is_file()


def test_cli_gate_failure_exits_4_and_keep_refused_keeps_it(
    tiny_charcnn_bundle: Path, tmp_path: Path, wrong_int8: None, self_labelled: Callable[[Path, Path], Path]
) -> None:
    eval_data = self_labelled(tiny_charcnn_bundle, tmp_path / "eval.jsonl")
    args = ["export", str(tiny_charcnn_bundle), "--eval-data", str(eval_data), "--no-static-int8"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 4  # done, but not all of it passed (1 is a crash to a scheduler)
    assert "accuracy gate refused 1 variant(s)" in result.output
    kept = CliRunner().invoke(app, [*args, "--force", "--keep-refused"])
    assert kept.exit_code == 0, kept.output
    assert (tiny_charcnn_bundle / "onnx/model.int8.onnx").is_file()


def test_cli_rejects_unknown_precision(tiny_charcnn_bundle: Path) -> None:
    result = CliRunner().invoke(app, ["export", str(tiny_charcnn_bundle), "--precision", "fp32,int4"])
    assert result.exit_code == 2
    assert "--precision" in result.output


def test_one_writer_of_a_bundle_and_a_killed_exports_staging_is_never_hashed(
    exported_ngram_bundle: Path, tmp_path: Path
) -> None:
    from clsrun.runtime.errors import OutputLockedError
    from clsrun.runtime.outlock import OutputLock
    from clsrun.trainer import train

    bundle = Path(shutil.copytree(exported_ngram_bundle, tmp_path / "b"))
    with OutputLock.acquire(bundle, role="bundle"):  # another export (or a training) of it is running
        with pytest.raises(OutputLockedError, match=r"bundle .*b: another run is writing it"):
            export_bundle(bundle, force=True)
        with pytest.raises(OutputLockedError, match="another run is writing it"):
            train(tmp_path / "unused.csv", bundle, force=True)
    stale = bundle / ".tmp-export-k1ll3d"  # what a kill -9 of an export leaves
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half a file")
    export_bundle(bundle, force=True, max_rows=64)
    assert not stale.exists()
    listed = json.loads((bundle / "clsrun.json").read_text(encoding="utf-8"))["files"]
    assert not [name for name in listed if name.startswith(".tmp-export-")]
    stale.mkdir()  # one present while the spec is written (a killed run's, or a second export's) is skipped
    (stale / "model.onnx").write_bytes(b"half a file")
    write_spec(bundle, Bundle.load(bundle).spec)
    listed = json.loads((bundle / "clsrun.json").read_text(encoding="utf-8"))["files"]
    assert not [name for name in listed if name.startswith(".tmp-export-")]
    shutil.rmtree(stale)
    Bundle.load(bundle)  # still whole once it is gone


def test_an_export_says_when_the_bundle_misses_its_own_recorded_accuracy(
    exported_ngram_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = Path(shutil.copytree(exported_ngram_bundle, tmp_path / "b"))
    export_bundle(bundle, force=True)
    assert "may have been edited" not in caplog.text  # the model reproduces what training recorded
    spec_file = bundle / "clsrun.json"
    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    spec["labels"] = spec["labels"][::-1]  # by hand: clsrun.json holds the hashes, nothing hashes it
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    with contextlib.suppress(AccuracyGateError):
        export_bundle(bundle, force=True)
    assert "may have been edited (the labels in clsrun.json reordered or renamed?)" in caplog.text


def test_gate_rows_from_other_columns_and_a_row_cap_spread_over_the_file(
    tiny_charcnn_bundle: Path, tmp_path: Path
) -> None:
    """``--eval-data`` with columns ``y,review`` was refused with advice (--text-col) export did not take;
    ``--max-rows`` took the first rows, so a file sorted by label gated on one class."""
    import csv

    from clsrun.export.gate import load_eval_set

    words = {"neg": ["差", "太差", "bad"], "pos": ["好", "很好", "good"]}
    rows = [(label, f"这个房间{words[label][i % 3]} {i}") for label in ("neg", "pos") for i in range(40)]
    data = tmp_path / "sorted.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("y", "review"), *rows])
    bundle = Bundle.load(tiny_charcnn_bundle)
    capped = load_eval_set(bundle, data, max_rows=20, columns=("review", "y"))
    assert capped.rows == 20 and set(capped.labels.tolist()) == {0, 1}  # both classes, not the first 20
    assert load_eval_set(bundle, data, max_rows=20, columns=("review", "y")).texts == capped.texts  # seeded
    result = CliRunner().invoke(
        app,
        ["export", str(tiny_charcnn_bundle), "--eval-data", str(data), "--text-col", "review", "--label-col", "y",
         "--precision", "fp32", "--max-rows", "40", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    refused = CliRunner().invoke(app, ["export", str(tiny_charcnn_bundle), "--text-col", "review", "--force"])
    assert refused.exit_code == 2 and "give it too" in refused.output


def test_export_without_torch_is_one_line_naming_the_extra(
    tiny_charcnn_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scoring-only install: export said "unexpected ModuleNotFoundError: No module named 'torch'", exit 1."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    result = CliRunner().invoke(app, ["export", str(tiny_charcnn_bundle)])
    assert (
        result.exit_code == 2
        and "this needs the 'torch' package" in result.output
        and "[train]" in result.output
    )
    assert not (tiny_charcnn_bundle / "onnx").exists()


def test_export_lists_only_its_own_files_never_what_a_user_keeps_in_the_bundle(
    tiny_charcnn_bundle: Path,
) -> None:
    """Export rehashed the whole folder: a file kept in the bundle (the training data, a predict output) was
    listed in clsrun.json, and ``train --force`` then deleted it as the bundle's own."""
    from clsrun.trainer.run import prepare_out_dir

    (tiny_charcnn_bundle / "my_data.csv").write_text("text,label\n", encoding="utf-8")
    before = json.loads((tiny_charcnn_bundle / "clsrun.json").read_text(encoding="utf-8"))["files"]
    export_bundle(tiny_charcnn_bundle, precisions=("fp32",))
    after = json.loads((tiny_charcnn_bundle / "clsrun.json").read_text(encoding="utf-8"))["files"]
    assert "my_data.csv" not in after
    assert {k: v for k, v in after.items() if k in before} == before  # the training's hashes, as recorded
    assert set(after) - set(before) == {"onnx/model.onnx", "onnx/export_report.json"}
    with pytest.raises(UsageError, match=r"holds my_data\.csv, which its bundle does not list"):
        prepare_out_dir(tiny_charcnn_bundle, force=True)
    assert (tiny_charcnn_bundle / "my_data.csv").is_file()


def test_a_stop_while_the_variants_are_replaced_lands_once_the_bundle_lists_them(
    tiny_charcnn_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM between removing the old variants and listing the new ones left clsrun.json naming files
    that were gone: predict refused the bundle until export --force ran again."""
    import os
    import signal

    from clsrun.export import exporter
    from clsrun.runtime import stopping

    real = exporter._install

    def install_with_a_signal(*args: Any, **kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        real(*args, **kwargs)

    monkeypatch.setattr(exporter, "_install", install_with_a_signal)
    with stopping.raising() as request:
        export_bundle(tiny_charcnn_bundle, precisions=("fp32", "int8"), max_accuracy_drop=ANY_DROP)
        assert request.is_set()  # noted, not raised: the export completed
    Bundle.load(tiny_charcnn_bundle).verify()
    assert Bundle.load(tiny_charcnn_bundle).has("onnx/model.int8.onnx")


def test_a_re_export_says_which_passed_variants_its_precision_list_leaves_out(
    tiny_charcnn_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``--force --precision fp32`` removed int8 without a word; ``--precision int8`` then failed."""
    export_bundle(tiny_charcnn_bundle, precisions=("fp32", "int8"), max_accuracy_drop=ANY_DROP)
    with caplog.at_level("WARNING"):
        export_bundle(tiny_charcnn_bundle, precisions=("fp32",), force=True)
    assert "int8, exported before, is not in --precision fp32 and will be removed" in caplog.text
    assert not Bundle.load(tiny_charcnn_bundle).has("onnx/model.int8.onnx")
