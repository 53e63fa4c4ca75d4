"""The torch scoring backend: a runner plugin on the trainer side, found by the runtime through an entry point."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clsrun.runtime.batching import BatchOptions
from clsrun.runtime.bundle import Bundle
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.errors import UsageError
from clsrun.runtime.plugins import runner_plugin
from clsrun.runtime.readers import RecordChunk
from clsrun.runtime.variant import Choice, Variant
from clsrun.trainer.torch_runner import PinnedRing, TorchRunner, TorchWindow, host_threads

TEXTS = ["这个房间很好，服务棒", "太差了，讨厌", "it was good", "x" * 100, "好"]


def test_the_runtime_finds_the_torch_runner_through_its_entry_point() -> None:
    assert runner_plugin("torch") is TorchRunner


def test_bf16_is_a_precision_of_the_torch_runner(tiny_charcnn_bundle: Path) -> None:
    fp32 = Classifier.load(tiny_charcnn_bundle, Variant(backend="torch", precision="fp32", threads=1))
    bf16 = Classifier.load(tiny_charcnn_bundle, Variant(backend="torch", precision="bf16", threads=1))
    assert (bf16.choice.backend, bf16.choice.precision, bf16.choice.device) == ("torch", "bf16", "cpu")
    assert bf16.describe()["precision"] == "bf16"
    a, b = fp32.predict(TEXTS), bf16.predict(TEXTS)
    assert b.probs.dtype == np.float32  # logits come back as float32 whatever the weights are
    np.testing.assert_allclose(a.probs, b.probs, atol=0.05)  # bf16 keeps 8 bits of mantissa


def test_auto_on_cpu_is_fp32_and_int8_is_refused(tiny_charcnn_bundle: Path) -> None:
    auto = Classifier.load(tiny_charcnn_bundle, Variant(backend="torch", threads=1))
    assert auto.choice.precision == "fp32" and auto.streams == 1  # one stream with every thread
    with pytest.raises(UsageError, match="--precision int8 is not available with --backend torch on cpu"):
        Classifier.load(tiny_charcnn_bundle, Variant(backend="torch", precision="int8"))


def test_a_never_exported_bundle_runs_on_torch_with_a_hint_to_export(
    tiny_charcnn_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    auto = Classifier.load(tiny_charcnn_bundle, Variant(threads=1))
    assert auto.choice.backend == "torch"
    assert f"note: {tiny_charcnn_bundle} was never exported: it runs as eager PyTorch" in caplog.text
    assert f"run `clsrun export {tiny_charcnn_bundle}` once first" in caplog.text


# ------------------------------------------------------------------ the CUDA path, without a GPU


class RecordingEvent:
    """Stands for a CUDA event: logs when it is recorded and waited for."""

    def __init__(self, log: list[tuple[str, int]], slot: int) -> None:
        self.log, self.slot = log, slot

    def record(self) -> None:
        self.log.append(("record", self.slot))

    def synchronize(self) -> None:
        self.log.append(("wait", self.slot))


def test_on_cuda_torch_keeps_one_cpu_thread_and_leaves_the_cores_to_encoding() -> None:
    assert host_threads(torch.device("cuda"), 16) == 1
    assert host_threads(torch.device("cpu"), 16) == 16  # on CPU the threads run the model


def _ring(slots: int, log: list[tuple[str, int]]) -> PinnedRing:
    made = iter(range(slots))
    return PinnedRing(
        torch.device("cpu"), slots=slots, pin=False, event=lambda: RecordingEvent(log, next(made))
    )


def test_the_pinned_ring_reuses_its_buffers_and_waits_before_overwriting_one() -> None:
    log: list[tuple[str, int]] = []
    ring = _ring(2, log)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 100, size=(4, 6)) for _ in range(3)]
    staged = [ring.stage({"input_ids": b})["input_ids"] for b in batches]
    # slot 0 held batch 0 and is written again for batch 2: the same memory, after waiting for its event
    assert staged[2].data_ptr() == staged[0].data_ptr() != staged[1].data_ptr()
    assert log == [("wait", 0), ("record", 0), ("wait", 1), ("record", 1), ("wait", 0), ("record", 0)]
    np.testing.assert_array_equal(staged[2].numpy(), batches[2])
    batches[2][:] = -1  # the caller may reuse its arrays at once: the ring holds a copy
    assert (staged[2].numpy() >= 0).all()


def test_the_pinned_ring_grows_for_a_bigger_batch_and_keeps_the_buffer_after() -> None:
    ring = _ring(1, [])
    small = ring.stage({"input_ids": np.ones((2, 3), dtype=np.int64)})["input_ids"]
    big = ring.stage({"input_ids": np.ones((64, 40), dtype=np.int64)})["input_ids"]  # 2560 > 1024 held
    again = ring.stage({"input_ids": np.ones((8, 9), dtype=np.int64)})["input_ids"]
    assert big.data_ptr() != small.data_ptr() and again.data_ptr() == big.data_ptr()
    assert ring.slots[0].buffers["input_ids"].numel() == 4096  # the next power of two
    assert again.shape == (8, 9) and again.dtype == torch.int64


def _inputs(clf: Classifier, texts: list[str]) -> tuple[Any, list[np.ndarray]]:
    prepared = clf.prepare(RecordChunk(0, None, list(texts), [""] * len(texts)))
    return prepared, prepared.batches


def test_a_window_kept_on_the_device_equals_scoring_batch_by_batch(tiny_bert_bundle: Path) -> None:
    texts = [f"the movie was {'very ' * (k % 7)}good" if k % 2 else "a bad film 差" for k in range(40)]
    clf = Classifier.load(
        tiny_bert_bundle, Variant(backend="torch", threads=1), BatchOptions(batch_tokens=96)
    )
    runner = clf.runner
    assert isinstance(runner, TorchRunner)
    prepared, batches = _inputs(clf, texts)
    assert len(batches) > 3
    expected = np.concatenate(
        [runner.run(clf.inputs(prepared.tokens, b)) for b in batches]
    )  # (n, C), batch order
    order = np.concatenate(batches)
    # the CUDA path on a CPU: inputs staged through the ring, batches queued under the lock
    runner.ring, runner.queue_lock = _ring(2, []), threading.Lock()
    window = runner.open_window(len(texts), len(clf.labels))
    for b in reversed(batches):  # any order: each batch lands in its own rows
        window.add(b, clf.inputs(prepared.tokens, b))
    window.close()
    logits = window.result()
    assert logits.shape == (40, 2) and logits.dtype == np.float32
    np.testing.assert_allclose(logits[order], expected, rtol=1e-5, atol=1e-6)


def test_predict_on_the_torch_backend_fills_windows_in_input_order(tiny_bert_bundle: Path) -> None:
    texts = ["the film was very good", "a bad movie", "好 电影", "the movie was awful"] * 25
    eager = Classifier.load(
        tiny_bert_bundle, Variant(backend="torch", threads=1), BatchOptions(batch_tokens=64)
    )
    assert isinstance(eager.prepare(RecordChunk(0, None, texts[:2], ["", ""])).window, TorchWindow)
    one_batch = Classifier.load(tiny_bert_bundle, Variant(backend="torch", threads=1))
    a, b = eager.predict(texts), one_batch.predict(texts)
    assert a.labels == b.labels
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compile_wraps_the_model_and_says_so(tiny_charcnn_bundle: Path) -> None:
    choice = Choice("torch", "fp32", "cpu", None, compile=True)
    runner = TorchRunner(Bundle.load(tiny_charcnn_bundle), choice, threads=1)
    assert runner.forward is not runner.model  # compiled lazily, at the first batch (not run here)
    assert runner.providers[0].endswith("-cpu-compiled")
