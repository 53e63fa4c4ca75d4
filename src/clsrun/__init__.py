"""clsrun: train text classifiers, export them to fast ONNX variants, and score huge files with them.

The stages live in their own subpackages: ``clsrun.trainer`` (torch), ``clsrun.export`` (torch, onnx)
and ``clsrun.runtime`` (scoring and the CLI, no torch). The Python API's entry points are here too::

    from clsrun import Classifier, Variant
    clf = Classifier.load("my_bundle")              # Classifier.load() for the shipped default model
    clf.predict(["很好用", "太差了"]).labels           # ["pos", "neg"]

They are imported on first use (module ``__getattr__``), so ``import clsrun`` stays instant and never
imports numpy, onnxruntime or torch.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# onnxruntime 1.32+ on Linux and macOS keeps a device id and an event database under ~/.cache/Microsoft and
# sends usage events, unless this is set before it starts: a scoring job writes nothing outside its output
# and clsrun's speeds cache, and sends nothing (a home it cannot write printed a coloured warning into every
# job's log). Every clsrun module is under this package, so it is set before any of them imports
# onnxruntime; a value the user set is kept (ORT_DISABLE_TELEMETRY=0 turns it back on).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# name -> module that defines it, imported when the name is first asked for
_LAZY = {"Classifier": "clsrun.runtime.classifier", "Variant": "clsrun.runtime.variant"}
__all__ = ["Classifier", "Variant", "__version__"]

if TYPE_CHECKING:
    from clsrun.runtime.classifier import Classifier
    from clsrun.runtime.variant import Variant


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clsrun' has no attribute {name!r}")
