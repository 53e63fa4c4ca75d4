"""Keep onnxruntime's tools (optimizer, quantizer, float16 converter) from flooding stderr.

They log progress and advice ("Please consider to run pre-processing", "Model saved to", one line per
tensor without quantization parameters) on the root logger at INFO and WARNING. Export reports what
matters itself (fusions, the gate's verdicts), so during a tool call those loggers are raised to ERROR,
unless clsrun runs with ``--debug`` (root logger at DEBUG), which shows everything.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_onnxruntime_tools() -> Iterator[None]:
    """Raise the root and ``onnxruntime`` loggers to ERROR for the duration, then restore them."""
    root = logging.getLogger()
    if root.isEnabledFor(logging.DEBUG):
        yield
        return
    loggers = [root, logging.getLogger("onnxruntime")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.setLevel(level)
