"""A candidate ONNX file (export's staging folder) opens through the runtime's own runner, with every check."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from clsrun.runtime.bundle import Bundle
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.errors import BundleError, UsageError
from clsrun.runtime.variant import Variant, onnx_candidate, staged_candidate

STAGE = ".tmp-export-test"


@pytest.fixture
def bundle(make_bundle: Callable[..., Path]) -> Bundle:
    """A toy bundle with a copy of its fp32 file in a staging folder, as export leaves it before the gate."""
    root = make_bundle("b")
    (root / STAGE).mkdir()
    shutil.copy(root / "onnx/model.onnx", root / STAGE / "model.onnx")
    return Bundle.load(root)


def test_a_candidate_runs_as_a_passed_variant_does(bundle: Bundle) -> None:
    staged, choice = staged_candidate(bundle, f"{STAGE}/model.onnx", "fp32", "cpu")
    assert (choice.backend, choice.precision, choice.device) == ("onnx", "fp32", "cpu")
    candidate = Classifier.open(staged, choice, threads=1)
    passed = Classifier.load(bundle, Variant(backend="onnx", precision="fp32", device="cpu", threads=1))
    texts = ["ggg", "bbb", "好好", "差"]
    assert candidate.predict(texts).labels == passed.predict(texts).labels == ["pos", "neg", "pos", "neg"]
    assert candidate.batching == passed.batching  # predict's batch options for this kind and device


def test_a_candidate_outside_the_bundle_or_missing_is_refused(bundle: Bundle) -> None:
    with pytest.raises(BundleError, match="outside the bundle"):
        onnx_candidate(bundle, "../model.onnx", "fp32")
    with pytest.raises(BundleError, match="no such variant file"):
        onnx_candidate(bundle, f"{STAGE}/model.int8.onnx", "int8")
    with pytest.raises(UsageError, match="an exported variant is one of"):
        onnx_candidate(bundle, f"{STAGE}/model.onnx", "bf16")


def test_a_candidate_whose_external_data_leaves_the_bundle_is_refused(bundle: Bundle, tmp_path: Path) -> None:
    """The staging folder gets no exemption: external data is checked when the runner opens the file."""
    model = onnx.load(str(bundle.root / STAGE / "model.onnx"))
    outside = tmp_path / "outside"
    outside.mkdir()
    onnx.save(
        model,
        str(outside / "model.onnx"),
        save_as_external_data=True,
        location="weights.data",
        size_threshold=0,
    )
    shutil.copy(outside / "model.onnx", bundle.root / STAGE / "model.onnx")
    os.symlink(outside / "weights.data", bundle.root / STAGE / "weights.data")
    staged, choice = staged_candidate(bundle, f"{STAGE}/model.onnx", "fp32", "cpu")
    with pytest.raises(BundleError, match="outside the bundle"):
        Classifier.open(staged, choice, threads=1)


def test_an_unlisted_candidate_is_not_read(make_bundle: Callable[..., Path]) -> None:
    """Without ``with_staged`` a staged file was never hashed: refused like any unlisted bundle file."""
    root = make_bundle("b")
    (root / STAGE).mkdir()
    shutil.copy(root / "onnx/model.onnx", root / STAGE / "model.onnx")
    bundle = Bundle.load(root)
    choice = onnx_candidate(bundle, f"{STAGE}/model.onnx", "fp32", "cpu")
    with pytest.raises(BundleError, match=r"not listed in clsrun\.json"):
        Classifier.open(bundle, choice, threads=1)
