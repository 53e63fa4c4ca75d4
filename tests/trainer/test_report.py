"""The confusion-matrix heat map stays a picture a person can open, however many labels the model has."""

from __future__ import annotations

from pathlib import Path

from clsrun.runtime.metrics import classification_report
from clsrun.trainer.report import MAX_FIGURE_INCHES, write_confusion_png


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]  # PNG signature, then the IHDR chunk: width and height, big-endian
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_a_heat_map_of_many_labels_is_capped(tmp_path: Path) -> None:
    labels = [f"class {i:03d}" for i in range(150)]
    report = classification_report(labels * 2, labels[1:] + labels[:1] + labels, labels)
    write_confusion_png(tmp_path / "many.png", report)
    width, height = _png_size(tmp_path / "many.png")
    assert width <= MAX_FIGURE_INCHES * 100 and height <= MAX_FIGURE_INCHES * 100
    write_confusion_png(tmp_path / "few.png", classification_report(["a", "b"], ["a", "a"], ["a", "b"]))
    assert _png_size(tmp_path / "few.png")[0] < width  # a small model keeps its small figure
