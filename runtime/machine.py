"""What this machine offers: the cores this process may use, the CPU's model and flags, onnxruntime's providers.

The one place that reads ``sched_getaffinity`` and ``/proc/cpuinfo``: the runtime sizes its thread pools
from :func:`default_threads`, export warns about int8 from :func:`cpu_info`'s flags, and bench records
the CPU model beside its figures. :func:`ort_providers` says whether onnxruntime can use a GPU here,
:func:`nvidia_gpu_present` whether there is one at all.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
DEV = Path("/dev")  # where NVIDIA's driver puts a device file per GPU


def default_threads() -> int:
    """CPU cores this process may use (container and affinity limits included); the default ``--threads``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class CpuInfo:
    """The first processor listed in ``/proc/cpuinfo``; ``known`` is False when it could not be read."""

    model: str  # "model name", else what ``platform`` says (e.g. "x86_64")
    flags: frozenset[str]  # instruction-set flags, e.g. "avx2", "avx512_vnni"
    known: bool  # the flags were read (False: no /proc/cpuinfo, or it lists no flags)


def cpu_flags(text: str) -> frozenset[str]:
    """The ``flags`` of the first processor listed in a ``/proc/cpuinfo`` text (empty when absent)."""
    return frozenset(_first(text, "flags").split())


def cpu_model(text: str) -> str:
    """The ``model name`` of the first processor in a ``/proc/cpuinfo`` text, else ``platform``'s name."""
    return _first(text, "model name") or platform.processor() or platform.machine()


def _first(text: str, key: str) -> str:
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == key:
            return value.strip()
    return ""


def cpu_info(path: Path = CPUINFO) -> CpuInfo:
    """This machine's CPU model and flags; on systems without ``/proc/cpuinfo`` the flags are unknown."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return CpuInfo(cpu_model(""), frozenset(), known=False)
    flags = cpu_flags(text)
    return CpuInfo(cpu_model(text), flags, known=bool(flags))


def ort_providers() -> list[str]:
    """onnxruntime's execution providers here (``CUDAExecutionProvider`` with onnxruntime-gpu and a GPU)."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def nvidia_gpu_present() -> bool:
    """Whether an NVIDIA GPU may be usable here, judged from its device files (``/dev/nvidia0``, ...).

    A cheap first test before asking torch (which takes seconds to import) whether it sees CUDA: a
    CPU-only machine never imports torch to decide ``--backend auto``. ``CUDA_VISIBLE_DEVICES`` set to
    nothing or ``-1`` hides every GPU, as it does from CUDA itself.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return any(DEV.glob("nvidia[0-9]*"))
