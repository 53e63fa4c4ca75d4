"""The torch scoring backend (``--backend torch``): eager PyTorch on a bundle's safetensors weights.

A runner plugin of the runtime: pyproject registers it in the ``clsrun.runners`` entry point group, and
``clsrun.runtime.infer.runner_plugin("torch")`` finds it, so the runtime itself never imports torch or the
trainer. It runs the model ``clsrun.trainer.models.load_model`` rebuilds (the reference the export gate
compares the ONNX variants with), in fp32, bf16 (CPU or CUDA) or fp16 (CUDA).

Contract (``clsrun.runtime.infer.Runner``): ``run({input name: (B, T) int64}) -> logits (B, C) float32``,
safe from several threads at once (inference mode, no state changes between calls).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from clsrun.trainer.models import load_model

if TYPE_CHECKING:
    from clsrun.runtime.bundle import Bundle
    from clsrun.runtime.variant import Choice

# Scoring precisions per device; the first is what --precision auto picks. fp16 on CPU is left out:
# PyTorch's CPU kernels emulate it, slower than fp32. int8 is an exported ONNX variant only.
_PRECISIONS = {"cpu": ("fp32", "bf16"), "cuda": ("fp16", "fp32", "bf16")}
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchRunner:
    """Eager PyTorch on ``choice.device`` with the weights cast to ``choice.precision``."""

    def __init__(self, bundle: Bundle, choice: Choice, threads: int, streams: int = 1) -> None:
        torch.set_num_threads(threads)
        model: Any = load_model(bundle).eval().to(choice.device, dtype=_DTYPES[choice.precision])
        self.model = model
        self.device = choice.device
        self.providers = [f"torch-{torch.__version__}-{choice.device}"]

    @staticmethod
    def precisions(device: str) -> tuple[str, ...]:
        """Precisions this runner takes on ``device``; the first is the default."""
        return _PRECISIONS[device]

    @staticmethod
    def cuda_available() -> bool:
        return bool(torch.cuda.is_available())

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            feed = {k: torch.from_numpy(v).to(self.device) for k, v in inputs.items()}
            logits = self.model(**feed)  # (B, C) in the model's dtype
            return np.asarray(logits.float().cpu().numpy(), dtype=np.float32)
