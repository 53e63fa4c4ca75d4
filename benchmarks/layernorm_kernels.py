"""onnxruntime's fused LayerNorm kernels against the same arithmetic as plain operators (export/layernorm.py).

Builds two one-node graphs (``LayerNormalization``; ``SkipLayerNormalization`` with a bias) and their
written-out forms (``decompose_layernorm_model``), and times each on a (B, T, H) float32 tensor with 1 and
2 intra-op threads. Re-run when onnxruntime is upgraded: once its vectorised kernel ships, the fused form
should win and ``clsrun export --fused-layernorm`` becomes the better default.

    .venv/bin/python benchmarks/layernorm_kernels.py [--shape 19,55,384] [--calls 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from clsrun.export.layernorm import decompose_layernorm_model


def graph(skip: bool, hidden: int) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [
        onnx.numpy_helper.from_array(rng.normal(1, 0.1, hidden).astype(np.float32), name)
        for name in ("gamma", "beta", "bias")
    ]
    shape = ["B", "T", hidden]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)]
    if skip:
        inputs.append(helper.make_tensor_value_info("skip", TensorProto.FLOAT, shape))
        node = helper.make_node(
            "SkipLayerNormalization",
            ["x", "skip", "gamma", "beta", "bias"],
            ["y"],
            domain="com.microsoft",
            epsilon=1e-12,
        )
    else:
        node = helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["y"], epsilon=1e-12)
    out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)]
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(helper.make_graph([node], "norm", inputs, out, inits), opset_imports=opsets)


def ms_per_call(model: onnx.ModelProto, feeds: dict[str, np.ndarray], threads: int, calls: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the runtime
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    session.run(None, feeds)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            session.run(None, feeds)
        times.append((time.perf_counter() - start) / calls * 1e3)
    return round(statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", default="19,55,384", help="B,T,H of the normalised tensor")
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    b, t, h = (int(x) for x in args.shape.split(","))
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (b, t, h)).astype(np.float32)
    result: dict[str, object] = {"onnxruntime": ort.__version__, "shape": [b, t, h], "ms_per_call": {}}
    for skip in (False, True):
        feeds = {"x": x, "skip": x[::-1].copy()} if skip else {"x": x}
        fused = graph(skip, h)
        plain = graph(skip, h)
        decompose_layernorm_model(plain)
        name = "SkipLayerNormalization" if skip else "LayerNormalization"
        for threads in (1, 2):
            result["ms_per_call"][f"{name} {threads} thread(s)"] = {  # type: ignore[index]
                "fused": ms_per_call(fused, feeds, threads, args.calls),
                "plain": ms_per_call(plain, feeds, threads, args.calls),
            }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
