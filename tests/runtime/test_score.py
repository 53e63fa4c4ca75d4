"""Classifier API, variant choice and file scoring with a toy ONNX bundle (no torch)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from clsrun.runtime.batching import BatchOptions, windows
from clsrun.runtime.bundle import Bundle
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.errors import BundleError, UsageError
from clsrun.runtime.input_files import ReadOptions
from clsrun.runtime.score import OutputOptions, default_output, open_input, score_file
from clsrun.runtime.variant import Variant, choose


def test_predict_gives_labels_probs_and_row_errors(toy_bundle: Path) -> None:
    clf = Classifier.load(toy_bundle, Variant(threads=1))
    pred = clf.predict(["ggg", "bbb", None, "  ", "好好 差"])
    assert clf.labels == ["neg", "pos"]
    assert pred.labels == ["pos", "neg", "", "", "pos"]
    assert pred.probs.shape == (5, 2)
    np.testing.assert_allclose(pred.probs[pred.ok].sum(axis=1), 1.0, rtol=1e-6)
    assert np.isnan(pred.probs[2]).all()
    assert pred.errors[2] == "null text" and pred.errors[3] == "empty or whitespace-only text"


def test_score_records_has_exactly_the_output_columns(toy_bundle: Path) -> None:
    clf = Classifier.load(toy_bundle, Variant(threads=1))
    table = clf.score_records(["gg", 7, "bb"], ids=["x", "y", "z"])
    assert table.column_names == ["id", "label", "score", "prob_neg", "prob_pos", "status", "error"]
    assert table.column("status").to_pylist() == ["ok", "error", "ok"]
    assert table.column("error").to_pylist()[1] == "text is a int, not a string"
    assert table.column("label").to_pylist() == ["pos", None, "neg"]


def test_auto_prefers_int8_on_cpu_and_only_passed_variants(make_bundle: Callable[..., Path]) -> None:
    both = Bundle.load(make_bundle("both"))
    assert choose(both).precision == "int8"
    assert choose(both, Variant(precision="fp32")).file == "onnx/model.onnx"
    failed_int8 = Bundle.load(make_bundle("f", passed={"fp32": True, "int8": False}))
    picked = choose(failed_int8)
    assert (picked.backend, picked.precision, picked.device) == ("onnx", "fp32", "cpu")
    with pytest.raises(UsageError, match="no int8 variant that passed"):
        choose(failed_int8, Variant(precision="int8"))
    with pytest.raises(UsageError, match="--precision 'fp64'"):
        choose(failed_int8, Variant(precision="fp64"))  # type: ignore[arg-type]
    none = Bundle.load(make_bundle("n", passed={"fp32": False}))
    with pytest.raises(BundleError, match="run `clsrun export"):
        choose(none, Variant(backend="onnx"))


def test_describe_records_what_runs(toy_bundle: Path) -> None:
    info = Classifier.load(toy_bundle, Variant(precision="fp32", threads=2)).describe()
    assert info["backend"] == "onnx" and info["precision"] == "fp32" and info["threads"] == 2
    assert info["file"] == "onnx/model.onnx" and len(info["bundle_digest"]) == 64


def test_external_data_outside_the_bundle_is_refused(make_bundle: Callable[..., Path]) -> None:
    import onnx

    root = make_bundle("b", passed={"fp32": True})
    model = onnx.load(str(root / "onnx" / "model.onnx"))
    onnx.save(model, str(root / "onnx" / "model.onnx"), save_as_external_data=True, location="w.bin",
              size_threshold=0)  # fmt: skip
    data = (root / "onnx" / "model.onnx").read_bytes().replace(b"w.bin", b"../..")  # same length: 5 bytes
    (root / "onnx" / "model.onnx").write_bytes(data)
    from clsrun.runtime.bundle import write_spec

    write_spec(root, Bundle.load(root, verify=False).spec)
    with pytest.raises(BundleError, match="refused"):
        Classifier.load(root)


def _reviews(path: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    pool = ["g" * k + "b" * (k % 3) for k in range(1, 40)] + ["好" * 30 + "x" * 40, "差差", "ybx"]
    texts: list[str | None] = [pool[i] for i in rng.integers(0, len(pool), size=n)]
    for i in range(0, n, 97):
        texts[i] = [None, "", "   "][i % 3]
    pacsv.write_csv(pa.table({"key": [f"k{i}" for i in range(n)], "text": texts}), path)
    return path


def test_score_file_keeps_every_row_in_order_and_counts(tmp_path: Path, toy_bundle: Path) -> None:
    src = _reviews(tmp_path / "in.csv", 5000)
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=700, batch_tokens=900))
    result = score_file(src, None, clf, ReadOptions(id_col="key"))
    assert result.output == default_output(src) == tmp_path / "in.scores.csv"
    out = pacsv.read_csv(result.output, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    assert out.num_rows == 5000
    assert out.column("id").to_pylist() == [f"k{i}" for i in range(5000)]
    n_err = len(range(0, 5000, 97))
    assert out.column("status").to_pylist().count("error") == n_err
    m = json.loads(result.manifest_path.read_text(encoding="utf-8"))
    assert (m["rows_read"], m["ok"], m["error"]) == (5000, 5000 - n_err, n_err)
    assert m["truncated"] > 0  # the 70-character texts are cut to max_length 16
    assert m["backend"] == "onnx" and m["precision"] == "int8" and m["bundle_digest"] == clf.bundle.digest
    assert m["rows_per_s"] > 0 and not list(tmp_path.glob(".*partial"))


def test_sorted_batching_gives_the_same_scores_as_input_order(tmp_path: Path, toy_bundle: Path) -> None:
    src = _reviews(tmp_path / "in.csv", 3000)
    unsorted = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=1000, sort=False))
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=1000))
    a = score_file(src, tmp_path / "a.parquet", clf, options=OutputOptions(probs=True))
    b = score_file(src, tmp_path / "b.parquet", unsorted, options=OutputOptions(probs=True))
    import pyarrow.parquet as pq

    assert pq.read_table(a.output).equals(pq.read_table(b.output))


class _SlowFirstCall:
    """Wraps a runner: the first batch waits until ``others`` later batches are done, so later windows
    finish first, as they can with several streams."""

    def __init__(self, runner: Any, others: int) -> None:
        self.runner, self.providers = runner, runner.providers
        self.others, self.calls, self.done, self.lock = others, 0, 0, threading.Lock()
        self.released = threading.Event()

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if first:
            assert self.released.wait(timeout=30), "the other streams never ran: streams are not concurrent"
        out = self.runner.run(inputs)
        with self.lock:
            self.done += 1
            if self.done >= self.others:
                self.released.set()
        return np.asarray(out)


def test_several_streams_write_exactly_what_one_stream_writes(tmp_path: Path, toy_bundle: Path) -> None:
    src = _reviews(tmp_path / "in.csv", 4000)
    read, output, batching = ReadOptions(id_col="key"), OutputOptions(probs=True), BatchOptions(300, 400)
    one = Classifier.load(toy_bundle, Variant(threads=1), batching)
    a = score_file(src, tmp_path / "one.csv", one, read, output)
    three = Classifier.load(toy_bundle, Variant(threads=3, streams=3), batching)
    assert three.streams == 3
    stream = open_input(src, read)
    per_window = [len(three.prepare(w).batches) for w in windows(stream.chunks(0), 300)]
    # window 0's first batch runs only after the rest of window 0 and all of window 1: the writer must
    # hold window 1 back; the 3 + 2 windows in flight leave enough batches for that
    others = per_window[0] - 1 + per_window[1]
    assert others < sum(per_window[:5]) - 1
    slow = _SlowFirstCall(three.runner, others=others)
    b = score_file(src, tmp_path / "three.csv", dataclasses.replace(three, runner=slow), read, output)
    assert slow.released.is_set()
    assert a.output.read_bytes() == b.output.read_bytes()
    assert b.manifest["streams"] == 3 and b.manifest["rows_read"] == 4000


def test_streams_default_to_one_per_thread_for_onnx_on_cpu(toy_bundle: Path) -> None:
    assert Classifier.load(toy_bundle, Variant(threads=2, streams=1)).streams == 1
    auto = Classifier.load(toy_bundle, Variant(threads=2))
    assert auto.describe()["streams"] == 2 and auto.describe()["threads"] == 2
    with pytest.raises(UsageError, match="--streams 3"):
        Classifier.load(toy_bundle, Variant(threads=2, streams=3))
    with pytest.raises(UsageError, match="--threads 0: must be at least 1"):
        Variant(threads=0)


def test_predict_runs_its_batches_on_every_stream_with_the_same_result(toy_bundle: Path) -> None:
    texts = [("g" * k + "b" * (k % 5)) or "x" for k in range(300)]
    batching = BatchOptions(batch_tokens=64)  # many small batches
    one = Classifier.load(toy_bundle, Variant(threads=1), batching).predict(texts)
    clf = Classifier.load(toy_bundle, Variant(threads=2, streams=2), batching)
    probe = _SlowFirstCall(clf.runner, others=1)  # the first batch waits for one on another stream
    two = dataclasses.replace(clf, runner=probe).predict(texts)
    assert probe.released.is_set()
    assert one.labels == two.labels
    np.testing.assert_array_equal(one.probs, two.probs)


def test_a_classifier_does_not_change_after_load(tmp_path: Path, toy_bundle: Path) -> None:
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=100))
    before = (clf.batching, clf.choice, clf.threads, clf.streams)
    assert clf.batching.batch_tokens == 32768  # resolved at load: the char-CNN default on CPU
    score_file(_reviews(tmp_path / "in.csv", 300), None, clf, options=OutputOptions(probs=True))
    assert (clf.batching, clf.choice, clf.threads, clf.streams) == before
    with pytest.raises(dataclasses.FrozenInstanceError):
        clf.batching = BatchOptions(batch_tokens=1)  # type: ignore[misc]


def test_output_is_not_the_input(tmp_path: Path, toy_bundle: Path) -> None:
    src = _reviews(tmp_path / "in.csv", 10)
    with pytest.raises(UsageError, match="is the input file itself"):
        score_file(src, src, Classifier.load(toy_bundle))


def test_output_is_not_the_input_under_another_name(tmp_path: Path, toy_bundle: Path) -> None:
    """Resolved paths were compared: a hard link (or a bind mount) to the input passed, and publishing
    replaced the input with its scores."""
    import os

    src = _reviews(tmp_path / "in.csv", 10)
    os.link(src, tmp_path / "alias.csv")
    with pytest.raises(UsageError, match="is the input file itself"):
        score_file(
            src, tmp_path / "alias.csv", Classifier.load(toy_bundle), options=OutputOptions(overwrite=True)
        )


def test_the_manifest_never_replaces_the_input_or_a_file_that_is_not_a_manifest(
    tmp_path: Path, toy_bundle: Path
) -> None:
    """OUT.manifest.json was written over whatever was there: `predict o.csv.manifest.json --out o.csv`
    replaced its own input, and a JSON Lines output named so by another run was lost without --overwrite."""
    from clsrun.runtime.errors import OutputExistsError

    clf = Classifier.load(toy_bundle)
    src = tmp_path / "o.csv.manifest.json"  # a JSON Lines input (.json)
    src.write_text("".join(json.dumps({"text": f"g{i}"}) + "\n" for i in range(10)), encoding="utf-8")
    before = src.read_bytes()
    with pytest.raises(UsageError, match=r"its manifest, o\.csv\.manifest\.json, would replace the input"):
        score_file(src, tmp_path / "o.csv", clf, options=OutputOptions(overwrite=True))
    assert src.read_bytes() == before
    other = _reviews(tmp_path / "in.csv", 10)
    with pytest.raises(
        OutputExistsError, match=r"o\.csv\.manifest\.json: exists and is not a clsrun manifest"
    ):
        score_file(other, tmp_path / "o.csv", clf)
    assert src.read_bytes() == before and not (tmp_path / "o.csv").exists()
    score_file(other, tmp_path / "o.csv", clf, options=OutputOptions(overwrite=True))  # asked: replaced
    (
        tmp_path / "o.csv"
    ).unlink()  # a manifest whose output was deleted is clsrun's own: no --overwrite needed
    assert score_file(other, tmp_path / "o.csv", clf).manifest["rows_read"] == 10


def test_output_is_not_written_into_the_model_bundle(tmp_path: Path, toy_bundle: Path) -> None:
    from typer.testing import CliRunner

    from clsrun.runtime.cli import app

    copy = Path(shutil.copytree(toy_bundle, tmp_path / "bundle"))
    src = _reviews(tmp_path / "in.csv", 10)
    with pytest.raises(UsageError, match="is inside the model bundle"):
        score_file(src, copy / "clsrun.json", Classifier.load(copy), options=OutputOptions(overwrite=True))
    args = ["predict", str(src), "--model", str(copy), "--out", str(copy / "onnx" / "scores.csv")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "is inside the model bundle" in res.output
    assert not (copy / "onnx" / "scores.csv").exists()
    Classifier.load(copy)  # still whole: nothing was written into it


def test_a_damaged_bundle_is_refused(tmp_path: Path, toy_bundle: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(toy_bundle, copy)
    (copy / "onnx" / "model.int8.onnx").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="sha256 mismatch"):
        Classifier.load(copy)


def test_never_exported_bundle_runs_on_torch_and_matches_its_onnx_export(tiny_charcnn_bundle: Path) -> None:
    from typer.testing import CliRunner

    from clsrun.runtime.cli import app

    texts = ["这个房间很好，服务棒", "太差了，讨厌", "", "it was good", "x" * 100]
    eager = Classifier.load(tiny_charcnn_bundle, Variant(threads=1))  # no onnx/: auto falls back to torch
    assert eager.describe()["backend"] == "torch"
    by_torch = eager.predict(texts)
    res = CliRunner().invoke(app, ["export", str(tiny_charcnn_bundle), "--precision", "fp32"])
    assert res.exit_code == 0, res.output
    onnx = Classifier.load(tiny_charcnn_bundle, Variant(threads=1))
    assert onnx.describe()["backend"] == "onnx" and onnx.describe()["precision"] == "fp32"
    by_onnx = onnx.predict(texts)
    assert by_onnx.labels == by_torch.labels and by_onnx.errors == by_torch.errors
    np.testing.assert_allclose(by_onnx.probs[by_onnx.ok], by_torch.probs[by_torch.ok], atol=1e-5)


@pytest.mark.gpu
def test_cuda_with_io_binding_matches_cpu(toy_bundle: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider here")
    texts = ["ggg", "bb", "好差", "xyz"]
    gpu = Classifier.load(toy_bundle, Variant(precision="fp32", device="cuda"))
    assert gpu.describe()["device"] == "cuda" and "CUDAExecutionProvider" in gpu.describe()["providers"]
    cpu = Classifier.load(toy_bundle, Variant(precision="fp32", device="cpu"))
    np.testing.assert_allclose(gpu.predict(texts).probs, cpu.predict(texts).probs, atol=1e-5)
