"""The runtime (and the CLI shell) never imports torch or the training/export stages at import time."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import clsrun.runtime, clsrun.runtime.cli
import clsrun.runtime.classifier, clsrun.runtime.score, clsrun.runtime.readers, clsrun.runtime.infer
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "transformers", "onnx"}
               or m.startswith(("clsrun.trainer", "clsrun.export")))
print(",".join(heavy))
"""


def test_runtime_and_cli_import_no_torch() -> None:
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported at import time: {done.stdout.strip()}"


def test_the_api_is_importable_from_the_package_root_and_import_clsrun_stays_light() -> None:
    code = """
import sys
import clsrun
light = not any(m.split(".")[0] in {"numpy", "pyarrow", "onnxruntime", "torch"} for m in sys.modules)
from clsrun import Classifier, Variant
from clsrun.runtime.classifier import Classifier as Same
print(light, Classifier is Same, Variant.__name__, "torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "Variant", "False"]
