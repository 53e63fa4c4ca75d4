"""``benchmarks/cpu_engines_check.py --prepare``: what travels to a lent machine is a bundle that still loads.

The check carries an exported bundle without its fp32 ONNX file and weights (64 MiB travel with the tree)
and an ``openvino`` package cut down to the CPU plugin. The cut bundle must still verify (every listed
file hashed), choose among the variants it kept, and score as the original does; the package must keep
what a CPU run of an IR file loads and nothing else.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from clsrun.export import ExportOptions, Int8Options, export_bundle
from clsrun.runtime.bundle import Bundle
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.labelled import read_labelled
from clsrun.runtime.variant import Variant

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def check() -> ModuleType:
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "cpu_engines_check", REPO / "benchmarks" / "cpu_engines_check.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_packed_bundle_verifies_and_scores_as_the_original(
    check: ModuleType, tiny_bert_bundle: Path, tmp_path: Path
) -> None:
    original = Path(shutil.copytree(tiny_bert_bundle, tmp_path / "original"))
    export_bundle(original, ExportOptions(("fp32", "int8"), max_accuracy_drop=100.0, int8=Int8Options(16)))
    check.pack_bundle(original, tmp_path / "bundle.tar.xz")
    with tarfile.open(tmp_path / "bundle.tar.xz") as tar:
        tar.extractall(tmp_path / "packed", filter="data")
    packed = Bundle.load(tmp_path / "packed")

    assert not (tmp_path / "packed" / "onnx" / "model.onnx").exists()
    assert not packed.has("onnx/model.onnx") and not packed.has("model.safetensors")
    report = packed.export_report() or {}
    assert set(report["variants"]) == {"int8"}
    assert set(report["speeds"]["rows_per_s"]) == {"onnx-int8"}
    texts = read_labelled(original / "validation.jsonl.gz").texts
    auto = Classifier.load(packed, Variant(threads=1))
    assert auto.choice.key == "onnx-int8"
    expected = Classifier.load(Bundle.load(original), Variant(precision="int8", threads=1)).predict(texts)
    assert np.array_equal(auto.predict(texts).probs, expected.probs)


def test_the_openvino_package_keeps_the_cpu_plugin_and_the_ir_reader_only(
    check: ModuleType, tmp_path: Path
) -> None:
    kept = [
        "openvino/__init__.py",
        "openvino/libs/libopenvino.so.2641",
        "openvino/libs/libopenvino_intel_cpu_plugin.so",
        "openvino/libs/libopenvino_ir_frontend.so.2641",
        "openvino/libs/plugins.xml",
    ]
    dropped = [
        "openvino/libs/libopenvino_intel_gpu_plugin.so",
        "openvino/libs/libopenvino_onnx_frontend.so.2641",
        "openvino/libs/cache.json",
        "openvino/frontend/pytorch/py_pytorch_frontend.so",
        "openvino/include/openvino/core.hpp",
        "openvino-2026.4.1.dist-info/METADATA",
    ]
    wheel = tmp_path / "openvino.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name in kept + dropped:
            z.writestr(name, name)
    check.pack_openvino(wheel, tmp_path / "openvino.tar.xz")
    with tarfile.open(tmp_path / "openvino.tar.xz") as tar:
        assert sorted(tar.getnames()) == sorted(kept)
        member = tar.extractfile("openvino/libs/libopenvino.so.2641")
        assert member is not None and member.read() == b"openvino/libs/libopenvino.so.2641"


def test_the_report_ranks_engines_and_lists_failures(check: ModuleType) -> None:
    part = {
        "rows": 8,
        "threads": 2,
        "results": {
            "ort-int8": {
                "rows_per_s_median": 10.0,
                "runs": [10.0],
                "agreement_with_fp32": 1.0,
                "first_pass": 9,
            },
            "clsrun-api": {"rows_per_s_median": 12.5, "runs": [12.5], "agreement_with_fp32": 1.0},
        },
        "skipped": {"torch-fp32": "--no-torch"},
        "api_auto_choice": {"variant": "onnx-int8"},
        "predict_choice": {"backend": "onnx"},
    }
    text = check.markdown(
        {"parts": {"machine": {"cpu": "X"}, "short x2": part}, "failed": ["eval onnx: exit 1"]}
    )
    lines = text.splitlines()
    assert "**failed**: eval onnx: exit 1" in lines
    rows = [ln for ln in lines if ln.startswith("| clsrun-api") or ln.startswith("| ort-int8")]
    assert rows == ["| clsrun-api | 12.5 | [12.5] |  | 1.0 |", "| ort-int8 | 10.0 | [10.0] | 9 | 1.0 |"]
    assert "| torch-fp32 | skipped: --no-torch | | | |" in lines
    assert json.dumps({"cpu": "X"}) in text


@pytest.fixture
def ov_int8_bundle(tiny_charcnn_bundle: Path) -> Path:
    """The tiny char-CNN bundle exported with an OpenVINO int8 variant (the one the check times)."""
    export_bundle(tiny_charcnn_bundle, ExportOptions(("fp32", "ov-int8"), max_accuracy_drop=100.0))
    return tiny_charcnn_bundle


@pytest.mark.slow
def test_the_bf16_part_records_the_gate_verdict_in_a_bundle_that_still_verifies(
    check: ModuleType, ov_int8_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clsrun.runtime.ov_runner as ov_runner

    data = tmp_path / "data"
    data.mkdir()
    reference = check.gate_reference(Bundle.load(ov_int8_bundle))  # --prepare, where the weights are
    (data / "gate_reference.json").write_text(json.dumps(reference.tolist()), encoding="utf-8")
    # This CPU has no bf16 (OpenVINO computes f32 whatever the hint): what is tested is what gets recorded.
    monkeypatch.setattr(ov_runner, "bf16_here", lambda core=None: True)
    verdict = check.gate_bf16(ov_int8_bundle, data)

    assert verdict["f32"]["gate_passed"] is True and verdict["bf16"]["passed"] is True
    assert verdict["bf16"]["label_agreement"] == verdict["f32"]["label_agreement"]
    bundle = Bundle.load(ov_int8_bundle)  # rehashed: every listed file still verifies
    assert (bundle.export_report() or {})["variants"]["ov-int8"]["bf16"] == verdict["bf16"]
    clf = Classifier.load(bundle, Variant(backend="openvino", precision="int8", threads=1))
    assert clf.runner.providers[0].endswith("-CPU-bf16")


@pytest.mark.slow
def test_ov_shapes_counts_fewer_shapes_with_batches_planned_on_padded_widths(
    ov_int8_bundle: Path, tmp_path: Path
) -> None:
    texts = [("好" if i % 2 else "g") * (1 + i % 29) + "x" * (i % 7) for i in range(300)]
    data = tmp_path / "texts.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        f.write("text\n" + "".join(f"{t}\n" for t in texts))
    script = REPO / "benchmarks" / "ov_shapes.py"
    args = ["--model", str(ov_int8_bundle), "--data", str(data), "--repeats", "1", "--threads", "1"]
    args += ["--batch-tokens", "96"]  # many batches of a few widths
    done = subprocess.run(
        [sys.executable, str(script), *args, "--configs", "pad8-oldplan,pad8"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    results = json.loads(done.stdout)["results"]["texts.csv"]
    old, new = results["pad8-oldplan"], results["pad8"]
    assert new["shapes"] < old["shapes"]
    assert all(log[1] % 8 == 0 for log in new["first_calls_log"])  # (rows, width, seconds): widths padded
    assert sum(log[0] for log in new["first_calls_log"]) == len(texts)
    assert new["first_pass_rows_per_s"] > 0 and new["load_s"] > 0


def test_first_shape_cost_counts_each_shape_once_against_its_warm_median(check: ModuleType) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import ov_shapes

    first = {"calls_log": [[8, 16, 0.5], [8, 16, 0.1], [4, 32, 0.3]]}
    second = {"calls_log": [[8, 16, 0.1], [8, 16, 0.12], [4, 32, 0.2]]}
    assert ov_shapes.first_shape_cost(first, second) == pytest.approx((0.5 - 0.11) + (0.3 - 0.2))
    assert ov_shapes._config("pad16-rows8-oldplan-cache") == (16, 8, True, True)
    with pytest.raises(SystemExit, match="padN"):
        ov_shapes._config("pad8-fast")
