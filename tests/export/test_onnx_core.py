"""Export, fusion, int8 and fp16 on a tiny BERT classifier built in the test (no bundle, no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import BertConfig, BertModel

from clsrun.export.fp16 import convert_fp16
from clsrun.export.onnx_export import export_onnx, use_eager_attention
from clsrun.export.optimize import count_ops, optimize_bert
from clsrun.export.quantize import Int8Options, quantize_dynamic_int8, quantize_static_int8

HEADS, HIDDEN, LAYERS, VOCAB = 4, 32, 2, 120


class TinyClassifier(torch.nn.Module):
    """BERT encoder + linear head on mean-pooled tokens: forward(**inputs) -> logits, as load_model gives."""

    def __init__(self, attn: str = "sdpa") -> None:
        super().__init__()
        config = BertConfig(
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            intermediate_size=64,
            max_position_embeddings=64,
            attn_implementation=attn,
        )
        torch.manual_seed(0)
        self.encoder = BertModel(config, add_pooling_layer=False)
        self.head = torch.nn.Linear(HIDDEN, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state  # (B, T, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, H)
        return self.head(pooled)  # (B, 3)


def _feeds(batch: int, length: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCAB, size=(batch, length), dtype=np.int64)
    lengths = rng.integers(1, length + 1, size=batch)
    lengths[0] = length
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask}  # the runtime's BERT inputs (no token_type_ids)


def _eager(model: torch.nn.Module, feeds: dict[str, np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], feeds)[0]


@pytest.fixture(scope="module")
def fused(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyClassifier, Path]:
    out = tmp_path_factory.mktemp("bert")
    model = TinyClassifier().eval()
    assert use_eager_attention(model) == 1
    sample = {k: torch.from_numpy(v) for k, v in _feeds(2, 6, seed=1).items()}
    raw = export_onnx(model, sample, out / "raw.onnx")
    fusions = optimize_bert(raw, out / "model.onnx", HEADS, HIDDEN)
    assert fusions.get("Attention") == LAYERS, fusions
    return model, out / "model.onnx"


def test_eager_attention_export_fuses_attention_and_embeddings(fused: tuple[TinyClassifier, Path]) -> None:
    ops = count_ops(fused[1])
    assert ops.get("Attention") == LAYERS
    assert ops.get("EmbedLayerNormalization") == 1
    assert ops.get("SkipLayerNormalization", 0) >= LAYERS
    assert "Softmax" not in ops  # every attention block went into the fused kernel


def test_sdpa_export_does_not_fuse_attention(tmp_path: Path) -> None:
    """Why export switches to eager attention: the default SDPA graph gets no Attention fusion."""
    model = TinyClassifier(attn="sdpa").eval()
    sample = {k: torch.from_numpy(v) for k, v in _feeds(2, 6, seed=1).items()}
    raw = export_onnx(model, sample, tmp_path / "raw.onnx")
    fusions = optimize_bert(raw, tmp_path / "model.onnx", HEADS, HIDDEN)
    assert "Attention" not in fusions


@pytest.mark.parametrize(("batch", "length"), [(1, 1), (3, 17), (8, 40)])
def test_fused_fp32_matches_eager_on_other_shapes(
    fused: tuple[TinyClassifier, Path], batch: int, length: int
) -> None:
    model, path = fused
    feeds = _feeds(batch, length, seed=batch)
    np.testing.assert_allclose(_run(path, feeds), _eager(model, feeds), atol=1e-4, rtol=1e-4)


def test_dynamic_int8_uses_quantized_fused_ops(fused: tuple[TinyClassifier, Path], tmp_path: Path) -> None:
    model, path = fused
    quantize_dynamic_int8(path, tmp_path / "int8.onnx", Int8Options(), reduce_range=False)
    ops = count_ops(tmp_path / "int8.onnx")
    assert ops.get("QAttention") == LAYERS
    feeds = _feeds(16, 12, seed=3)
    got, want = _run(tmp_path / "int8.onnx", feeds), _eager(model, feeds)
    assert np.abs(got - want).max() < 0.2
    assert (tmp_path / "int8.onnx").stat().st_size < path.stat().st_size


def test_static_int8_builds_and_runs(fused: tuple[TinyClassifier, Path], tmp_path: Path) -> None:
    _, path = fused
    calibration = [_feeds(8, n, seed=n) for n in (4, 9, 15)]
    quantize_static_int8(path, tmp_path / "static.onnx", calibration, Int8Options(per_channel=True), False)
    assert count_ops(tmp_path / "static.onnx").get("QuantizeLinear", 0) > 0
    feeds = _feeds(4, 9, seed=9)
    assert _run(tmp_path / "static.onnx", feeds).shape == (4, 3)


def test_fp16_keeps_fp32_io_and_runs_on_cpu(fused: tuple[TinyClassifier, Path], tmp_path: Path) -> None:
    model, path = fused
    convert_fp16(path, tmp_path / "fp16.onnx")
    session = ort.InferenceSession(str(tmp_path / "fp16.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].type == "tensor(float)"
    assert [i.type for i in session.get_inputs()] == ["tensor(int64)"] * 2
    feeds = _feeds(4, 10, seed=4)
    got = session.run(["logits"], feeds)[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _eager(model, feeds), atol=2e-2)


def _outlier_head_model(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """features (B, 64) -> Gemm head -> logits (B, 2). Dimension 0 is a huge outlier shared by every row
    (as in sentence-encoder embeddings); the class lives in small dimensions 1..63. Returns (features, labels)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=64)
    features = rng.normal(0, 0.003, size=(64, 64)).astype(np.float32)
    features[:, 1:] += np.where(labels[:, None] == 1, 0.01, -0.01).astype(np.float32)  # < half an int8 step
    features[:, 0] = 12.0
    weight = np.zeros((2, 64), dtype=np.float32)
    weight[1, 1:], weight[0, 1:] = 10.0, -10.0
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["features", "w", "b"], ["logits"], transB=1, name="classifier/Gemm")],
        "head",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.zeros(2, np.float32), "b")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return features, labels


def test_int8_keeps_the_classifier_head_float(tmp_path: Path) -> None:
    """Per-tensor activation scales collapse pooled vectors with an outlier dimension; the head stays float."""
    from onnxruntime.quantization import quantize_dynamic

    features, labels = _outlier_head_model(tmp_path / "head.onnx")
    quantize_dynamic_int8(tmp_path / "head.onnx", tmp_path / "ours.onnx", Int8Options(), reduce_range=False)
    assert "MatMulInteger" not in count_ops(tmp_path / "ours.onnx")
    ours = _run(tmp_path / "ours.onnx", {"features": features})
    assert (ours.argmax(1) == labels).mean() == 1.0
    quantize_dynamic(tmp_path / "head.onnx", tmp_path / "naive.onnx")  # what quantizing the head does
    naive = _run(tmp_path / "naive.onnx", {"features": features})
    assert (naive.argmax(1) == labels).mean() < 0.9
