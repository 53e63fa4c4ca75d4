"""The OpenVINO runner and ``--backend auto``'s choice by measured speed, on toy bundles (no torch).

The toy char-CNN graph sums embeddings (padding id 0 has a zero row), so its logits do not depend on
padding: the OpenVINO variant, padded to a multiple of 8, must give exactly onnxruntime's scores.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import pytest

from clsrun.runtime import speeds
from clsrun.runtime.batching import BatchOptions
from clsrun.runtime.bundle import Bundle, BundleSpec, write_spec
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.errors import BundleError, DependencyError, UsageError
from clsrun.runtime.plugins import runner_plugin
from clsrun.runtime.variant import Variant, choose

TEXTS = ["g" * n + "b" * (n % 3) + "好x" * (n % 5) for n in range(1, 40)] + ["bbb差", "好好", "y"]


def _update(root: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """Change the toy bundle's export report with ``change`` and rehash the bundle."""
    path = root / "onnx" / "export_report.json"
    report = json.loads(path.read_text(encoding="utf-8"))
    change(report)
    path.write_text(json.dumps(report), encoding="utf-8")
    spec = json.loads((root / "clsrun.json").read_text(encoding="utf-8"))
    write_spec(root, BundleSpec.from_json(spec, root))
    return root


def add_openvino(root: Path, passed: bool = True) -> Path:
    """Convert the toy bundle's fp32 ONNX file to OpenVINO IR as variant ``ov-fp32``."""
    (root / "openvino").mkdir()
    ov.save_model(
        ov.convert_model(str(root / "onnx/model.onnx")),
        str(root / "openvino/model.xml"),
        compress_to_fp16=False,
    )

    def add(report: dict[str, Any]) -> None:
        report["variants"]["ov-fp32"] = {"file": "openvino/model.xml", "passed": passed, "accuracy": 1.0}

    return _update(root, add)


@pytest.fixture
def ov_bundle(make_bundle: Callable[..., Path]) -> Path:
    return add_openvino(make_bundle("ov"))


def test_openvino_gives_onnxruntime_scores_in_input_order_under_several_streams(ov_bundle: Path) -> None:
    small = BatchOptions(batch_tokens=24)  # many small batches of different widths, run 3 at a time
    ort = Classifier.load(ov_bundle, Variant(backend="onnx", precision="fp32", threads=1), small)
    ovc = Classifier.load(ov_bundle, Variant(backend="openvino", threads=3, streams=3), small)
    assert ovc.describe()["backend"] == "openvino" and ovc.describe()["file"] == "openvino/model.xml"
    assert ovc.streams == 3 and ovc.runner.providers[0].startswith("openvino-")
    expected, got = ort.predict(TEXTS), ovc.predict(TEXTS)
    assert got.labels == expected.labels
    np.testing.assert_allclose(got.probs, expected.probs, rtol=1e-5, atol=1e-6)


def test_openvino_batches_are_planned_on_the_widths_it_pads_to(ov_bundle: Path) -> None:
    ovc = Classifier.load(ov_bundle, Variant(backend="openvino", threads=1), BatchOptions(batch_tokens=64))
    ort = Classifier.load(ov_bundle, Variant(backend="onnx", precision="fp32", threads=1))
    assert ovc.batching.width_multiple == ovc.runner.width_multiple > 1
    assert ort.batching.width_multiple == 1
    tokens = ovc.encoder.tokenize(TEXTS)
    for batch in ovc.batching.plan(tokens.lengths):
        width = ovc.inputs(tokens, batch)["input_ids"].shape[1]
        padded = -(-width // ovc.runner.width_multiple) * ovc.runner.width_multiple
        assert padded * len(batch) <= 64 or len(batch) == 1


def test_openvino_files_are_opened_only_when_listed_and_unchanged(ov_bundle: Path) -> None:
    (ov_bundle / "openvino/model.bin").write_bytes(b"not the weights")
    with pytest.raises(BundleError, match="sha256 mismatch"):
        Bundle.load(ov_bundle)


def test_openvino_without_the_extra_is_a_clean_error(
    ov_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    monkeypatch.delitem(sys.modules, "clsrun.runtime.ov_runner", raising=False)
    with pytest.raises(DependencyError, match=r"pip install '\.\[openvino\]'"):
        runner_plugin("openvino")
    with pytest.raises(DependencyError, match=r"--backend openvino needs the 'openvino' package"):
        choose(Bundle.load(ov_bundle), Variant(backend="openvino"))
    picked = choose(Bundle.load(ov_bundle))  # auto leaves OpenVINO out and runs an ONNX variant
    assert picked.backend == "onnx"


def _speeds(rates: dict[str, float], cpu: str | None = None) -> Callable[[dict[str, Any]], None]:
    def add(report: dict[str, Any]) -> None:
        report["speeds"] = {"cpu": cpu or speeds.cpu_key(), "rows": 9, "rounds": 3, "rows_per_s": rates}

    return add


def test_auto_runs_the_variant_measured_fastest_at_export(ov_bundle: Path) -> None:
    fast_ov = {"onnx-int8": 500.0, "onnx-fp32": 300.0, "openvino-fp32": 700.0}
    picked = choose(Bundle.load(_update(ov_bundle, _speeds(fast_ov))))
    assert (picked.backend, picked.precision, picked.file) == ("openvino", "fp32", "openvino/model.xml")
    assert "measured at export on this CPU" in picked.reason and "openvino-fp32 700" in picked.reason
    fast_int8 = {"onnx-int8": 900.0, "onnx-fp32": 300.0, "openvino-fp32": 700.0}
    picked = choose(Bundle.load(_update(ov_bundle, _speeds(fast_int8))))
    assert (picked.backend, picked.precision) == ("onnx", "int8")
    # --backend narrows the choice to that backend's variants; --precision to that precision's
    assert choose(Bundle.load(ov_bundle), Variant(precision="fp32")).backend == "openvino"
    assert choose(Bundle.load(ov_bundle), Variant(backend="onnx")).precision == "int8"


def test_auto_loads_the_openvino_runner_only_when_openvino_could_win(
    ov_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clsrun.runtime import variant as variant_module

    loads: list[bool] = []
    runs = {"answer": True}
    monkeypatch.setattr(variant_module, "_openvino_runs", lambda: loads.append(True) or runs["answer"])
    fast_int8 = {"onnx-int8": 900.0, "onnx-fp32": 300.0, "openvino-fp32": 700.0}
    picked = choose(Bundle.load(_update(ov_bundle, _speeds(fast_int8))))
    assert (picked.backend, picked.precision) == ("onnx", "int8") and "openvino-fp32 700" in picked.reason
    assert loads == []  # an ONNX variant measured fastest: OpenVINO (a slow import) is never loaded
    fast_ov = {"onnx-int8": 500.0, "onnx-fp32": 300.0, "openvino-fp32": 700.0}
    assert choose(Bundle.load(_update(ov_bundle, _speeds(fast_ov)))).backend == "openvino"
    assert loads == [True]
    runs["answer"] = False  # measured fastest, but its runner does not load here: the fastest ONNX one runs
    picked = choose(Bundle.load(ov_bundle))
    assert (picked.backend, picked.precision) == ("onnx", "int8") and "openvino" not in picked.reason


def _add_validation(root: Path) -> Path:
    rows = [{"label": "pos" if "g" in t else "neg", "text": t} for t in TEXTS]
    with gzip.open(root / "validation.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return _update(root, lambda report: None)


def test_another_cpu_measures_once_then_reads_its_cache(
    ov_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLSRUN_CACHE_DIR", str(tmp_path / "cache"))
    other_cpu = {"onnx-int8": 1.0, "onnx-fp32": 1.0, "openvino-fp32": 1.0}
    root = _add_validation(_update(ov_bundle, _speeds(other_cpu, cpu="another CPU [flags 0]")))
    calls: list[list[str]] = []
    real = speeds.measure

    def counted(bundle: Bundle, choices: Any, texts: list[str], rounds: int) -> dict[str, float]:
        calls.append([c.key for c in choices])
        measured = real(bundle, choices, texts, rounds)
        assert set(measured) == {"onnx-int8", "onnx-fp32", "openvino-fp32"}
        return {**measured, "openvino-fp32": 1e9}  # make the winner certain

    monkeypatch.setattr(speeds, "measure", counted)
    first = choose(Bundle.load(root))
    assert first.backend == "openvino" and "measured now" in first.reason
    second = choose(Bundle.load(root))
    assert second.backend == "openvino" and "cached in" in second.reason
    assert len(calls) == 1 and (tmp_path / "cache" / "speeds.json").is_file()


def test_without_rows_to_measure_auto_says_it_did_not_measure(ov_bundle: Path) -> None:
    picked = choose(Bundle.load(ov_bundle))  # the toy bundle has no validation rows and no speeds
    assert (picked.backend, picked.precision) == ("onnx", "int8") and "not measured" in picked.reason


def test_a_refused_openvino_variant_is_never_chosen(make_bundle: Callable[..., Path]) -> None:
    root = add_openvino(make_bundle("refused"), passed=False)
    with pytest.raises(
        UsageError, match=r"--backend openvino: .* has no exported openvino variant that passed"
    ):
        choose(Bundle.load(root), Variant(backend="openvino"))  # exit 2, as a --precision not exported


def test_predict_backend_openvino_writes_what_ran_and_why(
    ov_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from clsrun.runtime.cli import app

    monkeypatch.setenv("CLSRUN_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "in.csv"
    src.write_text("text\n" + "\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    args = ["predict", str(src), "--model", str(ov_bundle), "--out", str(out), "--backend", "openvino"]
    result = CliRunner().invoke(app, [*args, "--threads", "2"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out.csv.manifest.json").read_text(encoding="utf-8"))
    assert (manifest["backend"], manifest["variant_file"]) == ("openvino", "openvino/model.xml")
    assert manifest["streams"] == 2 and manifest["choice_reason"].startswith("the only exported variant")
    assert manifest["ok"] == len(TEXTS)


def test_bf16_runs_only_where_the_cpu_has_it_and_it_was_asked_or_passed(
    ov_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    import clsrun.runtime.ov_runner as ov_runner
    from clsrun.runtime.errors import UsageError

    bundle = Bundle.load(ov_bundle)
    choice = choose(bundle, Variant(backend="openvino"))  # its report entry has no bf16 pass
    asked = replace(choice, inference_precision="bf16")
    monkeypatch.setattr(ov_runner, "bf16_here", lambda core=None: False)
    assert ov_runner.float_precision(bundle, asked) == "f32"  # asked, but this CPU has no bf16
    monkeypatch.setattr(ov_runner, "bf16_here", lambda core=None: True)
    assert ov_runner.float_precision(bundle, asked) == "bf16"
    assert ov_runner.float_precision(bundle, choice) == "f32"  # never gated in bf16
    passed = _update(ov_bundle, lambda r: r["variants"]["ov-fp32"].update(bf16={"passed": True}))
    assert ov_runner.float_precision(Bundle.load(passed), choice) == "bf16"
    with pytest.raises(UsageError, match="bf16 or f32"):
        ov_runner.float_precision(bundle, replace(choice, inference_precision="fp8"))


@pytest.mark.parametrize(
    "entry", [[], "x", {"another CPU": 1}, {"HERE": {"onnx-int8": "x", "onnx-fp32": None}}]
)
def test_a_damaged_speeds_cache_entry_is_measured_again_not_a_crash(
    ov_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: object
) -> None:
    monkeypatch.setenv("CLSRUN_CACHE_DIR", str(tmp_path / "cache"))
    other_cpu = {"onnx-int8": 1.0, "onnx-fp32": 1.0, "openvino-fp32": 1.0}
    root = _add_validation(_update(ov_bundle, _speeds(other_cpu, cpu="another CPU [flags 0]")))
    bundle = Bundle.load(root)
    if isinstance(entry, dict) and "HERE" in entry:
        entry = {speeds.cpu_key(): entry["HERE"]}
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "speeds.json").write_text(json.dumps({bundle.digest: entry}), encoding="utf-8")
    picked = choose(bundle)
    assert "measured now" in picked.reason  # the bad entry was no entry
    cached = json.loads((tmp_path / "cache" / "speeds.json").read_text(encoding="utf-8"))
    assert set(cached[bundle.digest][speeds.cpu_key()]) == {"onnx-int8", "onnx-fp32", "openvino-fp32"}


def test_a_user_without_a_home_folder_measures_again_rather_than_crashing(
    ov_bundle: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No HOME and no passwd entry (a container, systemd's DynamicUser): Path.home() raises RuntimeError,
    and every predict of a bundle exported on another CPU ended "unexpected RuntimeError", exit 1."""
    import pathlib

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    for name in ("CLSRUN_CACHE_DIR", "XDG_CACHE_HOME", "HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pathlib.Path, "home", staticmethod(no_home))
    other_cpu = {"onnx-int8": 1.0, "onnx-fp32": 1.0, "openvino-fp32": 1.0}
    bundle = Bundle.load(_add_validation(_update(ov_bundle, _speeds(other_cpu, cpu="another CPU [flags 0]"))))
    with caplog.at_level("WARNING", logger="clsrun"):
        picked = choose(bundle)
    assert "measured now" in picked.reason
    assert "no home folder" in caplog.text and "CLSRUN_CACHE_DIR names a folder" in caplog.text


def test_the_speeds_cache_makes_no_home_folder_and_ignores_a_relative_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HOME=/nonexistent (the "no home" of service accounts): a root job made /nonexistent/.cache/clsrun.
    XDG_CACHE_HOME=relcache wrote ./relcache into the job's folder; the XDG spec ignores a relative value."""
    monkeypatch.delenv("CLSRUN_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "nonexistent"))
    assert speeds.cache_path() is None
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", "relcache")
    assert speeds.cache_path() == tmp_path / ".cache" / "clsrun" / speeds.CACHE_FILE
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert speeds.cache_path() == tmp_path / "xdg" / "clsrun" / speeds.CACHE_FILE


def test_asking_for_openvino_on_a_bundle_exported_without_it_names_the_export_that_builds_it(
    make_bundle: Callable[..., Path],
) -> None:
    bundle = make_bundle("no-ov")  # exported: fp32 and int8 only
    with pytest.raises(
        UsageError, match=r"clsrun export .*no-ov --precision fp32,int8,ov-int8 --force` first"
    ):
        Classifier.load(bundle, Variant(backend="openvino"))


def test_device_cuda_where_there_is_no_gpu_says_so_rather_than_naming_an_extra(
    make_bundle: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from clsrun.runtime import variant as variant_module

    monkeypatch.setattr(variant_module, "ort_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(variant_module, "nvidia_gpu_present", lambda: False)
    with pytest.raises(UsageError, match="--device cuda: this machine has no NVIDIA GPU"):
        Classifier.load(make_bundle("cuda"), Variant(backend="onnx", device="cuda"))
    monkeypatch.setattr(variant_module, "nvidia_gpu_present", lambda: True)
    with pytest.raises(UsageError, match=r"no CUDA provider here; pip install '\.\[gpu\]'"):
        Classifier.load(make_bundle("cuda2"), Variant(backend="onnx", device="cuda"))


def test_bf16_on_an_exported_backend_says_where_it_runs(make_bundle: Callable[..., Path]) -> None:
    """It said "this bundle has no bf16 variant that passed the export gate": no export builds one."""
    with pytest.raises(UsageError, match=r"--precision bf16 runs on --backend torch .* fp32, int8"):
        choose(Bundle.load(make_bundle("b")), Variant(backend="onnx", precision="bf16"))


def test_the_default_models_hint_exports_a_copy_not_the_installed_folder() -> None:
    """It told the user to run export on site-packages/clsrun/runtime/default_model."""
    from clsrun.runtime.bundle import default_model_path

    with pytest.raises(
        UsageError, match=r"export a copy of it \(cp -r .*default_model my_model && clsrun export my_model"
    ):
        choose(Bundle.load(default_model_path()), Variant(backend="openvino"))


def test_both_onnxruntime_packages_installed_is_named_as_the_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from clsrun.runtime import variant

    monkeypatch.setattr(metadata, "version", lambda name: "1.23.0")  # onnxruntime and onnxruntime-gpu
    assert "share one folder: pip uninstall -y onnxruntime onnxruntime-gpu" in variant._gpu_install_hint()

    def only_cpu(name: str) -> str:
        if name == "onnxruntime-gpu":
            raise metadata.PackageNotFoundError(name)
        return "1.23.0"

    monkeypatch.setattr(metadata, "version", only_cpu)
    assert "'gpu' extra" in variant._gpu_install_hint()
