"""``SkipLayerNormalization`` written out as plain ONNX operators in the CPU int8 variant (a measured speed-up).

Why by hand: onnxruntime's CPU kernel for its fused ``SkipLayerNormalization`` (residual add + LayerNorm;
onnxruntime 1.32) runs about ten times slower than its own ``LayerNormalization`` kernel on the same data
(a vectorised normalisation kernel was merged upstream in 2026, onnxruntime pull request 31973, and is not
in this release). ``Add`` + ``LayerNormalization`` is no way out: onnxruntime's SkipLayerNormFusion fuses
the pair back at session start. The same arithmetic as ``ReduceMean``/``Sub``/``Mul``/``Sqrt``/``Div``
nodes runs on vectorised element-wise kernels, several times faster than the fused kernel; a bare
``LayerNormalization`` is faster still, so plain LayerNorm nodes are left as they are. The kernel timings
(``benchmarks/layernorm_kernels.py``) and what the rewrite gains end to end (``benchmarks/predict_variants.py``)
are in the README with their commands.

Only the int8 variant is rewritten: it is the CPU variant (the runtime prefers fp16, then fp32, on CUDA,
where the fused kernels are the fast ones), and the rewrite runs after quantization, on the float
normalisation nodes the quantizer left alone. The accuracy gate then scores the rewritten file as usual.
When onnxruntime ships the vectorised kernel, re-run ``benchmarks/layernorm_kernels.py``: ``clsrun export
--fused-layernorm`` keeps the fused nodes.

The arithmetic is PyTorch's ``LayerNorm`` (two-pass, biased variance), for each row of the last axis::

    s = input + skip (+ bias);  d = s - mean(s);  y = d / sqrt(mean(d * d) + eps) * gamma (+ beta)

``d * d`` is a ``Mul`` rather than ``Pow``: onnxruntime's LayerNormFusion matches the ``Pow`` form and
would fuse the nodes straight back at session start (a test checks that neither fusion happens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clsrun.runtime.errors import ExportError

MS_DOMAIN = "com.microsoft"
_SKIP_LAYER_NORM = "SkipLayerNormalization"


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _rewritable(node: Any) -> bool:
    """A ``SkipLayerNormalization`` whose optional statistics outputs (mean, inverse std) nobody reads."""
    return node.op_type == _SKIP_LAYER_NORM and node.domain == MS_DOMAIN and not any(node.output[1:3])


class _Writer:
    """Builds the rewritten node list: nodes kept as they are, and the plain nodes of each normalisation
    (named after the fused node they replace)."""

    def __init__(self, model: Any, axes_name: str) -> None:
        self.model = model
        self.axes_name = axes_name
        self.new_opset = _opset(model) >= 18  # ReduceMean takes its axes as an input from opset 18
        self.nodes: list[Any] = []

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        import onnx

        self.nodes.append(onnx.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def mean(self, x: str, out: str) -> str:
        if self.new_opset:
            return self.node("ReduceMean", [x, self.axes_name], out, keepdims=1)
        return self.node("ReduceMean", [x], out, axes=[-1], keepdims=1)

    def normalize(self, node: Any, index: int) -> None:
        import onnx

        base = f"{node.name or node.op_type}_plain{index}"
        eps = np.array(_attr(node, "epsilon", 1e-5), dtype=np.float32)
        eps_name = f"{base}/epsilon"
        self.model.graph.initializer.append(onnx.numpy_helper.from_array(eps, eps_name))
        x, skip, gamma, beta, bias = (list(node.input) + [""] * 5)[:5]
        sum_out = node.output[3] if len(node.output) > 3 and node.output[3] else f"{base}/sum"
        if bias:
            s = self.node("Add", [x, skip], f"{base}/input_plus_skip")
            s = self.node("Add", [s, bias], sum_out)
        else:
            s = self.node("Add", [x, skip], sum_out)
        d = self.node("Sub", [s, self.mean(s, f"{base}/mean")], f"{base}/centered")
        var = self.mean(self.node("Mul", [d, d], f"{base}/squared"), f"{base}/variance")
        std = self.node("Sqrt", [self.node("Add", [var, eps_name], f"{base}/variance_eps")], f"{base}/std")
        normed = self.node("Div", [d, std], f"{base}/normalized")
        if beta:
            self.node("Add", [self.node("Mul", [normed, gamma], f"{base}/scaled"), beta], node.output[0])
        else:
            self.node("Mul", [normed, gamma], node.output[0])


def decompose_layernorm_model(model: Any) -> int:
    """Rewrite ``model`` (an ``onnx.ModelProto``, in place); returns how many nodes were written out.

    Nodes whose optional statistics outputs are read are left fused. The graph's node order stays
    topological: each rewrite takes its node's place.
    """
    import onnx

    axes_name = "layernorm_plain/axes_last"
    writer = _Writer(model, axes_name)
    count = 0
    for node in model.graph.node:
        if _rewritable(node):
            writer.normalize(node, count)
            count += 1
        else:
            writer.nodes.append(node)
    if count:
        if writer.new_opset:
            axes = onnx.numpy_helper.from_array(np.array([-1], dtype=np.int64), axes_name)
            model.graph.initializer.append(axes)
        del model.graph.node[:]
        model.graph.node.extend(writer.nodes)
    return count


def decompose_layernorm(path: Path) -> int:
    """Rewrite the ONNX file at ``path`` in place (see :func:`decompose_layernorm_model`); returns the count."""
    import onnx

    try:
        model = onnx.load(str(path))
        count = decompose_layernorm_model(model)
        if count:
            onnx.save(model, str(path))
    except Exception as e:  # onnx raises protobuf and checker errors of its own types
        raise ExportError(f"{path.name}: writing out layer normalisation failed: {e}") from e
    return count
