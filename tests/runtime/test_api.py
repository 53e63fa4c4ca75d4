"""The Python API (``Classifier.predict``, ``score_records``) given what a notebook gives it: one string, an
Arrow column, a generator, ids that do not match, texts no file could hold, and more texts than a window."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from clsrun.runtime.batching import BatchOptions
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.errors import BundleError, UsageError
from clsrun.runtime.score import score_file
from clsrun.runtime.variant import Variant

TEXTS = ["gg", "bb", "gbg", "bbbb"]


@pytest.fixture(scope="module")
def clf(toy_bundle: Path) -> Classifier:
    return Classifier.load(toy_bundle, Variant(threads=1))


@pytest.mark.parametrize("one", ["gg bb", b"gg bb"])
def test_one_string_is_refused_not_scored_a_character_a_row(clf: Classifier, one: Any) -> None:
    for call in (clf.predict, clf.score_records):
        with pytest.raises(UsageError, match=r"pass \[text\]"):
            call(one)


@pytest.mark.parametrize("bad", [None, 5])
def test_texts_that_are_not_a_collection_are_a_usage_error(clf: Classifier, bad: Any) -> None:
    with pytest.raises(UsageError, match="must be a list of strings"):
        clf.predict(bad)


def test_a_table_or_mapping_is_refused_not_scored_by_its_column_names(clf: Classifier) -> None:
    """A 3-row DataFrame gave one prediction, of the word "text"; a dict scored its keys."""
    import pandas as pd

    for table in (pd.DataFrame({"text": ["gg", "bb", "gbg"]}), {"gg": 1, "bb": 2}):
        for call in (clf.predict, clf.score_records):
            with pytest.raises(
                UsageError, match=r"whose iteration gives its keys or column names.*df\['text'\]"
            ):
                call(table)
    assert clf.predict(pd.DataFrame({"text": ["gg", "bb", "gbg"]})["text"]).labels  # the column works


def test_any_iterable_of_texts_scores_as_the_list_does(clf: Classifier) -> None:
    expected = clf.predict(TEXTS)
    for given in (
        tuple(TEXTS),
        (t for t in TEXTS),
        np.array(TEXTS),
        pa.array(TEXTS),
        pa.chunked_array([TEXTS[:1], TEXTS[1:]]),
    ):
        got = clf.predict(given)
        assert got.labels == expected.labels and not any(got.errors), type(given)
        np.testing.assert_array_equal(got.probs, expected.probs)
    table = clf.score_records(pa.array(TEXTS))
    assert table.column("status").to_pylist() == ["ok"] * 4


def test_missing_values_are_null_texts(clf: Classifier) -> None:
    got = clf.predict(["gg", float("nan"), None, pa.scalar(None).as_py(), np.float32("nan")])
    assert got.errors == [
        "",
        "null text",
        "null text",
        "null text",
        "null text",
    ]  # float32 NaN: was "a float32"
    assert got.labels[0] and got.labels[1:] == ["", "", "", ""]


@pytest.mark.parametrize("ids", [["a"], ["a", "b", "c", "d", "e"], "abcd"])
def test_ids_that_are_not_one_per_text_are_a_usage_error(clf: Classifier, ids: Any) -> None:
    with pytest.raises(UsageError, match=r"^ids: .* for 4 texts; give one id per text"):
        clf.score_records(TEXTS, ids=ids)
    with pytest.raises(UsageError, match=r"^ids: int given; give a list with one id per text"):  # not "texts"
        clf.score_records(TEXTS, ids=5)


def test_texts_and_ids_no_file_can_hold_are_error_rows_as_when_read_from_a_file(
    clf: Classifier, tmp_path: Path
) -> None:
    """A lone surrogate (``"\\ud800"``, which JSON can spell and UTF-8 cannot) is an error row through the
    API as through ``clsrun predict`` of the same rows, with the same reasons and ids."""
    rows = [("a", "gg"), ("b", "g\ud800g"), ("c\udc00", "bb"), ("d", "bb")]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in rows), encoding="utf-8")
    from clsrun.runtime.input_files import ReadOptions

    score_file(src, tmp_path / "out.csv", clf, ReadOptions(id_col="id"))
    from_file = pacsv.read_csv(tmp_path / "out.csv").to_pylist()
    api = clf.score_records([t for _, t in rows], ids=[i for i, _ in rows]).to_pylist()
    columns = ("id", "status", "error", "label")
    assert [[r[c] or None for c in columns] for r in api] == [
        [r[c] or None for c in columns] for r in from_file
    ]
    assert [r["status"] for r in api] == ["ok", "error", "error", "ok"]
    assert api[2]["id"] == "c\\udc00"  # written escaped, as the file's reader does
    assert clf.predict([t for _, t in rows]).errors[1].startswith("text is not valid Unicode")


def test_bytes_ids_keep_bytes_that_are_not_utf8_as_escapes(clf: Classifier) -> None:
    table = clf.score_records(["gg", "bb"], ids=[b"\xff", b"\xfe"])
    assert table.column("id").to_pylist() == ["\\xff", "\\xfe"]  # two ids stay two


def test_many_texts_are_scored_a_window_at_a_time_with_the_same_results(
    toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API holds one window's tokens and logits at once, however many texts it is given, and the rows
    come back in order with the same scores as one window of them all."""
    texts = [("g" * (k % 7 + 1)) + ("b" * (k % 5)) if k % 11 else "" for k in range(50)]
    whole = Classifier.load(toy_bundle, Variant(threads=1))
    windowed = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=8))
    sizes: list[int] = []
    real = Classifier.prepare

    def counted(self: Classifier, chunk: Any, encoded: Any = None) -> Any:
        sizes.append(len(chunk))
        return real(self, chunk, encoded)

    monkeypatch.setattr(Classifier, "prepare", counted)
    expected, got = whole.predict(texts), windowed.predict(texts)
    assert sizes[0] == 50 and max(sizes[1:]) == 8 and sum(sizes[1:]) == 50
    assert got.labels == expected.labels and got.errors == expected.errors
    np.testing.assert_allclose(got.probs, expected.probs, rtol=1e-6, atol=1e-7)
    table = windowed.score_records(texts, start=100)
    assert table.column("id").to_pylist() == list(range(100, 150))
    assert [label or "" for label in table.column("label").to_pylist()] == expected.labels


def test_no_texts_give_an_empty_result_with_the_columns(clf: Classifier) -> None:
    assert clf.predict([]).probs.shape == (0, len(clf.labels))
    table = clf.score_records([], ids=[])
    assert table.num_rows == 0 and table.schema == clf.output_schema(True, True)


def test_an_empty_bundle_path_is_refused_not_read_as_the_default_model() -> None:
    with pytest.raises(BundleError, match="bundle path is empty"):
        Classifier.load("")
    with pytest.raises(BundleError, match="bundle path is empty"):
        Classifier.load("  ")
