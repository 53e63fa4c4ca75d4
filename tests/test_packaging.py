"""Guards for the packaging traps of DESIGN.md: every subpackage in the wheel, no top-level stage modules."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("runtime", "trainer", "export")


def _subpackage_dirs() -> set[str]:
    """Every folder under the three stage folders that holds Python modules, as wheel paths."""
    found = {"clsrun"}
    for stage in STAGES:
        for init in (REPO / stage).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO).as_posix()
            found.add(f"clsrun/{rel}")
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("clsrun-*.whl")
    return zipfile.ZipFile(path)


@pytest.mark.slow
def test_wheel_holds_every_subpackage_under_clsrun(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    packages = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    missing = sorted(_subpackage_dirs() - packages)
    assert not missing, (
        f"subpackages missing from the wheel (add them to [tool.setuptools] packages): {missing}"
    )
    top_level = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top_level == {"clsrun"}, f"the wheel installs top-level names besides clsrun: {top_level}"


@pytest.mark.slow
def test_wheel_ships_the_default_model(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert "clsrun/runtime/default_model/clsrun.json" in names
    assert any(n.startswith("clsrun/runtime/default_model/onnx/") and n.endswith(".onnx") for n in names)


@pytest.mark.parametrize("name", STAGES)
def test_no_top_level_stage_module_is_importable(name: str, tmp_path: Path) -> None:
    # Run from an empty folder so the repository itself is not on sys.path.
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import importlib.util, sys; sys.exit(importlib.util.find_spec({name!r}) is not None)",
        ],
        cwd=tmp_path,
        capture_output=True,
    )
    assert proc.returncode == 0, f"a top-level module {name!r} is importable from site-packages"


def test_stages_import_under_the_namespace() -> None:
    import clsrun.export
    import clsrun.runtime
    import clsrun.trainer

    for module in (clsrun.runtime, clsrun.trainer, clsrun.export):
        assert Path(module.__file__ or "").resolve().is_relative_to(REPO), module.__file__


def test_no_conftest_at_repo_root() -> None:
    assert not (REPO / "conftest.py").exists(), "a root conftest puts the repo on sys.path (see DESIGN.md)"
