"""Output tables and files: columns, formula neutralisation, every format, atomic appearance."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from clsrun.runtime.errors import UsageError
from clsrun.runtime.writers import output_format, result_table, write_atomically

PROBS = np.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]], dtype=np.float32)


def _table(ids: list[str | None] | None = None, probs: bool = False) -> pa.Table:
    return result_table(10, ids, PROBS, ["", "null text", ""], ["neg", "pos"], probs)


def test_columns_and_error_rows() -> None:
    rows = _table(probs=True).to_pylist()
    assert list(rows[0]) == ["id", "label", "score", "prob_neg", "prob_pos", "status", "error"]
    assert [r["id"] for r in rows] == [10, 11, 12]  # row numbers continue from the window's start
    assert rows[0]["label"] == "pos" and rows[0]["score"] == pytest.approx(0.8)
    assert rows[1] == {
        "id": 11, "label": None, "score": None, "prob_neg": None, "prob_pos": None,
        "status": "error", "error": "null text",
    }  # fmt: skip


def test_csv_neutralises_formulas_but_not_numbers(tmp_path: Path) -> None:
    ids: list[str | None] = ['=HYPERLINK("x")', "-1", "@SUM(A1)"]
    table = result_table(0, ids, PROBS, ["", "+cmd|' /C calc'!A0", ""], ["\tneg", "pos"], False)
    out = tmp_path / "o.csv"
    write_atomically(out, table.schema, [table])
    back = pacsv.read_csv(out, convert_options=pacsv.ConvertOptions(column_types={"id": pa.string()}))
    assert back.column("id").to_pylist() == ['\'=HYPERLINK("x")', "-1", "'@SUM(A1)"]
    assert back.column("error").to_pylist()[1] == "'+cmd|' /C calc'!A0"
    assert back.column("label").to_pylist()[2] == "'\tneg"


def test_an_id_that_looks_already_neutralised_gets_its_own_quote_so_two_ids_stay_two(tmp_path: Path) -> None:
    """``=x`` is written ``'=x``; the id ``'=x`` was written the same, and two ids became one."""
    ids: list[str | None] = ["=x", "'=x", "''=x", "'plain", "'-1", "-1"]
    probs = np.tile(PROBS[:1], (len(ids), 1))
    table = result_table(0, ids, probs, [""] * len(ids), ["neg", "pos"], False)
    out = tmp_path / "o.csv"
    write_atomically(out, table.schema, [table])
    back = pacsv.read_csv(out, convert_options=pacsv.ConvertOptions(column_types={"id": pa.string()}))
    written = back.column("id").to_pylist()
    assert written == ["'=x", "''=x", "'''=x", "'plain", "''-1", "-1"]
    assert len(set(written)) == len(ids)


def test_jsonl_and_parquet_round_trip(tmp_path: Path) -> None:
    table = _table(ids=["a", "b", None], probs=True)
    write_atomically(tmp_path / "o.jsonl", table.schema, [table, table])
    lines = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 6 and lines[0]["id"] == "a" and lines[1]["label"] is None
    assert lines[0]["score"] == pytest.approx(0.8)
    write_atomically(tmp_path / "o.parquet", table.schema, [table])
    assert pq.read_table(tmp_path / "o.parquet").equals(table)


def test_jsonl_escapes_the_line_separators_other_readers_split_at(tmp_path: Path) -> None:
    """U+2028, U+2029 and U+0085 are valid raw in a JSON string, but Python's str.splitlines (and JavaScript
    before ES2019) end a line there: ids holding one read back as twice the records."""
    table = _table(ids=["a\u2028b", "c\x85d", "e\u2029"])
    write_atomically(tmp_path / "o.jsonl", table.schema, [table])
    text = (tmp_path / "o.jsonl").read_text(encoding="utf-8")
    assert "\\u2028" in text and "\\u0085" in text and "\\u2029" in text
    assert [json.loads(x)["id"] for x in text.splitlines()] == ["a\u2028b", "c\x85d", "e\u2029"]


def test_output_appears_only_when_complete(tmp_path: Path) -> None:
    table = _table()

    def failing() -> Iterator[pa.Table]:
        yield table
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "o.csv", table.schema, failing())
    assert list(tmp_path.iterdir()) == []


def test_unknown_output_extension_is_a_usage_error() -> None:
    assert output_format("x.PARQUET") == "parquet"
    with pytest.raises(UsageError, match=r"unknown output type '\.xlsx'"):
        output_format("x.xlsx")


def test_tsv_is_plain_one_line_a_row_and_read_back_by_clsrun(tmp_path: Path) -> None:
    from clsrun.runtime.input_files import ReadOptions
    from clsrun.runtime.readers import open_records

    ids = ["a\tb", 'q"uote', "line\nbreak"]
    out = tmp_path / "o.tsv"
    write_atomically(out, _table(ids, probs=True).schema, [_table(ids, probs=True)])
    lines = out.read_text(encoding="utf-8").split("\n")
    assert len(lines) == 5 and lines[-1] == ""  # header, three rows, the final newline: no row spans two
    assert lines[0].split("\t")[:3] == ["id", "label", "score"] and '"' not in lines[0]
    assert lines[1].startswith("a\\tb\tpos\t") and lines[3].startswith("line\\nbreak\t")
    assert all(len(line.split("\t")) == len(lines[0].split("\t")) for line in lines[1:4])
    stream = open_records(out, ReadOptions(text_col="label", id_col="id"))
    with stream:
        chunk = next(stream.chunks())
    assert list(chunk.ids or []) == ["a\\tb", 'q"uote', "line\\nbreak"] and list(chunk.texts) == [
        "pos",
        None,  # the error row has no label
        "neg",
    ]


def test_labels_the_csv_formula_guard_changes_are_said_before_a_run(caplog: pytest.LogCaptureFixture) -> None:
    """A bundle trained on labels such as ``-``/``+`` wrote them as ``'-``/``'+`` in CSV output, silently:
    a join on the bundle's labels then missed every such row."""
    from clsrun.runtime.writers import formula_labels, warn_formula_labels

    labels = ["-", "+", "pos", "=x", "-1", "@me"]
    assert formula_labels(labels, "csv") == ["-", "+", "=x", "@me"]  # plain numbers are left alone
    assert formula_labels(labels, "tsv") == ["-", "+", "=x", "@me"]
    assert formula_labels(labels, "jsonl") == [] and formula_labels(labels, "parquet") == []
    with caplog.at_level("WARNING", logger="clsrun"):
        warn_formula_labels(labels, "csv")
        warn_formula_labels(["neg", "pos"], "csv")
    assert len(caplog.records) == 1
    assert "'-', '+', '=x', '@me' start like a spreadsheet formula" in caplog.text and ".jsonl" in caplog.text
