"""Guards for the packaging traps of DESIGN.md: every subpackage in the wheel, no top-level stage modules."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("runtime", "trainer", "export")


def _subpackage_dirs() -> set[str]:
    """Every folder under the three stage folders and src/clsrun that holds Python modules, as wheel paths."""
    found = {"clsrun"}
    for stage in STAGES:
        for init in (REPO / stage).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO).as_posix()
            found.add(f"clsrun/{rel}")
    for init in (REPO / "src" / "clsrun").rglob("__init__.py"):
        found.add(init.parent.relative_to(REPO / "src").as_posix())
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[zipfile.ZipFile, str]:
    """The wheel, and what the build printed."""
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
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
        text=True,
    )
    (path,) = out.glob("clsrun-*.whl")
    return zipfile.ZipFile(path), done.stdout + done.stderr


@pytest.fixture(scope="module")
def wheel(built: tuple[zipfile.ZipFile, str]) -> zipfile.ZipFile:
    return built[0]


@pytest.mark.slow
def test_wheel_builds_without_setuptools_warnings(built: tuple[zipfile.ZipFile, str]) -> None:
    # e.g. "Package 'clsrun.runtime.samples' is absent from the `packages` configuration" for a data
    # folder, or a deprecated `project.license` table
    warnings = [line.strip() for line in built[1].splitlines() if "Warning" in line]
    assert not warnings, "\n".join(warnings)


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
    shipped = json.loads(wheel.read("clsrun/runtime/default_model/clsrun.json"))
    missing = sorted(f for f in shipped["files"] if f"clsrun/runtime/default_model/{f}" not in names)
    assert not missing, f"default model files left out of the wheel: {missing}"
    assert any(n.startswith("clsrun/runtime/default_model/onnx/") and n.endswith(".onnx") for n in names)
    # a plain data folder, not a package: nothing in it is code
    assert not [n for n in names if n.startswith("clsrun/runtime/default_model/") and n.endswith(".py")]


def test_the_default_model_is_found_as_package_data() -> None:
    from clsrun.runtime.bundle import Bundle, default_model_path

    path = default_model_path()
    assert path.resolve() == (REPO / "runtime" / "default_model").resolve()
    assert not (path / "__init__.py").exists()
    assert Bundle.load(path).spec.kind == "ngram"  # every hashed file present and unchanged


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


@pytest.mark.slow
def test_the_sdist_carries_the_license_and_no_partial_test_suite(tmp_path: Path) -> None:
    """It had no LICENSE (the metadata says MIT) and seven top-level test files without their conftest."""
    import tarfile

    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--skip-dependency-check", "-o",
         str(tmp_path), str(REPO)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (sdist,) = tmp_path.glob("clsrun-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    assert "LICENSE" in names and "runtime/default_model/clsrun.json" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]
