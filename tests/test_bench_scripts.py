"""``benchmarks/bench_vs_engines.py`` and ``bench_vs_pipeline.py``: the README's engine tables come from
scripts that run, on a bundle of either pooling, with every engine that can run here."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clsrun.export import ExportOptions, Int8Options, export_bundle

REPO = Path(__file__).resolve().parents[1]


def _exported(bundle: Path, tmp_path: Path) -> Path:
    copy = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    export_bundle(copy, ExportOptions(("fp32", "int8"), max_accuracy_drop=100.0, int8=Int8Options(16)))
    return copy


def _texts(path: Path, n: int) -> Path:
    """``n`` four-sentence English texts in a ``label,text`` CSV (the pipeline script pairs sentences)."""
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["label", "text"])
        for i in range(n):
            word = ("good", "bad")[i % 2]
            out.writerow(
                [
                    ("pos", "neg")[i % 2],
                    f"The film was {word}. A movie is very {word}. It is {word}. The end.",
                ]
            )
    return path


def _run(script: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict = json.loads(done.stdout)
    return result


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_bench_vs_engines_times_every_engine_and_compares_labels(
    pooling: str, tiny_bert_bundle: Path, tiny_mean_bundle: Path, tmp_path: Path
) -> None:
    bundle = _exported(tiny_bert_bundle if pooling == "cls" else tiny_mean_bundle, tmp_path)
    data = _texts(tmp_path / "texts.csv", 24)
    work = tmp_path / "work"
    got = _run(
        "bench_vs_engines.py", "--model", str(bundle), "--data", str(data), "--repeats", "1",
        "--threads", "1", "--workdir", str(work),
    )  # fmt: skip

    results = got["results"]
    for name in ("clsrun-api", "clsrun-predict-in-run", "clsrun-predict-whole", "ort-int8", "torch-fp32"):
        assert results[name]["rows_per_s_median"] > 0, name
        assert results[name]["agreement_with_fp32"] >= 0.9, (name, results[name])
    pipeline = results["transformers-pipeline"]
    assert pipeline["rows_per_s_median"] > 0
    if pooling == "cls":  # the pipeline runs the bundle's own head: its labels are clsrun's
        assert pipeline["agreement_with_fp32"] >= 0.9
        assert "transformers-pipeline" not in got["notes"]
    else:  # a new head on the same encoder: timed, never compared
        assert pipeline["agreement_with_fp32"] is None
        assert "newly initialised" in got["notes"]["transformers-pipeline"]
    assert got["skipped"]["ctranslate2-int8"]  # not installed, or no --ct2: said, not silently dropped
    assert got["predict_choice"]["backend"]


@pytest.mark.slow
def test_bench_vs_pipeline_reports_both_rates(tiny_bert_bundle: Path, tmp_path: Path) -> None:
    bundle = _exported(tiny_bert_bundle, tmp_path)
    data = _texts(tmp_path / "articles.csv", 20)
    got = _run(
        "bench_vs_pipeline.py", "--model", str(bundle), "--data", str(data), "--rows", "30",
        "--pipeline-rows", "16", "--repeats", "1", "--threads", "1", "--work", str(tmp_path / "work"),
    )  # fmt: skip

    assert got["rows"] == 30  # two sentence pairs a text, cut at --rows
    assert got["median"]["pipeline"] > 0 and got["median"]["predict_in_run"] > 0
    assert got["ratio_end_to_end"] == pytest.approx(
        got["median"]["predict_end_to_end"] / got["median"]["pipeline"]
    )
