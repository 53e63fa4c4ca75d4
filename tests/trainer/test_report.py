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


def test_most_texts_longer_than_max_length_is_a_warning_with_their_lengths() -> None:
    """A char-CNN at 256 characters read about a ninth of each BBC article and lost to TF-IDF; only
    "100% of training texts cut" was said, as information."""
    from clsrun.trainer.reporting import long_texts_warning

    said = long_texts_warning([2000] * 60 + [3000] * 30 + [100] * 10, 256, "characters")
    assert said is not None and said.startswith("90% of training texts are longer than --max-length 256")
    assert "median is 2,000 characters and 90th percentile 3,000" in said
    assert long_texts_warning([100] * 60 + [2000] * 40, 256, "characters") is None
    assert long_texts_warning([], 256, "characters") is None
