"""The confusion-matrix heat map stays a picture a person can open, however many labels the model has."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_labels_no_font_draws_are_one_line_not_matplotlibs_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    """Chinese labels were boxes, and matplotlib's "Glyph ... missing from font(s)" warnings (with a line
    of source each) reached stderr; a CJK font is used where one is installed, else one line says so."""
    import logging

    from clsrun.trainer.report import _fonts_for

    report = classification_report(["好评", "差评"], ["好评", "好评"], ["好评", "差评"])
    with caplog.at_level(logging.WARNING):
        write_confusion_png(tmp_path / "zh.png", report)
    assert (tmp_path / "zh.png").stat().st_size > 0
    assert not [w for w in recwarn if "missing from font" in str(w.message)]
    cjk_font = len(_fonts_for(["好评"])) > 1
    assert ("no installed font draws some characters" in caplog.text) != cjk_font
    assert _fonts_for(["pos", "neg"]) == ["DejaVu Sans"]


def test_confusion_csv_names_are_neutralised_as_predict_writes_csv(tmp_path: Path) -> None:
    import csv

    from clsrun.trainer.report import write_confusion_csv

    write_confusion_csv(
        tmp_path / "c.csv", classification_report(["=1+1", "ok"], ["ok", "ok"], ["=1+1", "ok"])
    )
    rows = list(csv.reader((tmp_path / "c.csv").open(encoding="utf-8")))
    assert rows[0] == ["true\\predicted", "'=1+1", "ok"] and rows[1][0] == "'=1+1"
