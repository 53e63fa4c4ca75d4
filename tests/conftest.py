"""Shared fixtures. Each section names its owner; keep sections independent."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

# --------------------------------------------------------------------------------------------------
# Runtime (H1): a char-CNN-shaped bundle whose ONNX graph is built with onnx.helper, no torch needed.
# --------------------------------------------------------------------------------------------------

TOY_LABELS = ["neg", "pos"]
TOY_CHARS = list("gbxyz好差")


def write_toy_onnx(path: Path, n_ids: int) -> None:
    """``input_ids (B, T) -> Gather -> ReduceSum over T -> MatMul -> logits (B, 2)``.

    Summing (not averaging) and a zero padding row make the logits independent of padding, so batch
    composition never changes a score. 'g' and '好' push towards ``pos``, 'b' and '差' towards ``neg``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    emb = np.zeros((n_ids, 2), dtype=np.float32)  # id 0 (padding) stays zero
    for ch, vec in {
        "g": (0, 1),
        "好": (0, 1),
        "b": (1, 0),
        "差": (1, 0),
        "x": (0.1, 0),
        "y": (0, 0.1),
    }.items():
        emb[TOY_CHARS.index(ch) + 2] = vec
    weight = np.array([[2.0, -2.0], [-2.0, 2.0]], dtype=np.float32)  # (D, C)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["emb", "input_ids"], ["e"]),  # (B, T, D)
            helper.make_node("ReduceSum", ["e", "axes"], ["s"], keepdims=0),  # (B, D)
            helper.make_node("MatMul", ["s", "w"], ["logits"]),  # (B, C)
        ],
        "toy",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "length"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [
            numpy_helper.from_array(emb, "emb"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
            numpy_helper.from_array(weight, "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def make_toy_bundle(root: Path, passed: dict[str, bool] | None = None, max_length: int = 16) -> Path:
    """A ``charcnn`` bundle with vocab, toy ONNX variants and an export report (``passed`` per variant)."""
    from clsrun.runtime.bundle import BundleSpec, write_spec
    from clsrun.runtime.encode_char import CharVocab

    passed = {"fp32": True, "int8": True} if passed is None else passed
    root.mkdir(parents=True)
    vocab = CharVocab(TOY_CHARS)
    vocab.save(root / "vocab.json")
    files = {"fp32": "onnx/model.onnx", "int8": "onnx/model.int8.onnx", "fp16": "onnx/model.fp16.onnx"}
    variants = {}
    for name, ok in passed.items():
        write_toy_onnx(root / files[name], vocab.size)
        variants[name] = {
            "file": files[name],
            "passed": ok,
            "accuracy": 1.0,
            "reason": None if ok else "test",
        }
    report = {"reference": {"backend": "torch", "accuracy": 1.0, "rows": 1}, "variants": variants}
    (root / "onnx" / "export_report.json").write_text(json.dumps(report), encoding="utf-8")
    spec = BundleSpec(kind="charcnn", labels=TOY_LABELS, max_length=max_length, model={"kernel_sizes": [3]})
    write_spec(root, spec)
    return root


@pytest.fixture(scope="session")
def toy_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A verified toy char-CNN bundle (fp32 and int8 variants passed). Do not modify it."""
    return make_toy_bundle(tmp_path_factory.mktemp("toy") / "bundle")


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[..., Path]:
    """``make_bundle(name, passed={...}, max_length=16)``: a fresh toy bundle under ``tmp_path / name``."""

    def make(name: str, passed: dict[str, bool] | None = None, max_length: int = 16) -> Path:
        return make_toy_bundle(tmp_path / name, passed, max_length)

    return make
