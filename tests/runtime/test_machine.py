"""The machine probes: usable cores, CPU model name and flags from /proc/cpuinfo."""

from __future__ import annotations

import os
from pathlib import Path

from clsrun.runtime.machine import cpu_flags, cpu_info, cpu_model, default_threads

CPUINFO = """processor\t: 0
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx2 avx_vnni
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu
"""


def test_first_processor_flags_only() -> None:
    assert cpu_flags(CPUINFO) == frozenset({"fpu", "sse2", "avx2", "avx_vnni"})
    assert cpu_flags("processor: 0\n") == frozenset()


def test_cpu_model_name_is_read_with_the_flags(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    info = cpu_info(path)
    assert info.model == "AMD EPYC 7B13" and "avx_vnni" in info.flags and info.known
    assert cpu_model("processor: 0\n")  # no model name: the platform's name, never empty


def test_unreadable_cpuinfo_has_unknown_flags(tmp_path: Path) -> None:
    info = cpu_info(tmp_path / "missing")
    assert not info.known and info.flags == frozenset() and info.model


def test_default_threads_are_the_cores_this_process_may_use() -> None:
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_threads() == expected
