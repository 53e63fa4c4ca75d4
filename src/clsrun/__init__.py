"""clsrun: train text classifiers, export them to fast ONNX variants, and score huge files with them.

The stages live in their own subpackages: ``clsrun.trainer`` (torch), ``clsrun.export`` (torch, onnx)
and ``clsrun.runtime`` (scoring and the CLI, no torch).
"""

__version__ = "0.1.0"
