"""Which int8 dot-product instructions this CPU has, from its ``/proc/cpuinfo`` flags (``runtime.machine``).

onnxruntime's int8 kernels (MatMulInteger, QAttention, DynamicQuantizeMatMul) are fast on x86 only with
VNNI (``avx512_vnni`` or ``avx_vnni``): without it, u8s8 products go through ``vpmaddubsw``, whose int16
intermediate can saturate, and int8 can then be slower than fp32 as well as a little less accurate.
Export warns instead of refusing: the accuracy gate still measures what int8 does on this machine.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from clsrun.runtime.machine import CPUINFO, cpu_info

VNNI_FLAGS = ("avx512_vnni", "avx_vnni")


@dataclass(frozen=True)
class CpuFeatures:
    """The int8-relevant CPU flags found; ``known`` is False when they could not be read at all."""

    machine: str
    flags: frozenset[str]
    known: bool

    @property
    def vnni(self) -> bool:
        """True when the CPU has AVX512-VNNI or AVX-VNNI (the fast int8 dot product on x86)."""
        return any(f in self.flags for f in VNNI_FLAGS)

    def summary(self) -> dict[str, object]:
        """What the export report records about the machine that measured the variants."""
        return {
            "machine": self.machine,
            "avx2": "avx2" in self.flags,
            "avx512f": "avx512f" in self.flags,
            "avx512_vnni": "avx512_vnni" in self.flags,
            "avx_vnni": "avx_vnni" in self.flags,
            "flags_known": self.known,
        }


def detect(cpuinfo: Path = CPUINFO) -> CpuFeatures:
    """Read this machine's CPU flags (``runtime.machine``); without ``/proc/cpuinfo`` they are unknown."""
    info = cpu_info(cpuinfo)
    return CpuFeatures(platform.machine(), info.flags, info.known)


def int8_warning(features: CpuFeatures) -> str | None:
    """A one-line warning when int8 is asked for on a CPU without VNNI, else None."""
    if features.vnni:
        return None
    if not features.known:
        return (
            f"could not read CPU flags on {features.machine}: int8 speed is unknown here; "
            "compare it with fp32 using `clsrun bench`"
        )
    return (
        "this CPU has neither AVX512-VNNI nor AVX-VNNI: int8 inference may be slower than fp32 here and "
        "slightly less accurate (the accuracy gate still measures it); compare with `clsrun bench`"
    )
