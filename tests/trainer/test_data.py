"""Training data: a stratified, seeded validation split, or --val-data; label problems named clearly."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from clsrun.runtime.errors import InputError, UsageError
from clsrun.trainer.data import load_split


def _csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["label", "text"])
        w.writerows(rows)
    return path


def test_split_is_stratified_disjoint_and_seeded(tmp_path: Path) -> None:
    rows = [("a", f"text a {i}") for i in range(80)] + [("b", f"text b {i}") for i in range(20)]
    data = _csv(tmp_path / "d.csv", rows)
    split = load_split(data, val_split=0.2, seed=1)
    assert Counter(split.val_labels) == {"a": 16, "b": 4}  # the 80/20 proportion is kept
    assert not set(split.train_texts) & set(split.val_texts)
    assert len(split.train_texts) + len(split.val_texts) == 100
    assert split.labels == ["a", "b"]
    assert load_split(data, val_split=0.2, seed=1).val_texts == split.val_texts
    assert load_split(data, val_split=0.2, seed=2).val_texts != split.val_texts
    info = split.to_json()
    assert info["val_rows"] == 20 and len(info["data_sha256"]) == 64


def test_val_data_is_used_as_given(tmp_path: Path) -> None:
    data = _csv(tmp_path / "d.csv", [("x", "one"), ("y", "two"), ("x", "three")])
    val = _csv(tmp_path / "v.csv", [("y", "four")])
    split = load_split(data, val_data=val)
    assert split.train_texts == ["one", "two", "three"]
    assert split.val_texts == ["four"]
    assert split.val_split is None and split.val_file == val


def test_val_label_unseen_in_training_is_named(tmp_path: Path) -> None:
    data = _csv(tmp_path / "d.csv", [("x", "one"), ("y", "two")])
    val = _csv(tmp_path / "v.csv", [("z", "four")])
    with pytest.raises(InputError, match=r"--val-data .*'z' never occur"):
        load_split(data, val_data=val)


def test_label_with_one_row_cannot_be_stratified(tmp_path: Path) -> None:
    data = _csv(tmp_path / "d.csv", [("x", f"t{i}") for i in range(9)] + [("rare", "only one")])
    with pytest.raises(UsageError, match=r"--val-split: label\(s\) 'rare' have a single row"):
        load_split(data)


@pytest.mark.parametrize(
    ("share", "said"),
    [
        (0.0001, "--val-split 0.0001 holds out 1 of 40 rows, fewer than the 4 labels; give --val-split "
                 "between 0.1 and 0.9, or --val-data FILE"),
        (0.95, "--val-split 0.95 keeps 2 of 40 rows for training, fewer than the 4 labels"),
    ],
)  # fmt: skip
def test_a_split_share_too_small_or_too_large_for_the_labels_says_which_shares_work(
    tmp_path: Path, share: float, said: str
) -> None:
    """scikit-learn's own words ("The test_size = 1 should be greater or equal to the number of classes")
    said nothing a user could do."""
    data = _csv(tmp_path / "d.csv", [(f"l{i % 4}", f"text {i}") for i in range(40)])
    with pytest.raises(UsageError) as e:
        load_split(data, val_split=share)
    assert str(e.value).startswith(said)
    load_split(data, val_split=0.1)  # the lower end of the shares named works


def test_a_single_label_is_refused(tmp_path: Path) -> None:
    data = _csv(tmp_path / "d.csv", [("x", f"t{i}") for i in range(10)])
    with pytest.raises(InputError, match="1 distinct label"):
        load_split(data)


def test_a_validation_file_that_repeats_the_training_rows_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "train.csv"
    path.write_text(
        "label,text\n" + "".join(f"{'ab'[i % 2]},text {i}\n" for i in range(20)), encoding="utf-8"
    )
    load_split(path, val_data=path)
    assert "20 of its 20 rows are also training rows" in caplog.text
    other = tmp_path / "val.csv"
    other.write_text("label,text\na,new one\nb,new two\n", encoding="utf-8")
    caplog.clear()
    load_split(path, val_data=other)
    assert "also training rows" not in caplog.text


def test_a_held_out_share_of_repeated_texts_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two texts repeated: every held-out row is a copy of a training row, and validation accuracy 1.0."""
    repeated = tmp_path / "dups.csv"
    repeated.write_text("label,text\n" + "a,same a\nb,same b\n" * 30, encoding="utf-8")
    split = load_split(repeated, val_split=0.2)
    assert (
        "--val-split: 12 of its 12 rows are also training rows (the file repeats those texts)" in caplog.text
    )
    assert len(split.val_texts) == 12
    distinct = tmp_path / "distinct.csv"
    distinct.write_text(
        "label,text\n" + "".join(f"{'ab'[i % 2]},text {i}\n" for i in range(60)), encoding="utf-8"
    )
    caplog.clear()
    load_split(distinct, val_split=0.2)
    assert "also training rows" not in caplog.text


@pytest.mark.parametrize("swapped", [True, False])
def test_a_label_column_of_texts_is_refused_as_columns_swapped(tmp_path: Path, swapped: bool) -> None:
    """``--text-col label --label-col text``: a label per row would train a model of one class per row."""
    rows = [("pos", "a review that goes on " * 500)] + [
        (("pos", "neg")[i % 2], f"review number {i} says it was {('good', 'bad')[i % 2]}") for i in range(119)
    ]
    data = _csv(tmp_path / "d.csv", rows)
    if swapped:
        with pytest.raises(
            InputError, match=r"column 'text' \(--label-col\) has 120 different values in 120 rows .*swapped"
        ) as refused:
            load_split(data, text_col="label", label_col="text")
        # the longest value is shown as an example, cut to 40 characters: the message stays one short line
        assert "(such as 'a review that goes on a review that g...')" in str(refused.value)
        assert len(str(refused.value)) < 400
    else:  # the same file the right way round, and many labels with several rows each, are fine
        assert load_split(data).labels == ["neg", "pos"]
        many = _csv(tmp_path / "m.csv", [(f"class{i % 60}", f"text {i}") for i in range(240)])
        assert len(load_split(many, val_split=0.5).labels) == 60


def test_imbalanced_labels_are_named_with_their_counts() -> None:
    from clsrun.trainer.data import imbalance

    said = imbalance(["neutral"] * 46 + ["positive"] * 36 + ["negative"] * 10)
    assert said == "'negative' has 10 of the 92 training rows, 4.6x fewer than 'neutral'"
    assert imbalance(["neg"] * 52 + ["pos"] * 48) is None  # reviews: balanced
    assert imbalance(["neg"] * 39 + ["pos"] * 10) is None  # under 4x
    assert imbalance(["a"] * 30) is None


def test_a_label_without_a_validation_row_is_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A class of 2 rows got no validation row: its report line read 0.0000 with support 0, silently."""
    import logging

    rows = [("a", f"alpha text {i}") for i in range(60)] + [("b", f"beta text {i}") for i in range(60)]
    rows += [("c", "gamma text 1"), ("c", "gamma text 2")]
    data = _csv(tmp_path / "d.csv", rows)
    with caplog.at_level(logging.WARNING, logger="clsrun"):
        split = load_split(data)
    assert "c" in split.train_labels and "c" not in split.val_labels  # 2 of 122 rows: none held out
    assert "label(s) 'c' have no validation row (too few rows to hold one out)" in caplog.text
    assert "'a'" not in caplog.text
    caplog.clear()  # a --val-data file without the class: no split to blame
    val = _csv(tmp_path / "v.csv", [("a", "alpha v"), ("b", "beta v")])
    with caplog.at_level(logging.WARNING, logger="clsrun"):
        load_split(data, val)
    assert f"label(s) 'c' have no validation row (--val-data {val} has none)" in caplog.text
    assert "--val-split" not in caplog.text


def test_a_split_that_holds_out_every_row_of_a_rare_label_is_refused_naming_it() -> None:
    """300 rows of two labels and 2 of a third, --val-split 0.7: the split held both rare rows out and the
    run failed at its end with "unexpected KeyError: 'rare'" (exit 1)."""
    from clsrun.trainer.data import stratified_split

    labels = ["pos", "neg"] * 150 + ["rare", "rare"]
    with pytest.raises(
        UsageError, match=r"--val-split 0\.7 holds out every row of label\(s\) 'rare' \(2 rows\)"
    ):
        stratified_split(labels, 0.7, seed=42)
    train, val = stratified_split(labels, 0.2, seed=42)
    assert "rare" in {labels[i] for i in train} and "rare" in {labels[i] for i in val}
