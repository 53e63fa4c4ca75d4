"""ONNX export, graph fusion, fp16/int8 variants and the accuracy gate (needs the `train` extra).

Public API: :func:`export_bundle` with :class:`ExportOptions` (and :class:`Int8Options`), returning an
:class:`ExportReport`. Everything heavy (torch, onnx, the onnxruntime tools) is imported when used.
"""

from __future__ import annotations

from clsrun.export.exporter import EXPORT_PRECISIONS, ExportOptions, export_bundle
from clsrun.export.quantize import Int8Options
from clsrun.export.report import ExportReport

__all__ = ["EXPORT_PRECISIONS", "ExportOptions", "ExportReport", "Int8Options", "export_bundle"]
