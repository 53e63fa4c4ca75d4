"""The runtime refuses ONNX files whose external data lies outside the bundle (absolute, ``..``, symlink) or
is not a file ``clsrun.json`` lists and hashes; the walker finds locations wherever ONNX can hold tensors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

from clsrun.runtime.bundle import Bundle, BundleSpec, write_spec
from clsrun.runtime.errors import BundleError
from clsrun.runtime.onnx_files import check_external_data, external_data_locations


def _model(weight_name: str = "w") -> onnx.ModelProto:
    """y = x + w, with w (1000 floats) as an initializer; a Constant node and a sub-graph add tensors too."""
    w = numpy_helper.from_array(np.arange(1000, dtype=np.float32), weight_name)
    inner = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["z"])],
        "inner",
        [],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1000])],
    )
    nodes = [
        helper.make_node("Add", ["x", weight_name], ["y0"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=inner, else_branch=inner),
        helper.make_node("Identity", ["y0"], ["unused"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1000]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y0", TensorProto.FLOAT, [1000])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _set_location(path: Path, location: str) -> None:
    """Rewrite every external-data location of the model at ``path`` (as a hostile bundle would)."""
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(model.SerializeToString())


@pytest.fixture
def bundle(tmp_path: Path) -> Bundle:
    root = tmp_path / "bundle"
    (root / "onnx").mkdir(parents=True)
    onnx.save(
        _model(),
        str(root / "onnx/model.onnx"),
        save_as_external_data=True,
        location="model.onnx.data",
        size_threshold=0,
    )
    write_spec(root, BundleSpec(kind="charcnn", labels=["a", "b"], max_length=8))
    return Bundle.load(root)


def test_locations_found_in_initializers(bundle: Bundle) -> None:
    assert external_data_locations(bundle.root / "onnx/model.onnx") == ["model.onnx.data"]


def test_inside_bundle_is_accepted_and_runs(bundle: Bundle) -> None:
    path = check_external_data(bundle, "onnx/model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.ones(1000, dtype=np.float32)
    (y,) = session.run(["y0"], {"x": x, "cond": np.array(True)})
    assert y[999] == 1000.0


def test_model_without_external_data_is_accepted(tmp_path: Path) -> None:
    root = tmp_path / "b"
    (root / "onnx").mkdir(parents=True)
    onnx.save(_model(), str(root / "onnx/model.onnx"))
    write_spec(root, BundleSpec(kind="charcnn", labels=["a", "b"], max_length=8))
    assert external_data_locations(root / "onnx/model.onnx") == []
    check_external_data(Bundle.load(root), "onnx/model.onnx")


@pytest.mark.parametrize(
    "location",
    ["/etc/passwd", "../outside.data", "sub/../../outside.data", "..\\..\\x.data".replace("\\", "/")],
)
def test_absolute_and_parent_locations_refused(bundle: Bundle, location: str) -> None:
    _set_location(bundle.root / "onnx/model.onnx", location)
    with pytest.raises(BundleError, match="absolute or climbs out of the bundle"):
        check_external_data(bundle, "onnx/model.onnx")


def test_symlink_leading_outside_refused(bundle: Bundle, tmp_path: Path) -> None:
    secret = tmp_path / "secret.data"
    secret.write_bytes(np.arange(1000, dtype=np.float32).tobytes())
    os.symlink(secret, bundle.root / "onnx/link.data")
    _set_location(bundle.root / "onnx/model.onnx", "link.data")
    with pytest.raises(BundleError, match="outside the bundle"):
        check_external_data(bundle, "onnx/model.onnx")


def test_symlinked_folder_leading_outside_refused(bundle: Bundle, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "w.data").write_bytes(b"\0" * 4000)
    os.symlink(outside, bundle.root / "onnx/data", target_is_directory=True)
    _set_location(bundle.root / "onnx/model.onnx", "data/w.data")
    with pytest.raises(BundleError, match="outside the bundle"):
        check_external_data(bundle, "onnx/model.onnx")


def test_model_file_outside_bundle_refused(bundle: Bundle) -> None:
    with pytest.raises(BundleError, match="outside the bundle"):
        check_external_data(bundle, "../model.onnx")


def test_garbage_file_is_a_bundle_error(bundle: Bundle) -> None:
    (bundle.root / "onnx/bad.onnx").write_bytes(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")
    with pytest.raises(BundleError, match="not a valid ONNX model"):
        check_external_data(bundle.rehash(), "onnx/bad.onnx")


def test_external_data_not_listed_in_clsrun_json_is_refused(bundle: Bundle) -> None:
    """A data file that clsrun.json does not list was never hashed: an altered one would be used unchecked."""
    spec_path = bundle.root / "clsrun.json"
    data = json.loads(spec_path.read_text(encoding="utf-8"))
    del data["files"]["onnx/model.onnx.data"]
    spec_path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(BundleError, match=r"'model\.onnx\.data' \(onnx/model\.onnx\.data\) is not listed"):
        check_external_data(Bundle.load(bundle.root), "onnx/model.onnx")


def test_altered_external_data_fails_the_bundle_check(bundle: Bundle) -> None:
    data = bundle.root / "onnx/model.onnx.data"
    data.write_bytes(data.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(BundleError, match=r"model\.onnx\.data: sha256 mismatch") as e:
        Bundle.load(bundle.root)
    assert e.value.exit_code == 3
    lazy = Bundle.load(bundle.root, lazily=True)  # how scoring loads: each file checked when opened
    with pytest.raises(BundleError, match=r"model\.onnx\.data: sha256 mismatch"):
        check_external_data(lazy, "onnx/model.onnx")


def _external(name: str, location: str) -> onnx.TensorProto:
    tensor = numpy_helper.from_array(np.zeros(4, dtype=np.float32), name)
    set_external_data(tensor, location=location)
    tensor.ClearField("raw_data")
    return tensor


def test_locations_found_in_function_bodies_and_attribute_defaults(tmp_path: Path) -> None:
    """Functions: a node's tensor attribute, a GRAPH and a GRAPHS attribute, and an attribute's default."""
    inner = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=_external("in_graph", "g.data"))],
        "inner",
        [],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [4])],
    )
    nodes = [
        helper.make_node("Constant", [], ["k"], value=_external("in_node", "node.data")),
        helper.make_node("If", ["cond"], ["y"], then_branch=inner, else_branch=inner),
        helper.make_node("Loop", [], [], body=inner),
    ]
    graphs_attr = helper.make_attribute("branches", [inner])  # a GRAPHS attribute
    nodes[2].attribute.append(graphs_attr)
    default = helper.make_attribute("w", _external("default", "default.data"))
    function = helper.make_function("custom", "F", ["cond"], ["y"], nodes, [helper.make_opsetid("", 17)])
    function.attribute_proto.append(default)
    graph = helper.make_graph([], "g", [], [])
    model = helper.make_model(graph, functions=[function], opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    assert sorted(external_data_locations(path)) == ["default.data", "g.data", "node.data"]
