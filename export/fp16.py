"""float16 variant for CUDA, with float32 inputs/outputs and float32 islands where fp16 overflows.

``keep_io_types``: the graph still takes int64 ids and returns float32 logits, so the runtime feeds and
reads every variant the same way. Block list: unfused normalisation, softmax and reductions stay float32
(their sums of squares and exponentials overflow fp16's 65504). onnxruntime's fused contrib operators
(``Attention``, ``SkipLayerNormalization``, ``EmbedLayerNormalization``) are left in fp16 on purpose: their
CUDA kernels accumulate in float32 internally, and blocking them would give back most of the speed.

On the CPU execution provider: it has almost no fp16 kernels. onnxruntime then inserts ``Cast`` nodes
around each fp16 node it cannot run (its InsertCastTransformer) and computes in float32, so the fp16 file
runs on CPU with fp16-rounded weights and no faster than the fp32 file. Export uses that only to check the
fp16 file's accuracy when no GPU is present; fp16 is a CUDA variant, and its speed on CUDA is not measured
by the gate on a machine without one.
"""

from __future__ import annotations

from pathlib import Path

from clsrun.export.quiet import quiet_onnxruntime_tools
from clsrun.runtime.errors import ExportError

# Operator types kept in float32, on top of onnxruntime's default block list (non-float ML ops).
FP32_OPS = (
    "LayerNormalization",
    "SimplifiedLayerNormalization",
    "Softmax",
    "LogSoftmax",
    "ReduceMean",
    "ReduceSum",
    "Pow",
    "Sqrt",
    "Exp",
)


def convert_fp16(src: Path, dst: Path, extra_fp32_ops: tuple[str, ...] = ()) -> None:
    """Write the float16 version of the ONNX model ``src`` to ``dst`` (float32 inputs and outputs).

    Symbolic shape inference types the outputs of the fused contrib operators, which plain ONNX shape
    inference cannot; without types the converter would leave those tensors float32 by mistake.
    """
    import onnx
    from onnxruntime.transformers import float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    try:
        with quiet_onnxruntime_tools():
            model = OnnxModel(onnx.load(str(src)))
            model.convert_float_to_float16(
                use_symbolic_shape_infer=True,
                keep_io_types=True,
                op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, *FP32_OPS, *extra_fp32_ops],
            )
            model.save_model_to_file(str(dst))
    except Exception as e:  # the converter raises assorted types on graphs it cannot handle
        raise ExportError(f"float16 conversion failed: {type(e).__name__}: {e}") from e
