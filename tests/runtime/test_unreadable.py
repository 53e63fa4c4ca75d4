"""A warning before scoring when the model cannot read the first rows (another script, [UNK] tokens,
characters outside a char-CNN's vocabulary), and none for text it was trained on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from clsrun.runtime.bundle import Bundle, default_model_path
from clsrun.runtime.encode import make_encoder
from clsrun.runtime.unreadable import unreadable

ENGLISH = ["The film was great, a lovely story.", "Shares fell sharply on Monday after the report."] * 10
CHINESE = ["这个电影很好看，非常喜欢", "质量太差了，不推荐购买"] * 10


def _reason(bundle_root: Path, texts: list[str]) -> str | None:
    bundle = Bundle.load(bundle_root)
    return unreadable(bundle.spec.kind, make_encoder(bundle), bundle.spec.normalization, texts)


def test_the_cjk_ngram_model_cannot_read_english_and_says_the_script() -> None:
    reason = _reason(default_model_path(), ENGLISH)
    assert reason is not None and "100% of their letters are not CJK" in reason and "CJK text" in reason
    assert _reason(default_model_path(), CHINESE) is None
    assert (
        _reason(default_model_path(), [str(i * 7919) for i in range(50)]) is None
    )  # no letters: not this check
    assert _reason(default_model_path(), CHINESE[:2] + ENGLISH[:2]) is None  # mixed text is the model's own
    assert _reason(default_model_path(), []) is None


def test_a_char_cnn_says_characters_outside_its_vocabulary(toy_bundle: Path) -> None:
    reason = _reason(toy_bundle, ["zzqq xx", "qqqq"] * 5)
    assert reason is not None and "characters are outside its vocabulary" in reason
    assert _reason(toy_bundle, ["gg bb", "ggg"] * 5) is None


def test_a_bert_model_says_unknown_tokens(tiny_bert_bundle: Path) -> None:
    reason = _reason(tiny_bert_bundle, ["안녕하세요 반갑습니다", "정말 좋은 영화"] * 5)
    assert reason is not None and "tokens are [UNK]" in reason
    assert _reason(tiny_bert_bundle, ["the movie was good", "这个电影很好"] * 5) is None


def test_predict_warns_once_before_scoring_and_still_scores_every_row(tmp_path: Path) -> None:
    src = tmp_path / "english.csv"
    pacsv.write_csv(pa.table({"text": ENGLISH}), src)
    done = subprocess.run(
        [sys.executable, "-m", "clsrun", "predict", str(src), "--out", str(tmp_path / "o.csv"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("the default model cannot read most of the first rows") == 1
    assert len(pacsv.read_csv(tmp_path / "o.csv")) == len(ENGLISH)
    chinese = tmp_path / "chinese.csv"
    pacsv.write_csv(pa.table({"text": CHINESE}), chinese)
    quiet = subprocess.run(
        [
            sys.executable,
            "-m",
            "clsrun",
            "predict",
            str(chinese),
            "--out",
            str(tmp_path / "c.csv"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.mark.parametrize("rows", [1, 300])
def test_the_sample_is_bounded(rows: int) -> None:
    from clsrun.runtime.unreadable import SAMPLE_CHARS, SAMPLE_ROWS, _sample

    texts = ["x" * 5000] * rows
    sample = _sample(texts)
    assert len(sample) <= SAMPLE_ROWS and sum(map(len, sample)) <= SAMPLE_CHARS
