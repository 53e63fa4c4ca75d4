"""The n-gram model's fp32 graph: one sparse-times-dense product and a bias.

``logits = features @ table + bias``, where ``features`` is the batch's ``(B, n_features)`` weight matrix
in CSR form (``encode.SparseRows``: each row holds its text's weights at its feature ids) and ``table`` the
model's ``(n_features, n_labels)`` rows. It computes what the eager ``NgramLinear`` computes from padded ids
and weights (``Gather`` and a batched ``MatMul``), without the padding: onnxruntime's Gather of padded
``(B, T)`` ids and the padding itself cost several times the product (README: n-gram scoring).

Written by hand, not by ``torch.onnx``: the TorchScript exporter has no sparse input, and onnxruntime's
``SparseToDenseMatMul`` (its ``com.microsoft`` domain, CPU kernel) is the one operator that takes one. So
this graph runs on onnxruntime only; the variants derived from fp32 (int8, fp16, OpenVINO) are derived
from the dense graph ``torch.onnx`` exports, which export keeps for that (``exporter.build_fp32``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clsrun.runtime.encode_ngram import SPARSE_INPUT

if TYPE_CHECKING:
    from clsrun.trainer.ngram import NgramLinear

OPSET = 17
MS_DOMAIN = "com.microsoft"


def write_sparse_graph(model: NgramLinear, out: Path, output_name: str) -> Path:
    """Write ``model``'s sparse graph to ``out``: input :data:`SPARSE_INPUT` ``(B, n_features)`` float CSR,
    output ``output_name`` ``(B, n_labels)`` float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = model.table.weight.detach().cpu().float().numpy()  # (V, C)
    bias = model.bias.detach().cpu().float().numpy()  # (C,)
    n_features, n_labels = table.shape
    graph = helper.make_graph(
        [
            helper.make_node("SparseToDenseMatMul", [SPARSE_INPUT, "table"], ["summed"], domain=MS_DOMAIN),
            helper.make_node("Add", ["summed", "bias"], [output_name]),
        ],
        "ngram_sparse",
        [helper.make_sparse_tensor_value_info(SPARSE_INPUT, TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", n_labels])],
        [
            numpy_helper.from_array(np.ascontiguousarray(table), "table"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="clsrun",
    )
    proto.ir_version = 8  # what onnxruntime 1.16 and later load; the graph needs nothing newer
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    return out
