"""Scoring runtime: bundles, streaming file I/O, batched onnxruntime inference and the CLI.

This package never imports torch or the other stages at import time, so a scoring box needs only
onnxruntime, numpy, pyarrow and tokenizers (guarded by tests/runtime/test_imports.py).
"""
