"""The OpenVINO scoring backend (``--backend openvino``): a bundle's OpenVINO IR variant on the CPU.

A runner plugin of the runtime (``clsrun.runners`` entry point ``openvino``), so ``openvino`` is imported
only when this backend runs: without ``clsrun[openvino]`` the entry point fails to load and
``plugins.runner_plugin`` turns that into a :class:`DependencyError` naming the extra.

- The IR (``openvino/model*.xml``) and its weights (the ``.bin`` beside it) are both opened through
  ``bundle.file``: listed in ``clsrun.json`` and checked against their sha256 when the bundle loaded. The
  weights path is given to OpenVINO explicitly, so it reads no other file.
- One compiled model per process, with the THROUGHPUT hint, ``streams`` CPU streams and ``threads x
  streams`` threads in all: OpenVINO pins each stream's threads itself. One infer request per stream,
  handed out from a queue, so :meth:`OvRunner.run` is safe from the scoring streams (a compiled model is
  thread-safe, an infer request is not).
- Batch widths are padded with zeros to a multiple of :data:`PAD_MULTIPLE`: OpenVINO's CPU kernels run
  aligned shapes faster, and a zero is padding for both model kinds (BERT: attention mask 0; char-CNN:
  ``PAD_ID`` 0, which its convolutions mask), so the logits do not change.
- Inference precision f32 (OpenVINO would otherwise pick bf16 by itself on CPUs with AMX): the export
  gate scored the variant in f32, so that is what runs. A bf16 variant would need its own gate pass.
"""

from __future__ import annotations

import queue
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


def pad_width(inputs: dict[str, np.ndarray], multiple: int = PAD_MULTIPLE) -> dict[str, np.ndarray]:
    """``{name: (B, T)}`` padded on the right with zeros to ``(B, T')``, ``T'`` the next multiple of ``multiple``."""
    width = next(iter(inputs.values())).shape[1]
    extra = -width % multiple
    if not extra:
        return inputs
    return {name: np.pad(v, ((0, 0), (0, extra))) for name, v in inputs.items()}


class OvRunner:
    """One compiled OpenVINO model for a bundle's IR variant, shared by ``streams`` infer requests."""

    def __init__(self, bundle: Bundle, choice: Choice, threads: int, streams: int = 1) -> None:
        if choice.device != "cpu":
            raise UsageError(f"--backend openvino runs on the CPU only, not on {choice.device}")
        if choice.file is None:
            raise BundleError(f"{bundle.root}: no OpenVINO variant file was chosen")
        core = ov.Core()
        xml, weights = bundle.file(choice.file), bundle.file(openvino_weights(choice.file))
        config = {
            hints.performance_mode: hints.PerformanceMode.THROUGHPUT,
            props.num_streams: streams,
            props.inference_num_threads: threads * streams,
            hints.inference_precision: "f32",
        }
        try:
            model = core.read_model(str(xml), str(weights))
            self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as e:  # OpenVINO raises plain RuntimeErrors for a bad or foreign IR
            raise BundleError(f"{xml}: OpenVINO cannot load it: {str(e).splitlines()[0]}") from e
        self.providers = [f"openvino-{ov.__version__.split('-')[0]}-CPU"]
        self.input_names = [i.any_name for i in self.compiled.inputs]
        self.output = self.compiled.outputs[0]
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
        feeds = pad_width({n: inputs[n] for n in self.input_names})
        request = self.requests.get()  # blocks while every stream's request is busy
        try:
            request.infer(feeds)
            return np.array(request.get_tensor(self.output).data, dtype=np.float32)  # (B, C), a copy
        finally:
            self.requests.put(request)
