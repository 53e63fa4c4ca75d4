"""What a GPU runner needs from the scoring pipeline, checked on a fake device (no GPU, no torch).

The fake runner's windows behave like the torch runner's on CUDA: ``add`` only queues a batch, the logits
exist once the window is closed and ``result`` is asked for. The pipeline must close every window once,
after all its batches, ask for the logits from the writer, keep windows in input order however the
preparing threads finish, and write exactly what the synchronous path writes.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from clsrun.runtime.batching import BatchOptions
from clsrun.runtime.bundle import Bundle
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.encode_pool import Encoded, encode_texts
from clsrun.runtime.errors import UsageError
from clsrun.runtime.readers import RecordChunk
from clsrun.runtime.score import OutputOptions, score_file
from clsrun.runtime.stopping import StopRequest
from clsrun.runtime.variant import Choice, Variant, choose, default_preparers


class DeferredWindow:
    """Batches are kept, not run: the logits are computed when ``result`` is first asked for."""

    def __init__(self, device: FakeDevice, rows: int, classes: int) -> None:
        self.device, self.rows, self.classes = device, rows, classes
        self.pending: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
        self.closed = 0
        self.logits: np.ndarray | None = None

    def add(self, rows: np.ndarray, inputs: dict[str, np.ndarray]) -> None:
        assert not self.closed, "a batch was added to a closed window"
        self.device.record("add", self)
        self.pending.append((rows, inputs))

    def close(self) -> None:
        self.closed += 1
        self.device.record("close", self)

    def result(self) -> np.ndarray:
        assert self.closed == 1, f"result() of a window closed {self.closed} times"
        self.device.record("result", self)
        if self.logits is None:
            self.logits = np.zeros((self.rows, self.classes), dtype=np.float32)
            for rows, inputs in self.pending:
                self.logits[rows] = self.device.runner.run(inputs)
        return self.logits


class FakeDevice:
    """A runner whose windows run late; it records (event, window, thread name) of every call."""

    def __init__(self, runner: Any) -> None:
        self.runner, self.providers = runner, ["fake-device"]
        self.events: list[tuple[str, DeferredWindow, str]] = []
        self.lock = threading.Lock()

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.runner.run(inputs))

    def open_window(self, rows: int, classes: int) -> DeferredWindow:
        return DeferredWindow(self, rows, classes)

    def record(self, event: str, window: DeferredWindow) -> None:
        with self.lock:
            self.events.append((event, window, threading.current_thread().name))


class OutOfOrderEncoding(Classifier):
    """Encodes windows on threads and the first one last, as worker processes may finish them."""

    finished: ClassVar[list[int]] = []  # windows (counted from 0), in the order their encoding ended

    def encode_pool(self, processes: int) -> Any:
        return _SlowFirstPool(self, processes)


class _SlowFirstPool:
    def __init__(self, clf: Classifier, processes: int) -> None:
        self.clf, self.calls = clf, 0
        self.pool = ThreadPoolExecutor(processes)

    def submit(self, texts: list[str]) -> Future[Encoded]:
        index, self.calls = self.calls, self.calls + 1

        def encode() -> Encoded:
            if index == 0:
                time.sleep(0.5)
            encoded = encode_texts(self.clf.encoder, self.clf.bundle.spec.normalization, texts)
            OutOfOrderEncoding.finished.append(index)
            return encoded

        return self.pool.submit(encode)

    def __enter__(self) -> _SlowFirstPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown()


def _texts(path: Path, n: int) -> Path:
    rng = np.random.default_rng(1)
    pool = ["g" * k + "b" * (k % 3) for k in range(1, 40)] + ["好" * 30, "差差", "ybx"]
    pacsv.write_csv(pa.table({"text": [pool[i] for i in rng.integers(0, len(pool), size=n)]}), path)
    return path


def _scoring_windows(device: FakeDevice) -> list[DeferredWindow]:
    """The windows of a run in order of their first event, after the pipeline's warm-up window (closed
    without a batch and read back in the calling thread, before any stage starts)."""
    warm_up, *windows = list(dict.fromkeys(w for _, w, _ in device.events))
    assert [(e, t) for e, w, t in device.events if w is warm_up] == [
        ("close", "MainThread"),
        ("result", "MainThread"),
    ]
    return windows


def test_a_device_runner_writes_what_the_synchronous_path_writes(tmp_path: Path, toy_bundle: Path) -> None:
    src = _texts(tmp_path / "in.csv", 3000)
    batching = BatchOptions(window=400, batch_tokens=600)
    plain = Classifier.load(toy_bundle, Variant(threads=1), batching)
    a = score_file(src, tmp_path / "a.csv", plain, options=OutputOptions(probs=True))
    device = FakeDevice(plain.runner)
    fields = {f.name: getattr(plain, f.name) for f in dataclasses.fields(plain)}
    clf = OutOfOrderEncoding(**{**fields, "runner": device, "preparers": 3})
    OutOfOrderEncoding.finished.clear()
    b = score_file(src, tmp_path / "b.csv", clf, options=OutputOptions(probs=True))
    assert a.output.read_bytes() == b.output.read_bytes()  # same rows, same order, same scores
    finished = OutOfOrderEncoding.finished
    assert finished[0] != 0 and sorted(finished) == list(range(8))  # window 0 was encoded late
    windows = _scoring_windows(device)
    assert len(windows) == 8
    adds = [w for e, w, _ in device.events if e == "add"]
    assert adds == sorted(adds, key=windows.index), "batches reached the device out of window order"
    for w in windows:
        mine = [(e, thread) for e, ww, thread in device.events if ww is w]
        kinds = [e for e, _ in mine]
        assert kinds == ["add"] * kinds.count("add") + ["close", "result"]  # closed once, after every batch
        assert mine[-1][1] == "clsrun-write"  # only the writer waits for the logits


def test_windows_encoded_in_worker_processes_score_as_in_one_thread(tmp_path: Path, toy_bundle: Path) -> None:
    src = _texts(tmp_path / "in.csv", 2000)
    blank = pacsv.read_csv(src).column("text").to_pylist()
    blank[5] = "\u3000\t"  # empty only after normalising: an error row, in a worker too
    pacsv.write_csv(pa.table({"text": blank}), src)
    plain = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=300, batch_tokens=600))
    a = score_file(src, tmp_path / "a.csv", plain, options=OutputOptions(probs=True))
    b = score_file(
        src,
        tmp_path / "b.csv",
        dataclasses.replace(plain, preparers=2, encode_in_threads=False),  # processes, as on CUDA
        options=OutputOptions(probs=True),
    )
    assert a.output.read_bytes() == b.output.read_bytes()
    assert b.manifest["error"] == 1
    threads = dataclasses.replace(plain, preparers=3, encode_in_threads=True)  # the n-gram way on CPU
    c = score_file(src, tmp_path / "c.csv", threads, options=OutputOptions(probs=True))
    assert c.output.read_bytes() == a.output.read_bytes()


def test_an_encode_pool_gives_what_encoding_here_gives(toy_bundle: Path) -> None:
    clf = dataclasses.replace(Classifier.load(toy_bundle, Variant(threads=1)), encode_in_threads=False)
    texts = ["ggb", "  ", "好好差", "x" * 50]
    here = encode_texts(clf.encoder, clf.bundle.spec.normalization, texts)
    assert here.kept.tolist() == [0, 2, 3]
    with clf.encode_pool(2) as pool:
        there = [pool.submit(texts), pool.submit(texts[2:])]
        got, part = there[0].result(), there[1].result()
    assert np.array_equal(got.kept, here.kept) and np.array_equal(got.tokens.ids, here.tokens.ids)
    assert np.array_equal(got.tokens.offsets, here.tokens.offsets) and part.kept.tolist() == [0, 1]


def test_an_empty_window_is_closed_too(tmp_path: Path, toy_bundle: Path) -> None:
    path = tmp_path / "blank.csv"
    pacsv.write_csv(pa.table({"text": ["", "  ", None, "gg"]}), path)
    plain = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=3))
    device = FakeDevice(plain.runner)
    result = score_file(path, None, dataclasses.replace(plain, runner=device))
    windows = _scoring_windows(device)
    assert [[e for e, w, _ in device.events if w is window] for window in windows] == [
        ["close"],  # three rows that cannot be scored: no batch, and no logits to wait for
        ["add", "close", "result"],
    ]
    assert result.manifest["ok"] == 1 and result.manifest["error"] == 3


def test_predict_and_score_records_close_the_window(toy_bundle: Path) -> None:
    plain = Classifier.load(toy_bundle, Variant(threads=2, streams=2), BatchOptions(batch_tokens=8))
    device = FakeDevice(plain.runner)
    texts = ["g" * k or "b" for k in range(60)]
    fake = dataclasses.replace(plain, runner=device)
    assert fake.predict(texts).labels == plain.predict(texts).labels
    assert [e for e, _, _ in device.events].count("close") == 1


# ---------------------------------------------------------------------------- choosing the GPU path


class FakeTorch:
    """The torch runner plugin on a machine with a GPU."""

    consulted = 0

    def __init__(self, *args: Any) -> None:
        raise AssertionError("choose() never opens a runner")

    @staticmethod
    def precisions(device: str) -> tuple[str, ...]:
        return {"cpu": ("fp32", "bf16"), "cuda": ("fp16", "fp32", "bf16")}[device]

    @classmethod
    def cuda_available(cls) -> bool:
        cls.consulted += 1
        return True


@pytest.fixture
def gpu_machine(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """An NVIDIA GPU, onnxruntime without its CUDA provider, torch seeing CUDA (all faked)."""
    import clsrun.runtime.variant as variant

    machine: dict[str, Any] = {"gpu": True, "providers": ["CPUExecutionProvider"]}
    FakeTorch.consulted = 0
    monkeypatch.setattr(variant, "nvidia_gpu_present", lambda: machine["gpu"])
    monkeypatch.setattr(variant, "ort_providers", lambda: machine["providers"])
    monkeypatch.setattr(variant, "runner_plugin", lambda name: FakeTorch)
    return machine


def test_auto_scores_on_the_gpu_with_torch_when_onnxruntime_cannot(
    gpu_machine: dict[str, Any], toy_bundle: Path
) -> None:
    bundle = Bundle.load(toy_bundle)  # exported: fp32 and int8 passed
    assert choose(bundle) == Choice("torch", "fp16", "cuda", None)
    assert choose(bundle, Variant(precision="bf16")) == Choice("torch", "bf16", "cuda", None)
    assert choose(bundle, Variant(device="cuda", compile=True)) == Choice(
        "torch", "fp16", "cuda", None, compile=True
    )
    # what only onnxruntime runs, or a CPU the user asked for, stays on onnxruntime
    assert choose(bundle, Variant(precision="int8")).backend == "onnx"
    on_cpu = choose(bundle, Variant(device="cpu"))
    assert (on_cpu.backend, on_cpu.precision, on_cpu.device) == ("onnx", "int8", "cpu")


def test_a_gpu_scores_a_bundle_with_no_exported_model_on_torch_without_a_hint_to_export(
    gpu_machine: dict[str, Any], make_bundle: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    """On CUDA eager PyTorch is the fast path: the CPU's "run clsrun export first" note would mislead."""
    bundle = Bundle.load(make_bundle("unexported", passed={"fp32": False, "int8": False}))
    assert choose(bundle) == Choice("torch", "fp16", "cuda", None)
    assert "never exported" not in caplog.text
    gpu_machine["gpu"] = False  # no GPU: the same bundle still runs on torch, now with the hint
    assert choose(bundle).backend == "torch" and "was never exported" in caplog.text


def test_auto_keeps_onnxruntime_where_it_has_the_gpu_or_there_is_none(
    gpu_machine: dict[str, Any], toy_bundle: Path
) -> None:
    bundle = Bundle.load(toy_bundle)
    gpu_machine["providers"] = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    on_gpu = choose(bundle)
    assert (on_gpu.backend, on_gpu.precision, on_gpu.device, on_gpu.file) == (
        "onnx",
        "fp32",
        "cuda",
        "onnx/model.onnx",
    )
    gpu_machine.update(gpu=False, providers=["CPUExecutionProvider"])
    assert choose(bundle).backend == "onnx"
    assert FakeTorch.consulted == 0  # no GPU device: torch is never imported to decide
    with pytest.raises(UsageError, match="--compile: this bundle runs on onnxruntime here"):
        choose(bundle, Variant(compile=True))
    with pytest.raises(UsageError, match="--compile compiles the eager PyTorch model"):
        Variant(backend="onnx", compile=True)


def test_gpu_presence_is_read_from_the_device_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import clsrun.runtime.machine as machine

    monkeypatch.setattr(machine, "DEV", tmp_path)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    (tmp_path / "nvidiactl").touch()
    assert not machine.nvidia_gpu_present()  # the control device alone is no GPU
    (tmp_path / "nvidia0").touch()
    assert machine.nvidia_gpu_present()
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert not machine.nvidia_gpu_present()


def test_windows_are_prepared_in_parallel_only_for_a_gpu() -> None:
    cpu, cuda = Choice("onnx", "int8", "cpu", "f"), Choice("torch", "fp16", "cuda", None)
    assert default_preparers(cpu, 16) == 1  # the cores run the model
    # an n-gram bundle's encoding bounds it on CPU: two windows at once (in threads), given two cores
    assert (default_preparers(cpu, 2, "ngram"), default_preparers(cpu, 1, "ngram")) == (2, 1)
    assert default_preparers(cpu, 16, "bert") == 1 and default_preparers(cuda, 16, "ngram") == 4
    assert (default_preparers(cuda, 16), default_preparers(cuda, 64), default_preparers(cuda, 2)) == (4, 4, 1)


def test_each_encoding_process_runs_the_tokenizer_threads_it_is_given(
    toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)
    loaded = Classifier.load(toy_bundle, Variant(threads=1))
    clf = dataclasses.replace(loaded, encode_threads=3, encode_in_threads=False)
    with clf.encode_pool(2) as pool:
        assert pool.submit(["ggb"]).result().kept.tolist() == [0]  # a worker has started and encoded
        seen = pool.executor.submit(os.getenv, "RAYON_NUM_THREADS").result()
    assert seen == "3"
    assert "RAYON_NUM_THREADS" not in os.environ  # set in the workers only


def test_a_broken_encoding_pool_is_a_stop_when_a_signal_asked_for_one(
    toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``kill -TERM -PGID`` ends the encoding workers too: the pool breaks, and the run stops as asked
    (resumable) instead of failing; a pool broken for no asked-for reason is the run's error."""
    import clsrun.runtime.pipeline as pipeline

    clf = Classifier.load(toy_bundle, Variant(threads=1))
    window = RecordChunk(0, None, ["ggb"], [""])
    broken: Future[Encoded] = Future()
    broken.set_exception(BrokenProcessPool("a worker process ended abruptly"))
    request = StopRequest()
    stopping = pipeline.Pipeline(clf, None, False, None, request)  # type: ignore[arg-type]
    threading.Timer(0.2, request.set, args=(signal.SIGTERM,)).start()  # noted just after the pool broke
    assert stopping._prepare(window, broken) is None
    monkeypatch.setattr(pipeline, "BROKEN_POOL_GRACE_S", 0.3)
    failing = pipeline.Pipeline(clf, None, False, None, StopRequest())  # type: ignore[arg-type]
    with pytest.raises(BrokenProcessPool):
        failing._prepare(window, broken)
    done: Future[Encoded] = Future()
    done.set_result(encode_texts(clf.encoder, clf.bundle.spec.normalization, ["ggb"]))
    prepared = failing._prepare(window, done)
    assert prepared is not None and prepared.valid.tolist() == [0]


def test_int8_of_a_bundle_never_exported_is_one_line_naming_the_export(
    gpu_machine: dict[str, Any], make_bundle: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    """It was a note to export, then "--precision int8 is not available with --backend torch", a backend
    the user never named."""
    gpu_machine["gpu"] = False
    bundle = Bundle.load(make_bundle("unexported", passed={"fp32": False, "int8": False}))
    with pytest.raises(UsageError, match=r"--precision int8: .*unexported was never exported.*clsrun export"):
        choose(bundle, Variant(precision="int8"))
    assert "never exported" not in caplog.text  # the error says it; no second line
