"""``benchmarks/gpu_check.py --smoke``: the prepared GPU check runs its own code paths on a CPU.

It imports clsrun from the tree through its shim (not the installed package), trains, builds the
BERT-base-sized bundle, scores short and long texts with both models, compares them with eager
transformers and the CPU fp32 reference, and writes its report; every check must pass.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_smoke_run_passes_every_check(tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))
    assert done.returncode == 0, f"{report['failures']}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert report["failures"] == []
    shim = report["import"]["shim"]
    assert report["import"]["clsrun"].startswith(shim) and report["import"]["dist_info"].startswith(shim)
    assert report["import"]["torch_runner"] == "clsrun.trainer.torch_runner"
    assert report["train"]["device"] == "cpu" and report["train"]["epochs"] == 1
    for model in ("minilm", "bert_base"):
        for kind, rows in (("short", 300), ("long", 40)):
            run = report[model][kind]
            assert (run["rows"], run["backend"], run["device"]) == (rows, "torch", "cpu")
            assert run["tokens_per_s"] > 0
        eager = report[model]["short"]["eager_fp32_batch32"]
        assert eager["rows_compared"] > 0 and eager["label_agreement_with_predict"] == 1.0
        agreement = report[model]["agreement"]
        assert agreement["predict_outputs"]["label_agreement"] == 1.0
        assert agreement["bf16"]["label_agreement"] >= 0.995
    for provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):  # CUDA-only: skipped, with why
        assert report["onnxruntime"][provider]["status"] == "skipped"
        assert "needs onnxruntime-gpu" in report["onnxruntime"][provider]["reason"]
    assert report["compile"]["status"] == "skipped" and report["compile"]["reason"]
    assert report["encode_workers"]["label_agreement"] == 1.0  # predict's encoding processes on CUDA
    text = (out / "gpu_check.md").read_text(encoding="utf-8")
    for heading in (
        "# clsrun GPU check (smoke)",
        "**Checks: all passed**",
        "## (a) Training",
        "## (b) Scoring",
    ):
        assert heading in text
    assert "## (c) onnxruntime on the GPU" in text and "## (d) torch.compile" in text


def _gpu_check() -> Any:
    """benchmarks/gpu_check.py as a module (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_label_mismatch_fails_the_check_loudly(tmp_path: Path) -> None:
    check = _gpu_check()
    report = check.Report(tmp_path, check.SMOKE)
    base = {"rows": 400, "labels": ["a"] * 398 + ["b", "b"]}  # 2 of 400 differ: 99.5 %, still a pass
    truncated = [False] * 399 + [True]  # the last row is cut: not compared
    assert (
        check.eager_agreement(report, "m", "short", dict(base), ["a"] * 400, truncated)["rows_compared"]
        == 399
    )
    assert report.failures == []
    base["labels"] = ["a"] * 396 + ["b"] * 4
    check.eager_agreement(report, "m", "long", base, ["a"] * 400, [False] * 400)
    assert report.failures == ["m long: eager fp32 and predict agree on 0.9900 of labels"]
    report.section("crashing part", lambda: 1 / 0)  # a crash is a failure too, and the others still run
    report.write()
    assert report.failures[-1] == "crashing part: ZeroDivisionError: division by zero"
    text = (tmp_path / "gpu_check.md").read_text(encoding="utf-8")
    assert "**Checks: 2 FAILED**" in text and "- FAILED: m long: eager fp32" in text
    assert (
        json.loads((tmp_path / "gpu_check.json").read_text(encoding="utf-8"))["failures"] == report.failures
    )


def test_without_cuda_the_gpu_run_refuses_and_says_how_to_run_the_smoke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check = _gpu_check()
    monkeypatch.setattr(check, "check_shim", lambda: {"shim": "here"})
    monkeypatch.setattr(check, "environment", lambda: {"gpu": None, "cores": 2})
    assert check.run_check(check.GPU, tmp_path / "absent", tmp_path / "out") == 1
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text(encoding="utf-8"))
    assert report["failures"][0].startswith("no CUDA device here") and "--smoke" in report["failures"][0]
    assert "train" not in report["seconds"]  # nothing else was attempted
