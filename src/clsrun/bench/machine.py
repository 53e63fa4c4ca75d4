"""The machine a bench ran on: CPU, cores, memory, GPU, library versions, load, and a measured matmul peak.

The peak is what each backend's achieved FLOP/s is divided by: one square matmul per library and precision,
best of a few tries (noise only ever makes a run slower), with the same threads as the backends.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from clsrun.bench.config import MATMUL_N


def machine_info(device: str) -> dict[str, Any]:
    """CPU model, cores, memory and GPU of this machine."""
    from clsrun.runtime.machine import cpu_info, default_threads

    info: dict[str, Any] = {
        "cpu": cpu_info().model,
        "logical_cores": os.cpu_count(),
        "usable_cores": default_threads(),
        "platform": platform.platform(),
        "device": device,
        "gpu": None,
    }
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
    return info


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose speed is measured."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("clsrun", "numpy", "onnxruntime", "onnxruntime-gpu", "torch", "transformers", "tokenizers"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def load_average() -> float | None:
    """The machine's 1-minute load average (None where the OS has none): how much other work competed."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def passive_openmp() -> str:
    """Make PyTorch's OpenMP workers sleep when idle, as the runtime's onnxruntime sessions do.

    By default OpenMP workers spin between parallel regions; on cores shared with other work, spinning
    measures the contention, not the model. The variable only takes effect before torch loads OpenMP, so it
    is set before the first torch import; a value the user set wins. Returns the policy in force, recorded
    in the report.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return os.environ.get("OMP_WAIT_POLICY", "(unset: OpenMP default, set after torch was imported)")


def _best_seconds(fn: Callable[[], Any], tries: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _torch_dtypes(device: str) -> dict[str, Any]:
    """The torch precisions worth a peak here: fp32, bf16 where the device runs it natively, fp16 on CUDA."""
    import torch

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if device == "cuda":
        dtypes["fp16"] = torch.float16
    elif not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        dtypes.pop("bf16")
    return dtypes


def measure_matmul_peak(device: str, threads: int, n: int = MATMUL_N, tries: int = 5) -> dict[str, Any]:
    """FLOP/s of an ``n x n`` matmul: numpy and torch fp32 (and bf16/fp16 where they are fast).

    ``peak["fp32"]`` etc. are the larger of the libraries' figures, the reference each backend's achieved
    FLOP/s is divided by. The load average when it was measured is kept beside it.
    """
    import torch
    from threadpoolctl import threadpool_limits

    flops = 2.0 * n**3
    measured: dict[str, float] = {}
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    load = load_average()
    with threadpool_limits(threads):
        measured["numpy_fp32"] = flops / _best_seconds(lambda: a @ b, tries)
    torch.set_num_threads(threads)
    for name, dtype in _torch_dtypes(device).items():
        ta = torch.from_numpy(a).to(device=device, dtype=dtype)
        tb = torch.from_numpy(b).to(device=device, dtype=dtype)

        def mm(ta: Any = ta, tb: Any = tb) -> None:
            torch.matmul(ta, tb)
            if device == "cuda":
                torch.cuda.synchronize()

        measured[f"torch_{name}"] = flops / _best_seconds(mm, tries)
    peak = {
        "fp32": max(measured["numpy_fp32"], measured["torch_fp32"]),
        **{k: measured[f"torch_{k}"] for k in ("bf16", "fp16") if f"torch_{k}" in measured},
    }
    return {
        "matmul_n": n,
        "threads": threads,
        "device": device,
        "tries": tries,
        "load_average_1min": load,
        "measured": measured,
        "peak": peak,
    }
