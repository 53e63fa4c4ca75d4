"""Graph fusion with onnxruntime's transformer optimizer (BERT-family graphs).

The optimizer rewrites the exported BERT subgraphs into onnxruntime's fused contrib operators:
``EmbedLayerNormalization`` (word + position + type embeddings and their LayerNorm), ``Attention`` (the
QKV projections, scaled dot product and mask in one kernel per layer), ``SkipLayerNormalization``
(residual add + LayerNorm) and ``BiasGelu``. The fused counts go into the export report, so a regression
in the exported graph (e.g. SDPA attention sneaking back in) shows up there and in the tests.
"""

from __future__ import annotations

import logging
from pathlib import Path

from clsrun.export.quiet import quiet_onnxruntime_tools
from clsrun.runtime.errors import ExportError

log = logging.getLogger(__name__)

# Operators that fusion produces and that the report counts.
FUSED_OPS = (
    "EmbedLayerNormalization",
    "Attention",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "LayerNormalization",
    "BiasGelu",
    "Gelu",
    "FastGelu",
)


def optimize_bert(src: Path, dst: Path, num_heads: int, hidden_size: int) -> dict[str, int]:
    """Fuse the BERT graph in ``src`` into ``dst``; return the count of each fused operator (zeros left out).

    ``num_heads`` and ``hidden_size`` are given explicitly from the model config: on the TorchScript graph
    the optimizer cannot detect them and then skips the Attention and EmbedLayerNormalization fusions,
    with one log line as the only trace.
    Only basic onnxruntime graph optimizations run first (``opt_level=1``), so the file stays portable
    between the CPU and CUDA providers.
    """
    from onnxruntime.transformers import optimizer

    try:
        with quiet_onnxruntime_tools():
            model = optimizer.optimize_model(
                str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=1
            )
            stats = model.get_fused_operator_statistics()
            model.save_model_to_file(str(dst))
    except Exception as e:  # the optimizer raises assorted types on graphs it cannot handle
        raise ExportError(
            f"onnxruntime transformer optimizer failed on {src.name}: {type(e).__name__}: {e}"
        ) from e
    fusions = {op: int(stats.get(op, 0)) for op in FUSED_OPS if stats.get(op, 0)}
    log.debug("fused operators: %s", fusions)
    return fusions


def count_ops(path: Path) -> dict[str, int]:
    """How many nodes of each operator type the ONNX file's main graph has (for reports and tests)."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))
