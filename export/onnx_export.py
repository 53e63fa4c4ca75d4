"""Export an eager classifier to ONNX with dynamic batch and length axes.

Inputs are named as ARCHITECTURE.md fixes them (``input_ids``, ``attention_mask``, ``token_type_ids`` when
the encoder makes them) and the output is ``logits`` ``(batch, n_labels)``.

Two choices, both measured (README: Export):
- The TorchScript exporter (``dynamo=False``), not the dynamo one: on a BERT exported by dynamo,
  onnxruntime's transformer optimizer fuses neither ``Attention`` nor ``EmbedLayerNormalization``
  (the patterns it matches are those of the TorchScript graph); with TorchScript it fuses both.
- Eager attention for Hugging Face encoders (:func:`use_eager_attention`): with the default SDPA attention
  only LayerNorm and GELU fuse; with eager attention the optimizer also fuses ``Attention`` (one per layer)
  and ``EmbedLayerNormalization``, and the fused int8 graph runs much faster.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from clsrun.runtime.errors import ExportError, file_errors_of, storage_problem

OPSET = 17
OUTPUT_NAME = "logits"


class _Positional(torch.nn.Module):
    """Calls ``model(**{name: tensor})`` from positional inputs, so the ONNX inputs get our names."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True)))  # (B, n_labels)


def use_eager_attention(model: torch.nn.Module) -> int:
    """Switch every Hugging Face model inside ``model`` to eager attention; return how many were switched.

    Eager and SDPA attention compute the same function (tests check parity), but only the eager graph is
    one that onnxruntime's optimizer fuses into ``Attention``.
    """
    switched = 0
    for module in model.modules():
        setter = getattr(module, "set_attn_implementation", None)
        config = getattr(module, "config", None)
        if callable(setter) and config is not None and hasattr(config, "_attn_implementation"):
            if config._attn_implementation != "eager":
                setter("eager")
            switched += 1
    return switched


def export_onnx(
    model: torch.nn.Module, sample: dict[str, torch.Tensor], out: Path, opset: int = OPSET
) -> Path:
    """Write ``model`` (eval mode, ``forward(**sample) -> logits``) to ``out`` as one ONNX file.

    ``sample`` holds int64 ``(B, T)`` tensors, in the order the ONNX inputs will have; its values only
    trace the graph, every axis except the output's label axis is dynamic. Raises :class:`ExportError`
    when torch cannot export the model.
    """
    names = list(sample)
    if not names:
        raise ExportError("nothing to export: the encoder produced no model inputs")
    axes = {name: {0: "batch", 1: "length"} for name in names}
    axes[OUTPUT_NAME] = {0: "batch"}
    wrapper = _Positional(model, names).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad(), warnings.catch_warnings(), file_errors_of(out):
            # The TorchScript exporter is deprecated in favour of dynamo and says so; see the module doc.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                tuple(sample[n] for n in names),
                str(out),
                input_names=names,
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except OSError as e:  # the file system said no (a full disk): one line naming the file, as every write
        if storage_problem(e) is not None:
            raise
        raise ExportError(f"torch.onnx.export failed: {type(e).__name__}: {e}") from e
    except Exception as e:  # torch raises many unrelated types here; report them as one export failure
        raise ExportError(f"torch.onnx.export failed: {type(e).__name__}: {e}") from e
    return out
