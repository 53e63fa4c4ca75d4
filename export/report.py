"""What an export produced: ``onnx/export_report.json`` (:func:`report_json`) and :class:`ExportReport`.

:meth:`ExportReport.to_text` is what ``clsrun export`` prints: every variant once, in one table with one
rounding per column (the reference line, one line per variant, the int8 candidates when static QDQ was
tried, the fused operators, the report's path). Nothing else reports the variants: export logs only
warnings (a CPU without VNNI, an attention block the optimizer did not fuse).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clsrun.export import cpu_features
from clsrun.export.gate import EvalSet, VariantResult
from clsrun.runtime.variant import split_name

if TYPE_CHECKING:
    from clsrun.runtime.bundle import Bundle


@dataclass
class ExportReport:
    """What an export produced: the report written to ``onnx/export_report.json`` and the variants."""

    path: Path
    data: dict[str, Any]
    variants: dict[str, VariantResult]

    @property
    def passed(self) -> list[str]:
        return [name for name, r in self.variants.items() if r.passed]

    def to_text(self) -> str:
        """The report for people: every variant once, passed, forced or refused (see the module doc)."""
        ref = self.data["reference"]
        lines = [f"eager PyTorch: accuracy {ref['accuracy']:.4f} on {ref['rows']:,} rows of {ref['source']}"]
        for name, result in self.variants.items():
            lines.append(self._line(name, result))
            lines += _candidates(self.data["variants"][name].get("quantization", {}))
        fusions = self.data["fusions"].get("fp32")
        if fusions:
            lines.append("fused operators (fp32): " + ", ".join(f"{op} {n}" for op, n in fusions.items()))
        forced = {"-".join(split_name(name)) for name, result in self.variants.items() if result.forced}
        lines += _speeds(self.data.get("speeds") or {}, forced)
        lines.append(f"report: {self.path} ({self.data['export_seconds']:.1f} s)")
        return "\n".join(lines)

    def _line(self, name: str, result: VariantResult) -> str:
        status = "forced" if result.forced else "passed" if result.passed else "refused"
        if not result.built:
            return f"{name:5s} {status:7s} {'(not built)':24s} {result.reason}"
        ran = result.details.get("ran", {})
        method = self.data["variants"][name].get("quantization", {}).get("method")
        return (
            f"{name:5s} {status:7s} {result.file if result.kept else '(removed)':24s} "
            f"accuracy {result.accuracy:.4f} (drop {result.accuracy_drop_pts:+.2f} pts), agreement "
            f"{result.label_agreement:.4f}, max |logit diff| {result.max_abs_logit_diff:.2g}, "
            f"gate pass {result.rows_per_s:,.0f} rows/s on {ran.get('device', '?')} ({ran.get('streams', '?')} "
            "streams, first calls included), "
            f"{(result.size_bytes or 0) / 1e6:.1f} MB"
            + (f", {method}" if method else "")
            + (f"; {result.reason}" if result.reason else "")
        )


def _speeds(speeds: dict[str, Any], forced: set[str] | None = None) -> list[str]:
    """One line on the alternating timing ``--backend auto`` chooses by (none when nothing to choose);
    ``forced``: keys of variants ``--keep-refused`` kept, which auto passes over while another is there."""
    rates = speeds.get("rows_per_s")
    if not rates:
        return []
    forced = forced or set()
    ordered = sorted(rates.items(), key=lambda kv: (kv[0] in forced, -kv[1]))  # what auto runs: first
    figures = ", ".join(f"{key} {rate:,.0f}" for key, rate in sorted(rates.items(), key=lambda kv: -kv[1]))
    return [
        f"timed for --backend auto (rows/s on {speeds['rows']:,} gate rows, warm, median of {speeds['rounds']} "
        f"alternating rounds; the gate pass figures above include first calls): {figures}; "
        f"--backend auto runs {ordered[0][0]} on this CPU"
        + (" (it passes over what --keep-refused kept)" if forced & set(rates) else "")
    ]


def _candidates(quantization: dict[str, Any]) -> list[str]:
    """One line on the two int8 candidates when static QDQ was tried, in the table's rounding."""
    found = quantization.get("candidates")
    if not found:
        return []

    def figures(c: dict[str, Any]) -> str:
        if c.get("built") is False:
            return str(c.get("reason"))
        return f"accuracy {c['accuracy']:.4f}, {c['rows_per_s']:,.0f} rows/s"

    from clsrun.export.int8 import STATIC_MAX_EXTRA_DROP_PTS

    kept = "static QDQ" if quantization.get("method") == "static-qdq" else "dynamic"
    return [
        f"  int8 candidates: dynamic {figures(found['dynamic'])}; static QDQ {figures(found['static'])} "
        f"(calibrated on {found['calibration_rows']:,} rows); kept {kept} (static replaces dynamic when it "
        f"passes the gate, is faster and at most {STATIC_MAX_EXTRA_DROP_PTS:g} points, or one gate row, "
        "less accurate)"
    ]


def report_json(
    bundle: Bundle,
    settings: dict[str, Any],
    eval_set: EvalSet,
    ref_accuracy: float,
    results: dict[str, VariantResult],
    fusions: dict[str, dict[str, int]],
    phases: dict[str, float],
) -> dict[str, Any]:
    """``onnx/export_report.json`` (ARCHITECTURE.md). ``settings``: ``max_accuracy_drop_pts`` and ``forced`` (--keep-refused);
    the int8 result's ``quantization`` rides in its details."""
    import onnxruntime
    import torch

    return {
        "reference": {
            "backend": "torch",
            "accuracy": round(ref_accuracy, 6),
            "rows": eval_set.rows,
            "source": eval_set.source,
        },
        "variants": {name: result.to_json() for name, result in results.items()},
        "fusions": fusions,
        **settings,
        "kind": bundle.spec.kind,
        "cpu": cpu_features.detect().summary(),
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "export_seconds": round(sum(phases.values()), 2),
        "phase_seconds": {phase: round(seconds, 2) for phase, seconds in phases.items()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
