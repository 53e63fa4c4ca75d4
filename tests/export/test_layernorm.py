"""SkipLayerNormalization written out as plain operators (export/layernorm.py): same numbers, not re-fused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from clsrun.export.layernorm import decompose_layernorm, decompose_layernorm_model
from clsrun.export.onnx_export import export_onnx, use_eager_attention
from clsrun.export.optimize import count_ops, optimize_bert
from clsrun.export.quantize import Int8Options, quantize_dynamic_int8

H = 24


def _session(model: onnx.ModelProto | Path, optimized: Path | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if optimized is not None:  # what onnxruntime runs after its own graph optimizations
        options.optimized_model_filepath = str(optimized)
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _norm_graph(opset: int, skip: bool, bias: bool, sum_output: bool) -> onnx.ModelProto:
    """One LayerNormalization (or SkipLayerNormalization) with random gamma/beta/bias, input (B, T, H)."""
    rng = np.random.default_rng(0)
    inits = [
        onnx.numpy_helper.from_array(rng.normal(1, 0.2, H).astype(np.float32), "gamma"),
        onnx.numpy_helper.from_array(rng.normal(0, 0.2, H).astype(np.float32), "beta"),
        onnx.numpy_helper.from_array(rng.normal(0, 0.2, H).astype(np.float32), "bias"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", H])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "T", H])]
    if skip:
        inputs.append(helper.make_tensor_value_info("skip", TensorProto.FLOAT, ["B", "T", H]))
        node_outputs = ["y", "", "", "sum"] if sum_output else ["y"]
        if sum_output:
            outputs.append(helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["B", "T", H]))
        node = helper.make_node(
            "SkipLayerNormalization",
            ["x", "skip", "gamma", "beta", "bias" if bias else ""],
            node_outputs,
            domain="com.microsoft",
            epsilon=1e-6,
            name="skip_ln",
        )
    else:
        node = helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-6)
    graph = helper.make_graph([node], "norm", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets)


@pytest.mark.parametrize(
    ("opset", "bias", "sum_output"),
    [(17, True, False), (17, False, False), (18, True, True), (18, False, True)],
)
def test_plain_operators_compute_the_fused_result(opset: int, bias: bool, sum_output: bool) -> None:
    fused = _norm_graph(opset, skip=True, bias=bias, sum_output=sum_output)
    plain = _norm_graph(opset, skip=True, bias=bias, sum_output=sum_output)
    assert decompose_layernorm_model(plain) == 1
    assert "SkipLayerNormalization" not in {n.op_type for n in plain.graph.node}
    onnx.checker.check_model(plain)
    rng = np.random.default_rng(1)
    feeds = {
        "x": rng.normal(3, 2, (4, 7, H)).astype(np.float32),
        "skip": rng.normal(0, 1, (4, 7, H)).astype(np.float32),
    }
    want, got = _session(fused).run(None, feeds), _session(plain).run(None, feeds)
    assert len(got) == len(want) == (2 if sum_output else 1)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-5)


def test_plain_layernorm_and_nodes_whose_statistics_are_read_stay() -> None:
    layer_norm = _norm_graph(17, skip=False, bias=False, sum_output=False)  # onnxruntime's fast kernel
    assert decompose_layernorm_model(layer_norm) == 0
    model = _norm_graph(17, skip=True, bias=False, sum_output=False)
    model.graph.node[0].output.extend(["mean"])  # a consumer of the mean output: cannot be written out
    assert decompose_layernorm_model(model) == 0
    assert model.graph.node[0].op_type == "SkipLayerNormalization"


def test_tiny_bert_int8_plain_matches_fused_and_is_not_refused(tmp_path: Path) -> None:
    """The real use: a fused, dynamically quantized BERT; onnxruntime must not fuse the norms back."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=80,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    model = BertModel(config, add_pooling_layer=False).eval()
    assert use_eager_attention(model) == 1

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = model
            self.head = torch.nn.Linear(32, 3)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.head(self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0][:, 0])

    ids = torch.randint(5, 80, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    raw = export_onnx(Logits().eval(), {"input_ids": ids, "attention_mask": mask}, tmp_path / "raw.onnx")
    optimize_bert(raw, tmp_path / "fp32.onnx", 4, 32)
    quantize_dynamic_int8(tmp_path / "fp32.onnx", tmp_path / "fused.onnx", Int8Options(), reduce_range=False)
    plain = tmp_path / "plain.onnx"
    plain.write_bytes((tmp_path / "fused.onnx").read_bytes())
    norms = count_ops(plain).get("SkipLayerNormalization", 0)
    assert norms >= 2 * config.num_hidden_layers - 1
    assert decompose_layernorm(plain) == norms
    _session(plain, optimized=tmp_path / "as_run.onnx")
    assert not {"LayerNormalization", "SkipLayerNormalization"} & set(count_ops(tmp_path / "as_run.onnx"))
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    want = _session(tmp_path / "fused.onnx").run(["logits"], feeds)[0]
    got = _session(plain).run(["logits"], feeds)[0]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
