"""``benchmarks/baseline_c.py``: the README's C=1 against C=10 figures come from a script that runs."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _dataset(path: Path, words: tuple[str, str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["label", "text"])
        for i in range(80):
            label = i % 2
            out.writerow([("neg", "pos")[label], f"{words[label]} {words[label]} item {i % 7}"])


def test_it_fits_each_data_set_at_each_c_and_prints_the_gain(tmp_path: Path) -> None:
    _dataset(tmp_path / "reviews_zh_train.csv", ("很差", "很好"))
    _dataset(tmp_path / "inews_zh_train.csv", ("下跌", "上涨"))
    _dataset(tmp_path / "bbc_en_train.csv", ("bad", "good"))
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "baseline_c.py"),
            "--data-dir",
            str(tmp_path),
            "--c-values",
            "1,10",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^\| (\w+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|", done.stdout, re.MULTILINE)
    assert [(name, c) for name, c, _, _ in rows] == [
        (name, c) for name in ("reviews_zh", "inews_zh", "bbc_en") for c in ("1", "10")
    ]
    assert all(float(acc) == 1.0 for _, _, acc, _ in rows)  # one word tells the classes apart
    assert "C=10 minus C=1, points:" in done.stdout and "- bbc_en: accuracy +0.00" in done.stdout
