"""Inference: choose the variant to run and run padded batches through it (onnxruntime or eager PyTorch).

:func:`choose` reads the bundle's export report and only ever picks a variant whose ``passed`` is true:
on CPU int8 (fastest on this class of machine) else fp32; on CUDA fp16 else fp32. A bundle that was never
exported runs on the torch backend when torch is installed. :func:`open_runner` builds the runner:
- :class:`OrtRunner`: an onnxruntime session with thread counts set from the machine; on CUDA the
  TensorRT provider where installed, then CUDA with IO binding; the ONNX file's external data is checked
  to stay inside the bundle before the session is created.
- :class:`TorchRunner`: eager PyTorch through ``clsrun.trainer.models.load_model`` (imported lazily, so
  the runtime never needs torch unless this backend is asked for).
Every runner maps ``{input name: (B, T) int64}`` to logits ``(B, C)`` float32, and may be called from
several threads at once (``score.py`` runs :func:`default_streams` batches concurrently).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from clsrun.runtime.errors import BundleError, UsageError

if TYPE_CHECKING:
    from clsrun.runtime.bundle import Bundle

BACKENDS = ("auto", "onnx", "torch")
PRECISIONS = ("auto", "fp32", "fp16", "int8")
DEVICES = ("auto", "cpu", "cuda")
# Preference when --precision auto: int8 is the fastest on CPU, fp16 on a GPU.
_PREFERENCE = {"cpu": ("int8", "fp32", "fp16"), "cuda": ("fp16", "fp32", "int8")}


@dataclass(frozen=True)
class Choice:
    """What will run: recorded in the manifest and in ``Classifier.describe()``."""

    backend: str  # "onnx" | "torch"
    precision: str  # "fp32" | "fp16" | "int8"
    device: str  # "cpu" | "cuda"
    file: str | None  # bundle-relative ONNX file, None for torch


def default_streams(choice: Choice, threads: int) -> int:
    """How many batches ``clsrun predict`` runs at once when not told: one per thread for ONNX on CPU.

    Why: each stream runs its batch on one core with no hand-offs between threads, where one session with
    several intra-op threads splits every operator across them and waits for all at each of its (hundreds
    of) nodes. Measured on 2 cores, onnxruntime 1.32, inference only: char-CNN int8 46,600 vs 33,900
    rows/s; MiniLM int8 on short texts 388 vs 372 rows/s. The streams share one session (onnxruntime's
    ``run`` is thread-safe), so the weights are in memory once; each holds one batch of activations.
    On CUDA and for the torch backend: one stream with all the threads.
    """
    return max(1, threads) if choice.backend == "onnx" and choice.device == "cpu" else 1


def _ort_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def passed_variants(bundle: Bundle) -> dict[str, str]:
    """``{precision: file}`` of the exported variants that passed the export gate and are in the bundle."""
    report = bundle.export_report()
    if not report:
        return {}
    variants = report.get("variants") or {}
    return {
        name: str(v["file"])
        for name, v in variants.items()
        if isinstance(v, dict) and v.get("passed") is True and v.get("file") and bundle.has(str(v["file"]))
    }


def choose(bundle: Bundle, backend: str = "auto", precision: str = "auto", device: str = "auto") -> Choice:
    """Pick backend, precision, device and file as the options ask; refuse what the bundle cannot do."""
    for flag, value, allowed in (
        ("--backend", backend, BACKENDS),
        ("--precision", precision, PRECISIONS),
        ("--device", device, DEVICES),
    ):
        if value not in allowed:
            raise UsageError(f"{flag} {value!r}: choose one of {', '.join(allowed)}")
    passed = passed_variants(bundle)
    if backend == "auto":
        if passed:
            backend = "onnx"
        elif importlib.util.find_spec("torch") is not None:
            backend = "torch"
        else:
            raise BundleError(
                f"{bundle.root}: no exported ONNX model that passed the export gate, and torch is not "
                f"installed for the torch backend; run `clsrun export {bundle.root}` first"
            )
    if backend == "onnx":
        if not passed:
            raise BundleError(
                f"{bundle.root}: no exported ONNX model that passed the export gate; "
                f"run `clsrun export {bundle.root}` first, or use --backend torch"
            )
        if device == "auto":
            device = "cuda" if "CUDAExecutionProvider" in _ort_providers() else "cpu"
        elif device == "cuda" and "CUDAExecutionProvider" not in _ort_providers():
            raise UsageError(
                "--device cuda: onnxruntime has no CUDA provider here; pip install 'clsrun[gpu]'"
            )
        if precision == "auto":
            precision = next(p for p in _PREFERENCE[device] if p in passed) if passed else "fp32"
        if precision not in passed:
            raise UsageError(
                f"--precision {precision}: this bundle has no {precision} variant that passed the export "
                f"gate; available: {', '.join(sorted(passed))}"
            )
        return Choice("onnx", precision, device, passed[precision])
    # torch backend
    from clsrun.runtime.errors import require

    require("torch", "train")
    import torch  # only reached for --backend torch, or auto on a bundle that was never exported

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if precision == "auto":
        precision = "fp16" if device == "cuda" else "fp32"
    if precision == "int8" or (precision == "fp16" and device == "cpu"):
        raise UsageError(f"--precision {precision} is not available with --backend torch on {device}")
    return Choice("torch", precision, device, None)


class Runner(Protocol):
    """Runs padded batches: ``{input name: (B, T) int64}`` -> logits ``(B, C)`` float32."""

    providers: list[str]

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...


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
        available = _ort_providers()
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
        self.output_name = self.session.get_outputs()[0].name
        self.io_binding = choice.device == "cuda" and "CUDAExecutionProvider" in self.providers

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise BundleError(f"the ONNX graph needs inputs {missing}, the encoder gives {sorted(inputs)}")
        if self.io_binding:
            return self._run_bound(inputs)
        out = self.session.run([self.output_name], {n: inputs[n] for n in self.input_names})[0]
        return np.asarray(out, dtype=np.float32)  # (B, C); fp16 variants give float16

    def _run_bound(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name in self.input_names:
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(inputs[name], "cuda", 0))
        binding.bind_output(self.output_name, "cuda")
        self.session.run_with_iobinding(binding)
        return np.asarray(binding.copy_outputs_to_cpu()[0], dtype=np.float32)  # (B, C)


class TorchRunner:
    """Eager PyTorch on the bundle's safetensors weights (``clsrun.trainer.models.load_model``)."""

    def __init__(self, bundle: Bundle, choice: Choice, threads: int) -> None:
        import torch

        from clsrun.trainer.models import load_model  # type: ignore[import-not-found,unused-ignore]

        torch.set_num_threads(threads)
        self._torch = torch
        model: Any = load_model(bundle).eval().to(choice.device)
        if choice.precision == "fp16":
            model = model.half()
        self.model = model
        self.device = choice.device
        self.providers = [f"torch-{torch.__version__}-{choice.device}"]

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            feed = {k: torch.from_numpy(v).to(self.device) for k, v in inputs.items()}
            logits = self.model(**feed)  # (B, C)
            return np.asarray(logits.float().cpu().numpy(), dtype=np.float32)


def open_runner(bundle: Bundle, choice: Choice, threads: int) -> Runner:
    """The runner for ``choice``."""
    if choice.backend == "torch":
        return TorchRunner(bundle, choice, threads)
    return OrtRunner(bundle, choice, threads)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(B, C)`` logits in float32 (probabilities are never computed in the graph)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted
