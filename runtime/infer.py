"""Inference: run batches through the chosen variant (onnxruntime here, other backends as plugins).

- :class:`OrtRunner`: an onnxruntime session with thread counts set from the machine; on CUDA the
  TensorRT provider where installed, then CUDA with IO binding; the ONNX file's external data is checked
  to stay inside the bundle before the session is created.
- Other backends are plugins, found through the ``clsrun.runners`` entry point group
  (``plugins.runner_plugin``): the torch runner lives with the trainer
  (``clsrun.trainer.torch_runner:TorchRunner``, installed with ``clsrun[train]``), so the runtime never
  imports torch or the trainer. The OpenVINO runner is a plugin too (``ov_runner.py``, with
  ``clsrun[openvino]``), so ``openvino`` is imported only when it runs.

The runner contract (:class:`Runner`): ``run({input name: (B, T) array}) -> logits (B, C) float32``,
safe to call from several threads at once (``score.py`` runs several batches concurrently). A runner whose
graph takes a sparse matrix names those inputs in ``sparse_inputs`` and is given
:class:`~clsrun.runtime.encode.SparseRows` for them (the n-gram model's graph, ``export/ngram_graph.py``).

Scoring fills one window's logits batch by batch through a :class:`WindowLogits`. A runner on a device
that works asynchronously (the torch runner on CUDA) opens its own (``runner.open_window``): batches are
queued without waiting for the device, the logits stay on the device and come back in one copy per
window. Every other runner gets :class:`HostWindow`: each batch runs at once into a host array.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from clsrun.runtime.encode import ModelInputs, SparseRows
from clsrun.runtime.errors import BundleError
from clsrun.runtime.machine import ort_providers
from clsrun.runtime.plugins import runner_plugin

if TYPE_CHECKING:
    from clsrun.runtime.bundle import Bundle
    from clsrun.runtime.variant import Choice


class Runner(Protocol):
    """Runs batches: ``{input name: (B, T) array}`` -> logits ``(B, C)`` float32.

    ``run`` must be safe to call from several threads at once (onnxruntime's is; eager PyTorch in
    inference mode is). A runner may also have ``sparse_inputs`` (a frozenset of input names): those
    inputs come as :class:`~clsrun.runtime.encode.SparseRows`, unpadded (``Classifier`` asks the encoder
    for them; a runner without the attribute takes padded arrays only).
    """

    providers: list[str]  # what executes the model, for the manifest (e.g. "CPUExecutionProvider")

    def run(self, inputs: ModelInputs) -> np.ndarray: ...


class WindowLogits(Protocol):
    """The ``(m, C)`` logits of one window's ``m`` scored rows, filled batch by batch.

    ``add`` may return before the device has run the batch; ``close`` says no batch follows (a device
    starts copying the logits back); ``result`` waits for them. Several threads may ``add`` disjoint rows
    of one window at once (``--streams``); ``close`` and ``result`` are called once each, after every
    ``add``, ``result`` possibly from another thread.
    """

    def add(self, rows: np.ndarray, inputs: ModelInputs) -> None:
        """Score one batch: ``inputs`` (``Runner.run``'s) are window rows ``rows`` (B,)."""
        ...

    def close(self) -> None: ...

    def result(self) -> np.ndarray:
        """(m, C) float32 logits in window row order."""
        ...


class HostWindow:
    """A window scored batch by batch by ``run`` (a runner's, usually checked), each batch finished at once."""

    def __init__(self, run: Callable[[ModelInputs], np.ndarray], rows: int, classes: int) -> None:
        self.run = run
        self.logits = np.zeros((rows, classes), dtype=np.float32)  # (m, C)

    def add(self, rows: np.ndarray, inputs: ModelInputs) -> None:
        self.logits[rows] = self.run(inputs)  # (B, C); streams write disjoint rows

    def close(self) -> None:
        pass

    def result(self) -> np.ndarray:
        return self.logits


class OrtRunner:
    """An onnxruntime session for one ONNX variant of a bundle."""

    def __init__(self, bundle: Bundle, choice: Choice, threads: int) -> None:
        import onnxruntime as ort

        from clsrun.runtime.onnx_files import check_external_data

        assert choice.file is not None, "an onnx choice always names a file"
        path = check_external_data(bundle, choice.file)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle workers sleep instead of spinning: the reader and writer threads need those cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        available = ort_providers()
        if choice.device == "cuda":
            wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
            providers = [p for p in wanted if p in available]
        else:
            providers = ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own untyped errors for a bad graph
            raise BundleError(f"{path}: onnxruntime cannot load it: {str(e).splitlines()[0]}") from e
        self.providers = list(self.session.get_providers())
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.sparse_inputs = sparse_inputs(self.session)
        self._cpu = ort.OrtDevice.make("cpu", 0)  # where sparse inputs go (_run_sparse)
        self.output_name = self.session.get_outputs()[0].name
        self.io_binding = choice.device == "cuda" and "CUDAExecutionProvider" in self.providers

    def run(self, inputs: ModelInputs) -> np.ndarray:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise BundleError(f"the ONNX graph needs inputs {missing}, the encoder gives {sorted(inputs)}")
        if self.sparse_inputs:
            return self._run_sparse(inputs)
        if self.io_binding:
            return self._run_bound(inputs)
        out = self.session.run([self.output_name], {n: inputs[n] for n in self.input_names})[0]
        return np.asarray(out, dtype=np.float32)  # (B, C); fp16 variants give float16

    def _run_sparse(self, inputs: ModelInputs) -> np.ndarray:
        """A graph with a sparse input: ``SparseRows`` go in as onnxruntime CSR tensors (which reference
        the arrays, not copy them), on the CPU, where its sparse kernels are."""
        import onnxruntime as ort

        feeds = {}
        for name in self.input_names:
            value = inputs[name]
            if isinstance(value, SparseRows):
                value = _with_a_value(value)
                shape = np.array([len(value), value.width], dtype=np.int64)
                csr = ort.SparseTensor.sparse_csr_from_numpy(
                    shape, value.values, value.columns, value.offsets, self._cpu
                )
                feeds[name] = ort.OrtValue.ort_value_from_sparse_tensor(csr)
            else:
                feeds[name] = ort.OrtValue.ortvalue_from_numpy(value)
        out = self.session.run_with_ort_values([self.output_name], feeds)[0].numpy()
        return np.asarray(out, dtype=np.float32)  # (B, C)

    def _run_bound(self, inputs: ModelInputs) -> np.ndarray:
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name in self.input_names:
            value = inputs[name]
            assert isinstance(value, np.ndarray), "a graph with sparse inputs runs without IO binding"
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
        binding.bind_output(self.output_name, "cuda")
        self.session.run_with_iobinding(binding)
        return np.asarray(binding.copy_outputs_to_cpu()[0], dtype=np.float32)  # (B, C)


def _with_a_value(rows: SparseRows) -> SparseRows:
    """``rows``, or when none of them holds a value (texts with no n-gram the model knows: emoji only, or
    another script), the same all-zero matrix spelt with one explicit 0 at row 0, column 0: onnxruntime
    refuses a CSR tensor with no values ("Inner and Outer indices must either be both zero or non-zero"),
    and a zero adds nothing, so each row still scores as a text without features does (the bias)."""
    if len(rows.values):
        return rows
    offsets = np.ones(len(rows) + 1, dtype=np.int64)
    offsets[0] = 0
    return SparseRows(np.zeros(1, np.float32), np.zeros(1, np.int64), offsets, rows.width)


def sparse_inputs(session: Any) -> frozenset[str]:
    """Names of an onnxruntime session's inputs that take a sparse tensor (``encode.SparseRows``)."""
    return frozenset(i.name for i in session.get_inputs() if i.type.startswith("sparse_tensor"))


def open_runner(bundle: Bundle, choice: Choice, threads: int, streams: int = 1) -> Runner:
    """The runner for ``choice`` with ``threads`` per stream: onnxruntime here (one session the streams
    share), any other backend from its plugin (OpenVINO sizes its own CPU streams from ``streams``)."""
    if choice.backend == "onnx":
        return OrtRunner(bundle, choice, threads)
    return runner_plugin(choice.backend)(bundle, choice, threads, streams)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(B, C)`` logits in float32 (probabilities are never computed in the graph)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted
