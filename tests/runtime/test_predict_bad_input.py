"""`clsrun predict` on bad input: one output row per input record, in order; exit 2 only for unparseable files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from clsrun.runtime.cli import app

runner = CliRunner()


def _predict(src: Path, out: Path, bundle: Path, *args: str) -> tuple[int, str]:
    res = runner.invoke(
        app, ["predict", str(src), "--model", str(bundle), "--out", str(out), "--quiet", *args]
    )
    return res.exit_code, res.output


def _csv_rows(out: Path) -> list[dict[str, str]]:
    import csv

    with out.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_ragged_rows_and_a_5mb_field_in_10000_rows_give_10000_rows_in_order(
    tmp_path: Path, toy_bundle: Path
) -> None:
    rng = random.Random(0)
    texts = ["ggg 好", "bb 差", '"quoted, with comma"']
    lines, bad = [], {}
    for i in range(10_000):
        kind = rng.random()
        if kind < 0.01:
            lines.append(f"r{i},ggg,extra field")
            bad[i] = "3 fields, the header has 2"
        elif kind < 0.02:
            lines.append(f"r{i}")
            bad[i] = "1 field, the header has 2"
        else:
            lines.append(f"r{i},{rng.choice(texts)}")
    lines[7777] = "r7777," + "x" * 5_000_000
    bad[7777] = "a record over the"
    src = tmp_path / "bad.csv"
    src.write_text("id,text\n" + "\n".join(lines) + "\n", encoding="utf-8")
    code, output = _predict(src, tmp_path / "out.csv", toy_bundle, "--id-col", "id")
    assert code == 0, output
    rows = _csv_rows(tmp_path / "out.csv")
    assert len(rows) == 10_000
    for i, row in enumerate(rows):
        if i in bad:
            assert row["status"] == "error" and row["error"].startswith(f"row {i}: {bad[i]}"), (i, row)
        else:
            assert row["status"] == "ok" and row["id"] == f"r{i}", (i, row)


def test_a_tsv_cell_with_an_unclosed_quote_swallows_nothing(tmp_path: Path, toy_bundle: Path) -> None:
    src = tmp_path / "q.tsv"
    src.write_text('id\ttext\n1\t"gg\n2\tbb\n3\tgg\n4\tbb\n5\tgg\n6\tbb\n', encoding="utf-8")
    code, output = _predict(src, tmp_path / "out.csv", toy_bundle, "--id-col", "id")
    assert code == 0, output
    assert [r["id"] for r in _csv_rows(tmp_path / "out.csv")] == ["1", "2", "3", "4", "5", "6"]
    code, output = _predict(src, tmp_path / "out2.csv", toy_bundle, "--tsv-quotes")
    assert code == 2 and "a quote opened in row 0 is never closed" in output
    assert not (tmp_path / "out2.csv").exists()


def test_a_csv_quote_open_at_the_end_exits_2_with_no_output(tmp_path: Path, toy_bundle: Path) -> None:
    src = tmp_path / "open.csv"
    body = "".join(f"{i},gg\n" for i in range(30_000))
    src.write_text("id,text\n" + body + '30000,"never closed\n30001,bb\n', encoding="utf-8")
    code, output = _predict(src, tmp_path / "out.csv", toy_bundle)
    assert code == 2 and "a quote opened in row 30000 is never closed" in output, output
    assert "Traceback" not in output and "unexpected" not in output
    assert not (tmp_path / "out.csv").exists()


def test_a_named_pipe_is_refused_as_not_a_file_without_reading_it(tmp_path: Path, toy_bundle: Path) -> None:
    import os

    src = tmp_path / "pipe.csv"
    os.mkfifo(src)  # nobody writes to it: a run that opened it for reading would hang here
    code, output = _predict(src, tmp_path / "out.csv", toy_bundle)
    assert code == 2 and "pipe.csv: not a regular file (a pipe or a device)" in output, output
    assert "save the stream to a file first" in output and not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_an_id_that_no_file_can_hold_is_written_escaped_in_every_format(
    tmp_path: Path, toy_bundle: Path, ext: str
) -> None:
    src = tmp_path / "s.jsonl"
    src.write_bytes(b'{"id": "\\ud800", "text": "gg"}\n{"id": "b", "text": "bb"}\n{"text": "gg"}\n')
    out = tmp_path / f"out.{ext}"
    code, output = _predict(src, out, toy_bundle, "--id-col", "id")
    assert code == 0, output
    if ext == "parquet":
        rows = pq.read_table(out).to_pylist()
    elif ext == "jsonl":
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    else:
        rows = _csv_rows(out)
    assert [r["id"] or None for r in rows] == ["\\ud800", "b", None]
    assert [r["status"] for r in rows] == ["error", "ok", "error"]
    assert rows[2]["error"] == "no 'id' field (--id-col)"


def test_a_tab_separated_csv_is_detected_and_delimiter_can_be_forced(
    tmp_path: Path, toy_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "tabs.csv"
    src.write_text("id\ttext\n1\tgg, and more\n2\tbb\n", encoding="utf-8")
    res = runner.invoke(
        app, ["predict", str(src), "--model", str(toy_bundle), "--out", str(tmp_path / "o.csv")]
    )
    assert res.exit_code == 0, res.output
    assert "tabs.csv: the header is separated by tabs, not commas" in caplog.text  # stderr, via logging
    assert [r["label"] for r in _csv_rows(tmp_path / "o.csv")] == ["pos", "neg"]
    code, output = _predict(src, tmp_path / "o2.csv", toy_bundle, "--delimiter", ",")
    assert code == 2 and "no column 'text'; columns are 'id\\ttext'" in output
    code, output = _predict(src, tmp_path / "o3.csv", toy_bundle, "--delimiter", "tab")
    assert code == 0, output


def test_a_header_only_file_gives_an_empty_output(tmp_path: Path, toy_bundle: Path) -> None:
    src = tmp_path / "h.csv"
    src.write_text("id,text\n", encoding="utf-8")
    code, output = _predict(src, tmp_path / "out.csv", toy_bundle)
    assert code == 0, output
    assert _csv_rows(tmp_path / "out.csv") == []


@pytest.mark.parametrize(
    ("out", "says"), [("", "--out is empty"), ("o.parquet/", "ends in a slash, so names a folder")]
)
def test_an_empty_or_folder_shaped_out_is_refused(
    tmp_path: Path, toy_bundle: Path, out: str, says: str
) -> None:
    src = tmp_path / "in.csv"
    src.write_text("text\ngood\n", encoding="utf-8")
    target = f"{tmp_path}/{out}" if out else out
    result = CliRunner().invoke(app, ["predict", str(src), "--model", str(toy_bundle), "--out", target, "-q"])
    assert result.exit_code == 2 and says in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # nothing written


INVISIBLE = ["\x00", "\x01\x02\x03", "\ufeff", "\u200b\u200c\u200d", "\x7f", " \u2028 \x00 ", "\u00ad"]


@pytest.mark.parametrize("model", ["toy", "default"])
def test_a_text_of_only_controls_or_format_characters_is_an_error_row_not_a_score(
    tmp_path: Path, toy_bundle: Path, model: str
) -> None:
    texts = ["good", *INVISIBLE, "a\u200db", "x\x00"]  # the last two have a visible character: scored
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    args = ["--model", str(toy_bundle)] if model == "toy" else []
    res = runner.invoke(app, ["predict", str(src), "--out", str(tmp_path / "o.csv"), "--quiet", *args])
    assert res.exit_code == 0, res.output
    rows = _csv_rows(tmp_path / "o.csv")
    assert [r["status"] for r in rows] == ["ok", *["error"] * len(INVISIBLE), "ok", "ok"]
    assert all(r["error"] == "no readable text after normalisation" for r in rows[1 : 1 + len(INVISIBLE)])
