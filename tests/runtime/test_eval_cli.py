"""`clsrun eval`: metrics a user can check by hand, JSON output, and the errors that must be clear.

The toy bundle (tests/conftest.py) scores by counting characters: 'g'/'好' push to ``pos``, 'b'/'差' to
``neg``, so every prediction below is known in advance.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clsrun.runtime.cli import app

runner = CliRunner()

# True labels; the model predicts pos, pos, neg, neg, pos: the last row is wrong (true neg, predicted pos).
ROWS = [("pos", "ggg"), ("pos", "好好"), ("neg", "bbb"), ("neg", "差"), ("neg", "gggg")]


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "label,text") -> Path:
    path.write_text(header + "\n" + "".join(f"{a},{b}\n" for a, b in rows), encoding="utf-8")
    return path


def test_text_report_has_accuracy_per_class_and_confusion(toy_bundle: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "val.csv", ROWS)
    result = runner.invoke(app, ["eval", str(toy_bundle), str(data)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "accuracy 0.8000" in out
    assert "confusion matrix (rows: true label, columns: predicted)" in out
    lines = out.splitlines()
    neg_row = next(line for line in reversed(lines) if line.startswith("neg "))
    pos_row = next(line for line in reversed(lines) if line.startswith("pos "))
    assert neg_row.split()[1:] == ["2", "1"] and pos_row.split()[1:] == ["0", "2"]


def test_json_report_numbers(toy_bundle: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "val.csv", ROWS)
    result = runner.invoke(app, ["eval", str(toy_bundle), str(data), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["rows"] == 5 and report["accuracy"] == pytest.approx(0.8)
    assert report["labels"] == ["neg", "pos"]
    assert report["confusion"] == [[2, 1], [0, 2]]
    assert report["per_class"]["neg"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": 0.8,
        "support": 3,
    }
    assert report["per_class"]["pos"]["precision"] == pytest.approx(2 / 3)
    # macro = unweighted mean over the two classes
    assert report["macro_recall"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert report["model"]["backend"] == "onnx" and report["unscored"] == 0


def test_json_report_says_which_rows_were_left_out(toy_bundle: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "val.csv", [*ROWS, ("", "ggg"), ("pos", " ")])  # no label; no text
    result = runner.invoke(app, ["eval", str(toy_bundle), str(data), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"] == 5  # scored: the rows with a text and a label
    assert report["left_out"] == [
        f"{data}: left out 2 row(s) without a readable text or a label, the first: row 5"
    ]
    ragged = tmp_path / "ragged.csv"  # a record that cannot be read (3 fields): in the report too
    ragged.write_text(data.read_text(encoding="utf-8") + "pos,a,b\n", encoding="utf-8")
    report = json.loads(runner.invoke(app, ["eval", str(toy_bundle), str(ragged), "--json"]).stdout)
    assert report["left_out"][0].startswith(f"{ragged}: left out 1 unreadable record(s), the first: row 7")
    assert report["left_out"][1].startswith(f"{ragged}: left out 2 row(s) without a readable text")


def test_precision_option_selects_the_variant(toy_bundle: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "val.csv", ROWS)
    result = runner.invoke(app, ["eval", str(toy_bundle), str(data), "--precision", "fp32", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["model"]["precision"] == "fp32"
    result = runner.invoke(app, ["eval", str(toy_bundle), str(data), "--precision", "fp16"])
    assert result.exit_code == 2
    assert "fp16" in result.output


def test_custom_columns_and_jsonl(toy_bundle: Path, tmp_path: Path) -> None:
    data = tmp_path / "val.jsonl"
    data.write_text(
        "".join(json.dumps({"y": y, "review": t}, ensure_ascii=False) + "\n" for y, t in ROWS),
        encoding="utf-8",
    )
    args = ["eval", str(toy_bundle), str(data), "--text-col", "review", "--label-col", "y", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["accuracy"] == pytest.approx(0.8)
    result = runner.invoke(app, ["eval", str(toy_bundle), str(data)])
    assert result.exit_code == 2 and "no column 'text', 'label'" in result.output
    assert "(choose with --text-col / --label-col)" in result.output


def test_labels_the_model_does_not_know_are_a_clear_error(toy_bundle: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "val.csv", [*ROWS, ("positive", "g"), ("meh", "x"), ("meh", "y")])
    result = runner.invoke(app, ["eval", str(toy_bundle), str(data)])
    assert result.exit_code == 2
    assert "labels the model does not know: 'meh', 'positive' (2 such labels, on 3 rows)" in result.output
    assert "the model's labels are 'neg', 'pos'" in result.output


def test_missing_bundle_exits_3(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "val.csv", ROWS)
    result = runner.invoke(app, ["eval", str(tmp_path / "nope"), str(data)])
    assert result.exit_code == 3
    assert "model bundle folder not found" in result.output


def test_eval_on_validation_rows_reproduces_training_metrics(tiny_charcnn_bundle: Path) -> None:
    """Same model, same rows: eval's numbers are the ones training recorded in clsrun.json."""
    recorded = json.loads((tiny_charcnn_bundle / "clsrun.json").read_text(encoding="utf-8"))["training"][
        "metrics"
    ]
    data = tiny_charcnn_bundle / "validation.jsonl.gz"
    result = runner.invoke(app, ["eval", str(tiny_charcnn_bundle), str(data), "--backend", "torch", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["model"]["backend"] == "torch"
    for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1"):
        assert report[key] == pytest.approx(recorded[key]), key
    for label, scores in recorded["per_class"].items():
        assert report["per_class"][label] == pytest.approx(scores), label


def test_eval_of_the_training_file_through_other_columns_says_which_it_was_trained_on(
    small_charcnn_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Trained on --text-col body, evaluated with the default 'text' (a placeholder column here): the
    report said only "the training file", with accuracy 0.2 and every row one class."""
    import csv

    from clsrun.trainer import DataOptions, train

    with small_charcnn_data.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    data = tmp_path / "cols.csv"
    with data.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["y", "body", "text"])
        out.writerows([r["label"], r["text"], "x"] for r in rows)
    bundle = tmp_path / "b"
    options = DataOptions(val_split=0.2, text_col="body", label_col="y")
    train(data, bundle, model="ngram", config={"epochs": 2, "quiet": True}, data_options=options)
    result = runner.invoke(app, ["eval", str(bundle), str(data), "--label-col", "y", "--json"])
    assert result.exit_code == 0, result.output
    warning = " ".join(json.loads(result.stdout)["warnings"])
    assert "trained on its columns 'body' / 'y', these are 'text' / 'y'" in warning
    assert (
        f"every one of the {len(rows)} texts in column 'text' is 'x': is it the right column?" in caplog.text
    )


def test_a_model_label_spelled_like_the_unscored_placeholder_is_no_unscored_row(
    toy_bundle: Path, tmp_path: Path
) -> None:
    """A bundle may have a label "(unscored)": its predictions were counted as unscored rows (accuracy
    1.0 beside "5 rows could not be scored"), and an unscored row of that true label as right."""
    import shutil

    from clsrun.runtime.bundle import SPEC_FILE, Bundle

    bundle = tmp_path / "B"
    shutil.copytree(toy_bundle, bundle)
    spec = json.loads((bundle / SPEC_FILE).read_text(encoding="utf-8"))
    (bundle / SPEC_FILE).write_text(json.dumps({**spec, "labels": ["(unscored)", "pos"]}), encoding="utf-8")
    Bundle.load(bundle, verify=False).rehash()
    rows = [(y.replace("neg", "(unscored)"), t) for y, t in ROWS]
    result = runner.invoke(app, ["eval", str(bundle), str(write_csv(tmp_path / "val.csv", rows)), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["unscored"] == 0 and report["unscored_as"] == "(unscored)*"
    assert report["accuracy"] == pytest.approx(0.8) and report["confusion"] == [[2, 1], [0, 2]]  # as before
