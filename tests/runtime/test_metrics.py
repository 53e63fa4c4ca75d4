"""Classification metrics: values checked by hand, label order, labels the model cannot predict."""

from __future__ import annotations

import pytest

from clsrun.runtime.metrics import classification_report, report_from_indices


def test_numbers_match_a_hand_computation() -> None:
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    r = classification_report(y_true, y_pred, ["a", "b", "c"])
    assert r.accuracy == pytest.approx(4 / 6)
    # a: P 2/2 R 2/3; b: P 1/2 R 1/2; c: P 1/2 R 1/1
    assert r.per_class["a"].precision == pytest.approx(1.0)
    assert r.per_class["a"].recall == pytest.approx(2 / 3)
    assert r.per_class["c"].f1 == pytest.approx(2 / 3)
    assert r.macro_recall == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    f1 = {"a": 0.8, "b": 0.5, "c": 2 / 3}
    assert r.macro_f1 == pytest.approx(sum(f1.values()) / 3)
    assert r.weighted_f1 == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert r.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert r.per_class["b"].support == 2


def test_label_order_is_kept_and_unknown_true_labels_are_appended() -> None:
    r = classification_report(["z", "pos", "neg"], ["neg", "pos", "neg"], ["pos", "neg"])
    assert r.labels == ["pos", "neg", "z"]
    assert r.confusion[2] == [0, 1, 0]  # the 'z' row was predicted 'neg'
    assert r.per_class["z"].recall == 0.0


def test_indices_and_text_form() -> None:
    r = report_from_indices([0, 1, 1], [0, 1, 0], ["neg", "pos"])
    assert r.accuracy == pytest.approx(2 / 3)
    text = r.to_text()
    assert "accuracy 0.6667" in text and "confusion matrix" in text
    assert r.to_json()["per_class"]["pos"]["support"] == 2


def test_a_prediction_that_is_no_class_counts_as_a_miss_but_not_as_a_class_in_the_averages() -> None:
    y_true = ["pos"] * 9 + ["neg"]
    y_pred = ["pos"] * 9 + ["(unscored)"]  # the one neg row could not be scored
    r = classification_report(y_true, y_pred, ["pos", "neg"], averaged_over=["pos", "neg"])
    assert r.accuracy == 0.9 and r.per_class["neg"].recall == 0.0 and "(unscored)" in r.labels
    assert r.macro_recall == 0.5  # pos 1.0, neg 0.0: over the two classes, not three
    every = classification_report(y_true, y_pred, ["pos", "neg"])
    assert every.macro_recall == 1 / 3  # the pseudo-class counted: what clsrun eval no longer reports


def test_a_model_label_absent_from_the_data_and_never_predicted_is_not_averaged_as_zero() -> None:
    from sklearn.metrics import f1_score, precision_score

    y_true = ["a"] * 6 + ["b"] * 4
    y_pred = ["a"] * 5 + ["b"] * 5  # one a scored as b; no row is c, none predicted c
    r = classification_report(y_true, y_pred, ["a", "b", "c"], averaged_over=["a", "b", "c"])
    assert r.macro_f1 == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert r.weighted_precision == pytest.approx(precision_score(y_true, y_pred, average="weighted"))
    assert "c" in r.labels and r.per_class["c"].support == 0  # still listed, with its zeros
    perfect = report_from_indices([0, 0, 1], [0, 0, 1], ["big", "tiny", "rare"])
    assert perfect.accuracy == 1.0 and perfect.macro_f1 == 1.0  # was 2/3: the validation split had no rare
