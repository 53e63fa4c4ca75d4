"""Runner plugins: a backend that is not installed is a one-line error naming the extra to install."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from clsrun.runtime.bundle import Bundle
from clsrun.runtime.errors import BundleError, DependencyError
from clsrun.runtime.plugins import RUNNER_GROUP, runner_plugin
from clsrun.runtime.variant import Variant, choose


def _no_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.entry_points
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda **kw: [] if kw.get("group") == RUNNER_GROUP else real(**kw),
    )


def test_a_missing_runner_plugin_names_the_extra(monkeypatch: pytest.MonkeyPatch, toy_bundle: Path) -> None:
    _no_plugins(monkeypatch)
    with pytest.raises(DependencyError, match=r"pip install '\.\[train\]'"):
        runner_plugin("torch")
    with pytest.raises(DependencyError, match=r"--backend torch: .*pip install '\.\[train\]'"):
        choose(Bundle.load(toy_bundle), Variant(backend="torch"))
    assert choose(Bundle.load(toy_bundle)).backend == "onnx"  # scoring the export needs no plugin


def test_a_plugin_whose_libraries_are_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(self: importlib.metadata.EntryPoint) -> object:
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(importlib.metadata.EntryPoint, "load", load)
    with pytest.raises(DependencyError, match=r"needs the 'torch' package: pip install '\.\[train\]'"):
        runner_plugin("torch")


def test_a_never_exported_bundle_without_torch_says_to_export(
    monkeypatch: pytest.MonkeyPatch, make_bundle: object
) -> None:
    bundle = Bundle.load(make_bundle("n", passed={"fp32": False}))  # type: ignore[operator]
    _no_plugins(monkeypatch)
    with pytest.raises(BundleError, match="torch is not installed for the torch backend; run `clsrun export"):
        choose(bundle)
