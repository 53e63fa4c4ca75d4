"""The OpenVINO scoring backend (``--backend openvino``): a bundle's OpenVINO IR variant on the CPU.

A runner plugin of the runtime (``clsrun.runners`` entry point ``openvino``), so ``openvino`` is imported
only when this backend runs: without ``clsrun[openvino]`` the entry point fails to load and
``plugins.runner_plugin`` turns that into a :class:`DependencyError` naming the extra.

- The IR (``openvino/model*.xml``) and its weights (the ``.bin`` beside it) are both opened through
  ``bundle.file``: listed in ``clsrun.json`` and checked against their sha256 before OpenVINO reads them.
  The weights path is given to OpenVINO explicitly, so it reads no other file.
- One compiled model per process, with the THROUGHPUT hint, ``streams`` CPU streams and ``threads x
  streams`` threads in all: OpenVINO pins each stream's threads itself. One infer request per stream,
  handed out from a queue, so :meth:`OvRunner.run` is safe from the scoring streams (a compiled model is
  thread-safe, an infer request is not).
- Batch widths are padded with zeros to a multiple of :data:`PAD_MULTIPLE`: OpenVINO's CPU kernels run
  aligned shapes faster, and a zero is padding for both model kinds (BERT: attention mask 0; char-CNN:
  ``PAD_ID`` 0, which its convolutions mask), so the logits do not change. The runner says so
  (``width_multiple``) and the classifier plans batches on the padded widths: the CPU plugin prepares
  kernels the first time it meets an input shape, and a fresh process pays that for every shape, so
  batches of one width all get the same rows.
- What int8 leaves float (and an fp32 variant) runs in bf16 only where both hold: this CPU computes bf16
  natively (OpenVINO lists ``BF16`` among its CPU capabilities: AVX-512 BF16 or AMX), and the export gate
  passed the variant in bf16 too (its report entry's ``bf16``, scored on a CPU that has it). Elsewhere f32,
  set explicitly: OpenVINO would otherwise pick bf16 by itself on CPUs with AMX, which the gate may never
  have scored. bf16 keeps f32's exponent range, so where it passed it is the faster kernels at no cost.
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import openvino as ov
import openvino.properties as props
import openvino.properties.hint as hints

from clsrun.runtime.bundle import openvino_weights
from clsrun.runtime.errors import BundleError, UsageError

if TYPE_CHECKING:
    from clsrun.runtime.bundle import Bundle
    from clsrun.runtime.variant import Choice

PAD_MULTIPLE = 8  # batch widths are padded to a multiple of this (aligned shapes for the CPU kernels)
_PRECISIONS = ("int8", "fp32")  # the OpenVINO variants export builds (``ov-int8``, ``ov-fp32``)


def bf16_here(core: Any = None) -> bool:
    """True when OpenVINO's CPU plugin computes bf16 natively on this CPU (AVX-512 BF16 or AMX)."""
    core = core or ov.Core()
    return "BF16" in core.get_property("CPU", props.device.capabilities)


def float_precision(bundle: Bundle, choice: Choice, core: Any = None) -> str:
    """``bf16`` or ``f32``: what ``choice``'s float parts run in here (see the module docstring).

    ``choice.inference_precision`` asks for one (the export gate scoring a variant in bf16); None follows
    the export report. Either way bf16 only where this CPU has it.
    """
    wanted = choice.inference_precision
    if wanted is None:
        from clsrun.runtime.variant import report_name

        entry = ((bundle.export_report() or {}).get("variants") or {}).get(
            report_name("openvino", choice.precision)
        )
        passed = isinstance(entry, dict) and (entry.get("bf16") or {}).get("passed") is True
        wanted = "bf16" if passed else "f32"
    if wanted not in ("bf16", "f32"):
        raise UsageError(f"OpenVINO inference precision {wanted!r}: bf16 or f32")
    return "bf16" if wanted == "bf16" and bf16_here(core) else "f32"


def pad_width(inputs: dict[str, np.ndarray], multiple: int = PAD_MULTIPLE) -> dict[str, np.ndarray]:
    """``{name: (B, T)}`` padded on the right with zeros to ``(B, T')``, ``T'`` the next multiple of ``multiple``."""
    width = next(iter(inputs.values())).shape[1]
    extra = -width % multiple
    if not extra:
        return inputs
    return {name: np.pad(v, ((0, 0), (0, extra))) for name, v in inputs.items()}


class OvRunner:
    """One compiled OpenVINO model for a bundle's IR variant, shared by ``streams`` infer requests."""

    width_multiple = PAD_MULTIPLE  # run() pads batch widths to a multiple of this (batching.plan_batches)

    def __init__(self, bundle: Bundle, choice: Choice, threads: int, streams: int = 1) -> None:
        if choice.device != "cpu":
            raise UsageError(f"--backend openvino runs on the CPU only, not on {choice.device}")
        if choice.file is None:
            raise BundleError(f"{bundle.root}: no OpenVINO variant file was chosen")
        core = ov.Core()
        xml, weights = bundle.file(choice.file), bundle.file(openvino_weights(choice.file))
        self.inference_precision = float_precision(bundle, choice, core)
        config = {
            hints.performance_mode: hints.PerformanceMode.THROUGHPUT,
            props.num_streams: streams,
            props.inference_num_threads: threads * streams,
            hints.inference_precision: self.inference_precision,
        }
        try:
            model = core.read_model(str(xml), str(weights))
            self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as e:  # OpenVINO raises plain RuntimeErrors for a bad or foreign IR
            raise BundleError(f"{xml}: OpenVINO cannot load it: {str(e).splitlines()[0]}") from e
        # what ran, in the manifest: version, device and the float precision (``openvino-2026.4.0-CPU-f32``)
        self.providers = [f"openvino-{ov.__version__.split('-')[0]}-CPU-{self.inference_precision}"]
        self.input_names = [i.any_name for i in self.compiled.inputs]
        self.input_dtypes = {i.any_name: i.get_element_type().to_dtype() for i in self.compiled.inputs}
        self.output = self.compiled.outputs[0]
        self._tensors = threading.Lock()  # see run()
        self.requests: queue.Queue[Any] = queue.Queue()
        for _ in range(streams):
            self.requests.put(self.compiled.create_infer_request())

    @staticmethod
    def precisions(device: str) -> tuple[str, ...]:
        """Variants this runner takes on ``device``: the exported IR ones, on CPU only."""
        return _PRECISIONS if device == "cpu" else ()

    @staticmethod
    def cuda_available() -> bool:
        return False

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise BundleError(
                f"the OpenVINO model needs inputs {missing}, the encoder gives {sorted(inputs)}"
            )
        feeds = pad_width({n: inputs[n] for n in self.input_names}, self.width_multiple)
        request = self.requests.get()  # blocks while every stream's request is busy
        tensors = {
            n: ov.Tensor(np.ascontiguousarray(a, dtype=self.input_dtypes[n]), shared_memory=True)
            for n, a in feeds.items()
        }
        try:
            # Two scoring streams touching their requests' tensors at the same moment (setting inputs,
            # reading outputs) hung now and then under load, both threads waiting inside OpenVINO with
            # the GIL held, signals unanswered; so tensors are set and read one thread at a time, and
            # only the inference itself (which releases the GIL) runs side by side.
            with self._tensors:
                for name, tensor in tensors.items():
                    request.set_tensor(name, tensor)
            request.infer()
            with self._tensors:
                return np.array(request.get_tensor(self.output).data, dtype=np.float32)  # (B, C), a copy
        finally:
            self.requests.put(request)
