"""FLOPs of a bundle's model, counted on the eager PyTorch model, and each backend's share of the matmul peak.

Achieved FLOP/s = matmul and convolution FLOPs of the padded bulk batches (``torch.utils.flop_counter`` on
the eager model) / the median bulk seconds. Every backend runs the same batches, so the same FLOPs: what
differs is the time. The fraction is of the matmul peak of the backend's precision (``machine.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from clsrun.bench.inputs import Planned
    from clsrun.runtime.bundle import Bundle

FlopsOf = Callable[[int, int], float]  # (rows B, length T) -> FLOPs of one (B, T) forward pass

# Why a fraction can pass 100 %: what the report's note says under the table.
INT8_NOTE = "int8 multiply-adds counted as FLOPs against the fp32 peak: int8 units do more per cycle"
ABOVE_PEAK_NOTE = (
    "above 100 % of the fp32 peak: the peak is one square matmul measured once before the backends ran, and "
    "this backend ran faster than that matmul did (its kernels suit its shapes better, or the cores were less "
    "busy then: compare the load averages); the figure is an upper bound on efficiency, rows/s are unaffected"
)


def flops_model(bundle: Bundle, input_names: tuple[str, ...], lengths: list[int]) -> FlopsOf:
    """``f(B, T)``: matmul + convolution FLOPs of one ``(B, T)`` forward pass, fitted from counts.

    ``torch.utils.flop_counter`` counts the eager model at three lengths (batch 1); FLOPs of these models
    are a quadratic in ``T`` (attention is ``T^2``; convolutions and dense layers are linear) and
    linear in ``B``, so the exact quadratic through the three points gives every shape without running it.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from clsrun.trainer.models import load_model

    model = load_model(bundle).eval()
    points = sorted(set(lengths))
    counts = []
    for t in points:
        feed = {name: torch.ones((1, t), dtype=torch.int64) for name in input_names}
        if "token_type_ids" in feed:
            feed["token_type_ids"] = torch.zeros((1, t), dtype=torch.int64)
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            model(**feed)
        counts.append(float(counter.get_total_flops()))
    degree = min(2, len(points) - 1)
    coeffs = np.polyfit(np.asarray(points, dtype=np.float64), np.asarray(counts), degree)
    del model

    def f(batch: int, length: int) -> float:
        return batch * max(float(np.polyval(coeffs, length)), 0.0)

    return f


def compute_figures(
    planned: Planned, bulk: dict[str, Any], flops: FlopsOf | None, peak: dict[str, Any], precision: str
) -> dict[str, Any] | None:
    """Executed FLOPs of the backend's bulk batches, achieved FLOP/s (median run) and its fraction of the
    peak."""
    if flops is None:
        return None
    executed = sum(flops(rows, width) for rows, width in planned.shapes())
    achieved = executed / bulk["seconds"].median
    key = precision if precision in peak["peak"] else "fp32"
    fraction = achieved / peak["peak"][key]
    note = INT8_NOTE if precision == "int8" else ABOVE_PEAK_NOTE if fraction > 1.0 else None
    return {
        "flops": executed,
        "flops_per_row": executed / len(planned.tokens.lengths),
        "achieved_flop_per_s": achieved,
        "peak_key": key,
        "peak_flop_per_s": peak["peak"][key],
        "fraction_of_peak": fraction,
        "note": note,
    }
