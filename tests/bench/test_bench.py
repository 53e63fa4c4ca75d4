"""`clsrun bench`: the report's structure, and every requested backend either ran or says why not.

Tiny bundles, a few dozen rows, one repeat: these check what the report holds, never how fast anything is.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clsrun.bench import BACKENDS, BackendResult, BenchConfig, BenchReport, run_bench, write_report
from clsrun.bench.report import to_markdown
from clsrun.runtime.bundle import Bundle
from clsrun.runtime.cli import app

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def quick(bundle: Path, data: Path, backends: tuple[str, ...] = BACKENDS) -> BenchConfig:
    return BenchConfig(
        bundle=bundle,
        data=data,
        backends=backends,
        batch_sizes=(1, 4),
        repeats=1,
        warmup=1,
        max_rows=16,
        latency_calls=3,
        device="cpu",
        threads=1,
        matmul_n=128,
    )


@pytest.fixture
def toy_data(tmp_path: Path) -> Path:
    rows = ["ggg", "好好", "bbb", "差", "", "gbxyz", "x"] * 5
    path = tmp_path / "texts.csv"
    path.write_text("text\n" + "\n".join(f'"{t}"' for t in rows) + "\n", encoding="utf-8")
    return path


def check_accounted(report: BenchReport, requested: tuple[str, ...]) -> dict[str, BackendResult]:
    """Every requested backend is in the report, in order; one that did not run has a reason."""
    assert [r.name for r in report.results] == list(requested)
    for r in report.results:
        assert r.status in ("ok", "skipped", "failed")
        if r.status == "ok":
            assert r.reason is None and r.bulk is not None
            assert r.bulk["rows"] == report.inputs["rows"]
            assert r.bulk["rows_per_s"].median > 0 and r.bulk["tokens_per_s"].median > 0
            assert r.memory["peak_rss_mib"] > 0
            assert r.details["load_average_1min"] >= 0  # load drift between backends is visible
            for lat in r.latency:
                assert 0 < lat.p50_ms <= lat.p95_ms <= lat.p99_ms
        else:
            assert r.reason, f"{r.name} did not run and gives no reason"
    return {r.name: r for r in report.results}


def test_onnx_bundle_report_structure_and_reasons(toy_bundle: Path, toy_data: Path, tmp_path: Path) -> None:
    report = run_bench(quick(toy_bundle, toy_data))
    by = check_accounted(report, BACKENDS)
    assert report.inputs["rows"] == 16  # first 16 non-empty texts: the empty one is skipped
    for name in ("onnx-fp32", "onnx-int8", "predict"):
        assert by[name].status == "ok", (name, by[name].reason)
    assert [x.batch_size for x in by["onnx-int8"].latency] == [1, 4]
    assert by["onnx-int8"].details["precision"] == "int8"
    assert "BERT bundles only" in by["pipeline"].reason
    assert "CUDA" in by["onnx-fp16"].reason
    assert "no exported openvino variant" in by["openvino-int8"].reason
    predict = by["predict"]
    assert predict.bulk["manifest_rows_per_s"].median > 0
    assert predict.latency == []
    assert predict.details["input"].endswith("bench_input.csv")  # the first 16 texts, as a file of their own
    assert report.peak["peak"]["fp32"] > 0 and report.machine["usable_cores"] >= 1
    assert "onnxruntime" in report.versions and report.config["threads"] == 1

    paths = write_report(report, tmp_path / "out")
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert {r["name"]: r["status"] for r in data["results"]}["onnx-fp32"] == "ok"
    assert data["results"][3]["bulk"]["rows_per_s"]["values"]  # every repeat's figure is kept
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "| onnx-int8 |" in md and "| predict (int8) |" in md
    assert "**pipeline** (skipped)" in md and "**onnx-fp16** (skipped)" in md
    for key in ("throughput_png", "latency_png"):
        assert paths[key].read_bytes().startswith(PNG_MAGIC)


@pytest.mark.slow
def test_bert_bundle_runs_pipeline_and_eager_torch_with_flops(
    tiny_bert_bundle: Path, tiny_bert_data: Path
) -> None:
    requested = ("pipeline", "torch-fp32", "torch-bf16", "onnx-fp32", "predict")
    report = run_bench(quick(tiny_bert_bundle, tiny_bert_data, requested))
    by = check_accounted(report, requested)
    for name in ("pipeline", "torch-fp32", "predict"):
        assert by[name].status == "ok", (name, by[name].reason)
    assert by["pipeline"].details["same_head_as_clsrun"] is True  # cls pooling: BERT's own head
    compute = by["torch-fp32"].compute
    assert compute["flops_per_row"] > 0 and compute["fraction_of_peak"] > 0
    # Not exported: the onnx backend says so instead of vanishing; bf16 either ran or says why.
    assert by["onnx-fp32"].status == "skipped" and "export" in by["onnx-fp32"].reason
    assert by["torch-bf16"].status in ("ok", "skipped")


def test_pipeline_refuses_a_bundle_folder_with_files_its_spec_does_not_list(
    tiny_bert_bundle: Path, tiny_bert_data: Path, tmp_path: Path
) -> None:
    """transformers reads a folder's files by name: an unlisted tokenizer_config.json (never hash-checked,
    its auto_map never read by clsrun) would be read. The backend is skipped, saying so."""
    import shutil

    bundle = Path(shutil.copytree(tiny_bert_bundle, tmp_path / "b"))
    (bundle / "tokenizer_config.json").unlink(missing_ok=True)
    Bundle.load(bundle, verify=False).rehash()
    (bundle / "tokenizer_config.json").write_text('{"auto_map": {"AutoTokenizer": "x.Y"}}', encoding="utf-8")
    report = run_bench(quick(bundle, tiny_bert_data, ("pipeline",)))
    (pipeline,) = check_accounted(report, ("pipeline",)).values()
    assert pipeline.status == "skipped"
    assert "tokenizer_config.json, which clsrun.json does not list" in pipeline.reason


@pytest.mark.slow
def test_pipeline_on_a_mean_pooling_bundle_says_it_runs_another_head_without_transformers_report(
    tiny_bert_checkpoint: Path, tiny_bert_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from clsrun.trainer import train

    bundle = tmp_path / "mean"
    config = {"epochs": 2, "max_length": 32, "quiet": True, "logs": False}
    options = {"pooling": "mean", "freeze_encoder": True}
    train(tiny_bert_data, bundle, model=str(tiny_bert_checkpoint), config=config, options=options)
    capfd.readouterr()
    report = run_bench(quick(bundle, tiny_bert_data, ("pipeline",)))
    printed = "".join(capfd.readouterr())
    assert "LOAD REPORT" not in printed and "newly initialized" not in printed
    (pipeline,) = check_accounted(report, ("pipeline",)).values()
    assert pipeline.status == "ok", pipeline.reason
    assert pipeline.details["same_head_as_clsrun"] is False
    assert "speed reference only" in pipeline.details["head"] and "mean pooling" in pipeline.details["head"]
    assert "| pipeline ‡ |" in to_markdown(report)


@pytest.mark.slow
def test_exported_charcnn_every_cpu_backend_runs(tiny_charcnn_bundle: Path, tiny_charcnn_data: Path) -> None:
    from clsrun.export.exporter import export_bundle

    export_bundle(tiny_charcnn_bundle, precisions=("fp32", "int8"))
    config = quick(tiny_charcnn_bundle, tiny_charcnn_data)
    config.max_rows = 0  # the whole file: the predict path scores the file itself, as `clsrun predict` would
    report = run_bench(config)
    by = check_accounted(report, BACKENDS)
    for name in ("torch-fp32", "onnx-fp32", "onnx-int8", "predict"):
        assert by[name].status == "ok", (name, by[name].reason)
        compute = by[name].compute
        assert compute is not None and compute["flops_per_row"] > 0 and compute["fraction_of_peak"] > 0
    assert by["predict"].details["input"] == str(tiny_charcnn_data)
    assert by["predict"].bulk["manifest_rows_per_s"].median > 0  # type: ignore[index]
    assert by["torch-bf16"].status in ("ok", "skipped")  # CPUs without AVX512-BF16/AMX say so
    assert by["pipeline"].status == "skipped" and by["onnx-fp16"].status == "skipped"
    # The same texts and batches everywhere: identical padding figures for every model backend.
    pads = {by[n].bulk["padded_tokens"] for n in ("torch-fp32", "onnx-fp32", "onnx-int8")}  # type: ignore[index]
    assert len(pads) == 1


def test_an_ngram_bundles_variants_each_run_the_batches_predict_plans_for_them(
    exported_ngram_bundle: Path, small_charcnn_data: Path
) -> None:
    """The fp32 variant is a sparse graph that predict feeds unpadded batches in input order, the int8
    variant a padded one: timing both on one shared padded plan made fp32 look several times slower
    than predict runs it, and a user reading bench would have forced the slower variant."""
    from clsrun.runtime.bundle import Bundle
    from clsrun.runtime.classifier import Classifier
    from clsrun.runtime.variant import Variant

    config = quick(exported_ngram_bundle, small_charcnn_data, ("onnx-fp32", "onnx-int8"))
    config.max_rows = 0
    by = check_accounted(run_bench(config), config.backends)
    bundle = Bundle.load(exported_ngram_bundle)
    for name, precision in (("onnx-fp32", "fp32"), ("onnx-int8", "int8")):
        clf = Classifier.load(bundle, Variant("onnx", precision, "cpu", 1, streams=1))  # type: ignore[arg-type]
        bulk = by[name].bulk
        assert bulk is not None and bulk["padded_batches"] == clf.batching.padded, name
    fp32, int8 = by["onnx-fp32"].bulk, by["onnx-int8"].bulk
    assert fp32 is not None and int8 is not None
    assert fp32["padding_efficiency"] == 1.0 and fp32["padded_tokens"] == fp32["tokens"]
    assert int8["padded_tokens"] > int8["tokens"]  # padded to each batch's longest row


def test_cli_writes_files_and_rejects_unknown_backends(
    toy_bundle: Path, toy_data: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    out = tmp_path / "bench"
    args = ["bench", str(toy_bundle), "--data", str(toy_data), "--out", str(out), "--repeats", "1"]
    args += ["--batch-sizes", "1,2", "--max-rows", "10", "--threads", "1", "--matmul-size", "128", "--quiet"]
    result = runner.invoke(app, [*args, "--backends", "onnx-fp32,torch-fp16"])
    assert result.exit_code == 2 and "unknown torch-fp16" in result.output
    result = runner.invoke(app, [*args, "--batch-sizes", "1,x"])
    assert result.exit_code == 2 and "--batch-sizes" in result.output
    result = runner.invoke(app, [*args, "--backends", "onnx-fp32,pipeline"])
    assert result.exit_code == 0, result.output
    assert "| onnx-fp32 |" in result.output and "**pipeline** (skipped)" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "bench.json",
        "bench.md",
        "latency_percentiles.png",
        "throughput_vs_batch.png",
    ]


def test_an_out_the_report_cannot_go_to_is_refused_before_measuring(
    toy_bundle: Path, toy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found only after every backend was measured ("bench: permission denied"), and --out inside the
    bundle put four files into it."""
    import os
    import tempfile

    import clsrun.bench as bench_module

    def never(*args: object) -> None:
        raise AssertionError("measured before --out was checked")

    monkeypatch.setattr(bench_module, "run_bench", never)
    blocked = tmp_path / "file"
    blocked.write_text("x", encoding="utf-8")
    args = ["bench", str(toy_bundle), "--data", str(toy_data), "--quiet", "--out"]
    inside = CliRunner().invoke(app, [*args, str(toy_bundle / "bench")])
    assert inside.exit_code == 2 and "is inside the model bundle" in inside.output
    assert not (toy_bundle / "bench").exists()
    under_a_file = CliRunner().invoke(app, [*args, str(blocked / "bench")])
    assert under_a_file.exit_code == 2 and f"--out {blocked / 'bench'}" in under_a_file.output
    shared = tmp_path / "shared"  # a sticky folder holding another user's report
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "bench.json").write_text("{}", encoding="utf-8")
    owner = (shared / "bench.json").stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
    theirs = CliRunner().invoke(app, [*args, str(shared)])
    assert theirs.exit_code == 2 and "bench.json: belongs to user" in theirs.output
    monkeypatch.undo()
    monkeypatch.setattr(bench_module, "run_bench", never)
    monkeypatch.setattr(tempfile, "TemporaryFile", _denied)  # as root, a read-only folder is no refusal
    denied = CliRunner().invoke(app, [*args, str(tmp_path / "ro" / "deep")])
    assert denied.exit_code == 2 and "cannot write there (Permission denied)" in denied.output
    assert not (tmp_path / "ro").exists()  # the folders it made for --out went with the failure


def _denied(*args: object, **kwargs: object) -> None:
    raise PermissionError(13, "Permission denied")


def test_backends_and_batch_sizes_that_cannot_be_measured_are_said(
    toy_bundle: Path, toy_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``--backends ","`` measured nothing with exit 0; a batch size above the rows read vanished from the
    report while the latency plot showed a made-up "batch size 1" panel; a backend named twice ran twice."""
    runner = CliRunner()
    out = tmp_path / "bench"
    args = ["bench", str(toy_bundle), "--data", str(toy_data), "--out", str(out), "--repeats", "1"]
    args += ["--max-rows", "3", "--threads", "1", "--matmul-size", "128", "--quiet"]
    empty = runner.invoke(app, [*args, "--backends", ","])
    assert empty.exit_code == 2 and "--backends: name at least one" in empty.output
    with caplog.at_level("WARNING", logger="clsrun"):
        done = runner.invoke(app, [*args, "--backends", "onnx-fp32,onnx-fp32", "--batch-sizes", "4,16"])
    assert done.exit_code == 0, done.output
    assert "--batch-sizes 4,16: more rows than the 3 texts read" in caplog.text
    report = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    assert [r["name"] for r in report["results"]] == ["onnx-fp32"]
    assert (out / "latency_percentiles.png").read_bytes().startswith(PNG_MAGIC)
