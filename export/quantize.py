"""int8 variants: dynamic quantization (default) and static QDQ calibrated on validation rows (option).

Dynamic quantization stores int8 weights and quantizes activations per batch at run time
(``DynamicQuantizeLinear`` + ``MatMulInteger``; ``QAttention`` and ``QEmbedLayerNormalization`` on a fused
BERT graph). It needs no calibration data and is what onnxruntime recommends for transformers on CPU.

Static QDQ fixes activation scales from calibration rows, which saves the run-time range computation but
can lose accuracy when the calibration rows do not cover the data. The exporter builds it next to dynamic
and keeps whichever the gate measures better (``exporter._build_int8``). It is tried by default for the
char-CNN only: convolutions under dynamic quantization become ``ConvInteger``, which onnxruntime's CPU
provider runs slower than the fp32 convolutions, while static QDQ becomes ``QLinearConv``, the fast one
(README: Export, with the figures).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from clsrun.export.quiet import quiet_onnxruntime_tools
from clsrun.runtime.errors import ExportError, UsageError

WeightType = Literal["qint8", "quint8"]


@dataclass(frozen=True)
class Int8Options:
    """The quantization choices that matter, each a trade-off the CLI explains."""

    # One scale per output channel of each weight instead of one per tensor: closer to fp32 at the same
    # speed on the models tried (README: Export), so it is the default.
    per_channel: bool = True
    # Signed int8 weights are what onnxruntime's x86 and ARM kernels are tuned for; quint8 exists for
    # older backends.
    weight_type: WeightType = "qint8"
    # 7-bit weights avoid int16 saturation in the u8 x s8 products of CPUs without VNNI. None: on when the
    # CPU has no VNNI, off otherwise.
    reduce_range: bool | None = None
    # Also build static QDQ int8 calibrated on validation rows; kept only if it beats dynamic.
    # None: try it for the char-CNN (see the module doc), not for BERT.
    static: bool | None = None
    # How many validation rows calibrate the static variant (more: slower export, steadier ranges).
    calibration_rows: int = 256
    # Write SkipLayerNormalization (residual add + LayerNorm) out as plain operators in the int8 file:
    # faster on onnxruntime's CPU provider, whose kernel for it is slow (see ``export/layernorm.py``).
    plain_layernorm: bool = True

    def __post_init__(self) -> None:
        if self.weight_type not in ("qint8", "quint8"):
            raise UsageError(f"--weight-type must be qint8 or quint8, not {self.weight_type!r}")
        if self.calibration_rows < 1:
            raise UsageError(f"calibration rows must be positive, not {self.calibration_rows}")


def _quant_type(name: WeightType) -> Any:
    from onnxruntime.quantization import QuantType

    return QuantType.QInt8 if name == "qint8" else QuantType.QUInt8


# Ops that end the walk back from ``logits`` in :func:`head_nodes`: the last layer of the encoder body.
_BODY_OPS = frozenset(
    {"SkipLayerNormalization", "LayerNormalization", "Attention", "EmbedLayerNormalization", "Conv", "Relu"}
)
_LINEAR_OPS = frozenset({"MatMul", "Gemm"})


def head_nodes(model: Any, output: str = "logits") -> list[str]:
    """Names of the linear layers between the encoder body and ``output`` (pooler and classifier).

    These stay float32. Their input is one pooled vector per row, and sentence encoders put a few outlier
    dimensions, two orders of magnitude larger, next to hundreds of small ones in it: one int8 scale per
    tensor then rounds the small dimensions, which carry the class, to the same few values for every row.
    The accuracy gate caught this on all-MiniLM-L6-v2 with a mean-pooling head (README: Export); without the
    head quantized int8 matched fp32. The head is a few thousand weights, so keeping it float costs no
    speed. Both names are returned for a ``Gemm``, since dynamic quantization first rewrites it to
    ``<name>_MatMul``.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    names: list[str] = []
    stack, seen = [output], set()
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.name in seen or node.op_type in _BODY_OPS:
            continue
        seen.add(node.name)
        if node.op_type in _LINEAR_OPS:
            names += [node.name, f"{node.name}_MatMul"] if node.op_type == "Gemm" else [node.name]
        stack.extend(node.input)
    return names


def quantize_dynamic_int8(src: Path, dst: Path, options: Int8Options, reduce_range: bool) -> None:
    """Write the dynamically quantized int8 model of ``src`` to ``dst`` (the classifier head stays float)."""
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    try:
        with quiet_onnxruntime_tools():
            quantize_dynamic(
                src,
                dst,
                nodes_to_exclude=head_nodes(onnx.load(str(src), load_external_data=False)),
                per_channel=options.per_channel,
                reduce_range=reduce_range,
                weight_type=_quant_type(options.weight_type),
                # Fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference; their
                # outputs are float, which is what this tells the quantizer.
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    except Exception as e:  # the quantizer raises assorted types on graphs it cannot handle
        raise ExportError(f"dynamic int8 quantization failed: {type(e).__name__}: {e}") from e


class _Feeds:
    """onnxruntime's ``CalibrationDataReader`` protocol over a list of input batches."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._iter: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)


def quantize_static_int8(
    src: Path,
    dst: Path,
    calibration: Sequence[dict[str, np.ndarray]],
    options: Int8Options,
    reduce_range: bool,
) -> None:
    """Write a static QDQ int8 model of ``src`` to ``dst``, activation ranges from ``calibration`` batches.

    Activations are uint8 with MinMax ranges (what onnxruntime's CPU kernels run fastest); weights follow
    ``options``; the classifier head stays float (see :func:`head_nodes`). onnxruntime writes its augmented
    calibration model to a temporary folder of its own (under the system temp folder) and removes it;
    nothing else is written outside ``dst``.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    if not calibration:
        raise ExportError("static int8 needs calibration rows, and there are none")
    try:
        # The QDQ quantizer needs every activation's type; plain ONNX shape inference stops at the fused
        # contrib operators, symbolic shape inference knows them.
        with quiet_onnxruntime_tools():
            typed = SymbolicShapeInference.infer_shapes(onnx.load(str(src)), auto_merge=True)
            quantize_static(
                typed,
                dst,
                _Feeds(calibration),
                quant_format=QuantFormat.QDQ,
                nodes_to_exclude=head_nodes(typed),
                per_channel=options.per_channel,
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=_quant_type(options.weight_type),
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    except Exception as e:  # see quantize_dynamic_int8
        raise ExportError(f"static int8 quantization failed: {type(e).__name__}: {e}") from e
