"""`clsrun eval` warns when DATA is the training file, or when many of its rows are training rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from clsrun.runtime.bundle import Bundle, Normalization, sha256_file, write_spec
from clsrun.runtime.cli import app
from clsrun.runtime.overlap import overlap_warning, training_sample

runner = CliRunner()

# Training rows the toy model scores right ('g' -> pos, 'b' -> neg); new rows written differently.
TRAIN = [("pos", "g" * k + " 好") for k in range(1, 400)] + [("neg", "b" * k + " 差") for k in range(1, 400)]
NEW = [("pos", "好 " + "g" * k) for k in range(1, 300)] + [("neg", "差 " + "b" * k) for k in range(1, 300)]


def _csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("label,text\n" + "".join(f"{a},{b}\n" for a, b in rows), encoding="utf-8")
    return path


def _trained_on(make_bundle: Callable[..., Path], data: Path, rows: list[tuple[str, str]]) -> Path:
    """A toy bundle whose clsrun.json says it was trained on ``data`` (as the trainer records it)."""
    root = make_bundle("b")
    bundle = Bundle.load(root)
    bundle.spec.training = {
        "data_file": str(data),
        "data_sha256": sha256_file(data),
        "val_rows": 80,
        "train_text_sample": training_sample([t for _, t in rows], bundle.spec.normalization, size=64),
    }
    write_spec(root, bundle.spec)
    return root


def test_eval_on_the_training_file_warns(tmp_path: Path, make_bundle: Callable[..., Path]) -> None:
    data = _csv(tmp_path / "train.csv", TRAIN)
    bundle = _trained_on(make_bundle, data, TRAIN)
    res = runner.invoke(app, ["eval", str(bundle), str(data)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(
        f"warning: {data} is the file this model was trained on (same sha256 as train.csv; only its 80 "
        f"validation rows were held out): these scores overstate accuracy on new text"
    )


def test_eval_on_the_training_file_of_a_model_validated_on_another_file_says_all_of_it_was_trained_on(
    tmp_path: Path, make_bundle: Callable[..., Path]
) -> None:
    """With --val-data no row of the training file was held out: it said "only its 80 validation rows"."""
    data = _csv(tmp_path / "train.csv", TRAIN)
    root = _trained_on(make_bundle, data, TRAIN)
    bundle = Bundle.load(root)
    bundle.spec.training = {**bundle.spec.training, "val_data_file": str(tmp_path / "dev.csv")}
    write_spec(root, bundle.spec)
    said = overlap_warning(Bundle.load(root), data, [t for _, t in TRAIN])
    assert said is not None and "every row of it was trained on (validation came from --val-data)" in said
    assert "validation rows were held out" not in said


def test_eval_on_rows_copied_from_the_training_data_warns(
    tmp_path: Path, make_bundle: Callable[..., Path]
) -> None:
    bundle = _trained_on(make_bundle, _csv(tmp_path / "train.csv", TRAIN), TRAIN)
    mixed = _csv(tmp_path / "test.jsonl.csv", NEW + TRAIN[::2])  # 400 of its 998 rows are training rows
    said = overlap_warning(Bundle.load(bundle), mixed, [t for _, t in NEW + TRAIN[::2]])
    assert said is not None and said.startswith("about ") and "are training rows of this model" in said
    share = int(said.split("about ")[1].split("%")[0])
    assert 25 <= share <= 55  # 40 % in truth; estimated from a 1-in-K sample
    res = runner.invoke(app, ["eval", str(bundle), str(mixed)])
    assert res.exit_code == 0 and res.output.startswith("warning: about ")


def test_eval_on_new_rows_says_nothing(tmp_path: Path, make_bundle: Callable[..., Path]) -> None:
    bundle = _trained_on(make_bundle, _csv(tmp_path / "train.csv", TRAIN), TRAIN)
    res = runner.invoke(app, ["eval", str(bundle), str(_csv(tmp_path / "new.csv", NEW))])
    assert res.exit_code == 0 and "warning" not in res.output


def test_the_sample_is_the_same_however_the_text_is_spaced() -> None:
    norm = Normalization()
    texts = [f"row {i}" for i in range(5000)]
    sample = training_sample(texts, norm, size=100)
    assert 50 <= len(sample["hashes"]) // 16 <= 150 and sample["one_in"] == 50
    assert training_sample([f"  row   {i} " for i in range(5000)], norm, size=100) == sample
