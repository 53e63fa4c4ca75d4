"""The house rules a reader relies on, checked on the source (AST, nothing imported):

- dependencies point one way: runtime imports neither trainer, export, bench nor torch; trainer does not
  import export or bench; nothing imports bench. The exceptions are in runtime/cli: a command body
  imports the stage it runs when it runs (so `--help` stays instant), and type hints may name it;
- no function in runtime/, trainer/, export/ or bench is over 60 lines (a CLI command's option declarations do
  not count).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Source folder -> the package it installs as (pyproject's package-dir); `clsrun bench` lives in src/clsrun.
PACKAGES = {
    "runtime": "clsrun.runtime",
    "trainer": "clsrun.trainer",
    "export": "clsrun.export",
    "src/clsrun/bench": "clsrun.bench",
}
FORBIDDEN = {
    "clsrun.runtime": ("clsrun.trainer", "clsrun.export", "clsrun.bench", "torch", "transformers"),
    "clsrun.trainer": ("clsrun.export", "clsrun.bench"),
    "clsrun.export": ("clsrun.bench",),
}
MAX_LINES = 60


def _modules() -> Iterator[tuple[str, Path, ast.Module]]:
    for folder, package in PACKAGES.items():
        files = sorted((REPO / folder).rglob("*.py"))
        assert files, f"no modules under {folder}: the check would pass on nothing"
        for path in files:
            yield package, path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(tree: ast.AST, skip_functions: bool) -> Iterator[tuple[int, str]]:
    """``(line, module)`` of every import under ``tree``; with ``skip_functions``, only those that run at
    import time (not inside functions, nor under ``if TYPE_CHECKING:``)."""
    for node in ast.iter_child_nodes(tree):
        if skip_functions and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if skip_functions and isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            continue
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
        yield from _imports(node, skip_functions)


def _is(module: str, name: str) -> bool:
    return module == name or module.startswith(name + ".")


def test_dependencies_point_one_way() -> None:
    wrong = []
    for package, path, tree in _modules():
        is_cli = path.is_relative_to(REPO / "runtime" / "cli")
        for line, module in _imports(tree, skip_functions=is_cli):
            banned = FORBIDDEN.get(package, ()) if package != "clsrun.bench" else ()
            if any(_is(module, b) for b in banned):
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not wrong, "imports against the direction of the stages:\n" + "\n".join(wrong)


def test_only_the_bench_command_imports_bench() -> None:
    """Not even inside a function: ``clsrun bench``'s body is the one place that reaches measurement code."""
    allowed = REPO / "runtime" / "cli" / "bench.py"
    wrong = [
        f"{path.relative_to(REPO)}:{line}"
        for package, path, tree in _modules()
        if package != "clsrun.bench" and path != allowed
        for line, module in _imports(tree, skip_functions=False)
        if _is(module, "clsrun.bench")
    ]
    assert not wrong, "clsrun.bench imported outside the bench command:\n" + "\n".join(wrong)


def test_the_check_sees_what_it_must_refuse() -> None:
    code = "import clsrun.bench\nfrom clsrun.trainer.models import load_model\ndef f():\n    import torch\n"
    found = [m for _, m in _imports(ast.parse(code), skip_functions=False)]
    assert found == ["clsrun.bench", "clsrun.trainer.models", "torch"]
    assert [m for _, m in _imports(ast.parse(code), skip_functions=True)] == found[:2]


def _length(node: ast.FunctionDef | ast.AsyncFunctionDef, is_command: bool) -> int:
    """Lines of a function; for a CLI command, from its first statement after the docstring."""
    if not is_command:
        return (node.end_lineno or node.lineno) - node.lineno + 1
    body = node.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return (node.end_lineno or node.lineno) - body[0].lineno + 1


@pytest.mark.parametrize("folder", list(PACKAGES))
def test_no_function_is_over_60_lines(folder: str) -> None:
    long = []
    for path in sorted((REPO / folder).rglob("*.py")):
        is_cli = path.is_relative_to(REPO / "runtime" / "cli")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                is_command = is_cli and any(
                    isinstance(d, ast.Call) and getattr(d.func, "attr", "") in ("command", "callback")
                    for d in node.decorator_list
                )
                n = _length(node, is_command)
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {n} lines")
    assert not long, f"functions over {MAX_LINES} lines:\n" + "\n".join(long)
