"""VNNI detection from /proc/cpuinfo flags and the int8 warning."""

from __future__ import annotations

from pathlib import Path

from clsrun.export.cpu_features import detect, int8_warning

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu vme sse2 avx2 {extra}
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu
"""


def _features(tmp_path: Path, extra: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.format(extra=extra))
    return detect(path)


def test_avx512_vnni_detected(tmp_path: Path) -> None:
    features = _features(tmp_path, "avx512f avx512_vnni")
    assert features.vnni and int8_warning(features) is None
    assert features.summary()["avx512_vnni"] is True


def test_avx_vnni_detected(tmp_path: Path) -> None:
    assert _features(tmp_path, "avx_vnni").vnni


def test_no_vnni_warns(tmp_path: Path) -> None:
    features = _features(tmp_path, "avx512f")
    assert not features.vnni
    warning = int8_warning(features)
    assert warning is not None and "VNNI" in warning


def test_unreadable_cpuinfo_warns_unknown(tmp_path: Path) -> None:
    features = detect(tmp_path / "missing")
    assert not features.known
    assert "could not read CPU flags" in (int8_warning(features) or "")
