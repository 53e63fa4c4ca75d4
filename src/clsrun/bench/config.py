"""What ``clsrun bench`` measures: :class:`BenchConfig`, one field per command-line option, and the backends."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clsrun.runtime.errors import UsageError

# Every way to run a bundle that bench compares, in report order.
BACKENDS = (
    "pipeline",
    "torch-fp32",
    "torch-bf16",
    "onnx-fp32",
    "onnx-int8",
    "onnx-fp16",
    "openvino-int8",
    "predict",
)
MATMUL_N = (
    2048  # side of the square matmul that measures the FLOP/s peak: big enough to reach the BLAS plateau
)


@dataclass
class BenchConfig:
    """What ``clsrun bench`` measures; every field is a command-line option."""

    bundle: Path
    data: Path
    text_col: str = "text"
    backends: tuple[str, ...] = BACKENDS
    batch_sizes: tuple[int, ...] = (1, 4, 16)
    repeats: int = 3  # timed repetitions of every series; the median is reported
    warmup: int = 3  # untimed calls before each series
    max_rows: int = 5000  # the first N non-empty texts of FILE (0: all)
    latency_calls: int = 100  # at most this many timed calls per batch size and repeat
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # every backend's threads and the matmul peak's; None: every usable core
    matmul_n: int = MATMUL_N  # size of the square matmul that measures the peak (tests use a small one)

    def validate(self) -> BenchConfig:
        """Refuse unknown backends and non-positive counts, naming the flag; returns self."""
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise UsageError(f"--backends: unknown {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
        if not self.backends:
            raise UsageError(f"--backends: name at least one of {', '.join(BACKENDS)}")
        self.backends = tuple(dict.fromkeys(self.backends))  # each measured once, in the order given
        self.batch_sizes = tuple(dict.fromkeys(self.batch_sizes))
        if self.repeats < 1 or any(b < 1 for b in self.batch_sizes):
            raise UsageError("--repeats and --batch-sizes must be positive")
        return self
