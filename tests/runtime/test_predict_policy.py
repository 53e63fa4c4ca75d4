"""What a rerun may replace, when a run counts as failed, and what `clsrun predict` says about it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from typer.testing import CliRunner

from clsrun.runtime.cli import app
from clsrun.runtime.errors import ErrorRateExceeded
from clsrun.runtime.partial import PartialOutput
from clsrun.runtime.row_errors import check_error_rate, diagnose, reason_kind

runner = CliRunner()


def _input(path: Path, n: int = 600) -> Path:
    pacsv.write_csv(pa.table({"text": ["ggg 好", "bb 差", ""] * (n // 3)}), path)
    return path


def _predict(src: Path, bundle: Path, *args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["predict", str(src), "--model", str(bundle), *args])
    return res.exit_code, res.output


def _manifest(out: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        out.with_name(out.name + ".manifest.json").read_text(encoding="utf-8")
    )
    return data


def test_an_existing_output_is_replaced_only_with_overwrite(tmp_path: Path, toy_bundle: Path) -> None:
    src, out = _input(tmp_path / "in.csv"), tmp_path / "o.csv"
    assert _predict(src, toy_bundle, "--out", str(out))[0] == 0
    first = out.read_bytes()
    code, said = _predict(src, toy_bundle, "--out", str(out), "--probs")
    assert code == 2 and said.strip() == (
        f"error: --out {out}: already exists; add --overwrite to replace it (or --resume, which keeps it "
        f"when it is this same job's finished output)"
    )
    assert out.read_bytes() == first
    code, said = _predict(src, toy_bundle, "--out", str(out), "--probs", "--overwrite")
    assert code == 0 and "prob_pos" in out.read_text(encoding="utf-8").splitlines()[0]


def test_resume_of_a_finished_output_says_so_and_scores_nothing(tmp_path: Path, toy_bundle: Path) -> None:
    src, out = _input(tmp_path / "in.csv"), tmp_path / "o.csv"
    assert _predict(src, toy_bundle, "--out", str(out))[0] == 0
    stamp = out.stat().st_mtime_ns
    code, said = _predict(src, toy_bundle, "--out", str(out), "--resume")
    assert code == 0 and said.strip() == (
        f"{out}: already complete (600 rows, 400 ok, 200 error); nothing to do (--overwrite scores it again)"
    )
    assert out.stat().st_mtime_ns == stamp


def test_a_checkpoint_is_kept_unless_overwrite_and_the_resumed_summary_counts_this_run(
    tmp_path: Path, toy_bundle: Path, crash_after_parts: Callable[[int], AbstractContextManager[None]]
) -> None:
    src, out = _input(tmp_path / "in.csv", 3000), tmp_path / "o.csv"
    args = ["--out", str(out), "--window", "500", "--threads", "1"]
    with crash_after_parts(2):
        assert _predict(src, toy_bundle, *args)[0] == 1
    code, said = _predict(src, toy_bundle, *args)
    assert code == 2 and "an interrupted run left 1,000 rows checkpointed" in said
    assert "add --resume to continue it, or --overwrite to discard them" in said
    code, said = _predict(src, toy_bundle, *args, "--resume")
    assert code == 0 and said.startswith(
        f"scored 2,000 rows, continuing from row 1,000 (3,000 in all: 2,000 ok, 1,000 error, 0 truncated) -> {out} in "
    )
    manifest = _manifest(out)
    assert manifest["resumed_from_row"] == 1000 and manifest["error_reasons"] == {
        "empty or whitespace-only text": 1000
    }


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("-", "--out -: clsrun does not write to standard output: the output appears only once complete"),
        ("o.txt", "unknown output type '.txt'; use .csv, .tsv, .jsonl, .json (written as JSON Lines"),
        ("scores", "no extension to tell the output type; use .csv, .tsv, .jsonl, .json (written as JSON"),
    ],
)
def test_an_output_that_cannot_be_written_as_asked_is_one_line(
    tmp_path: Path, toy_bundle: Path, out: str, message: str
) -> None:
    code, said = _predict(_input(tmp_path / "in.csv"), toy_bundle, "--out", out)
    assert code == 2 and message in said and len(said.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_json_output_is_json_lines(tmp_path: Path, toy_bundle: Path) -> None:
    out = tmp_path / "o.json"
    assert _predict(_input(tmp_path / "in.csv", 30), toy_bundle, "--out", str(out))[0] == 0
    assert [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()] == list(
        range(30)
    )


def test_max_error_rate_fails_the_run_but_writes_the_output(tmp_path: Path, toy_bundle: Path) -> None:
    src, out = _input(tmp_path / "in.csv"), tmp_path / "o.csv"  # a third of the rows are empty
    code, said = _predict(src, toy_bundle, "--out", str(out), "--max-error-rate", "0.25")
    assert code == 4
    assert said.strip() == (
        f"error: 200 of 600 rows failed (33.3%, over --max-error-rate 0.25); {out} and its manifest were written"
    )
    assert len(out.read_text(encoding="utf-8").splitlines()) == 601
    assert _manifest(out)["max_error_rate"] == 0.25 and not PartialOutput.folder_for(out).exists()
    code, _ = _predict(src, toy_bundle, "--out", str(out), "--max-error-rate", "0.4", "--overwrite")
    assert code == 0
    assert _predict(src, toy_bundle, "--max-error-rate", "1.5")[0] == 2  # not a fraction


def test_a_gbk_file_is_said_once_with_the_fix_and_its_reasons_are_counted_together(
    tmp_path: Path, toy_bundle: Path
) -> None:
    src = tmp_path / "gbk.csv"
    texts = ["很好用，非常满意", "太差了", "一般般吧，还可以"] * 333 + ["ok"]
    src.write_bytes(b"text\n" + b"".join(t.encode("gbk") + b"\n" for t in texts))
    out = tmp_path / "o.csv"
    code, said = _predict(src, toy_bundle, "--out", str(out))
    assert code == 0
    warning, summary = said.strip().splitlines()
    assert warning == (
        "warning: 999 of 1,000 rows failed with 'undecodable bytes (not UTF-8)': the file is probably not UTF-8 "
        f"(GBK, GB18030 or Latin-1?); convert it first, e.g. `iconv -f gbk -t utf-8 {src} > {tmp_path / 'gbk.utf8.csv'}`"
    )
    assert summary.startswith("scored 1,000 rows (1 ok, 999 error")
    assert _manifest(out)["error_reasons"] == {"undecodable bytes (not UTF-8)": 999}  # byte offsets differ
    code, said = _predict(src, toy_bundle, "--out", str(out), "--overwrite", "--max-error-rate", "0.5", "-q")
    assert code == 4 and "most with 'undecodable bytes (not UTF-8)': the file is probably not UTF-8" in said
    assert len(said.strip().splitlines()) == 1


def test_a_jsonl_whose_texts_are_numbers_points_at_text_col(tmp_path: Path, toy_bundle: Path) -> None:
    src = tmp_path / "in.jsonl"
    rows = [{"text": i if i % 2 else i * 1.5, "body": "ggg"} for i in range(100)]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code, said = _predict(src, toy_bundle, "--out", str(tmp_path / "o.csv"))
    assert code == 0
    assert said.startswith(
        "warning: 100 of 100 rows failed with 'text is a JSON float, not a string' / 'text is a JSON int, not "
        "a string': the field 'text' holds numbers or other values, not text: is it the right field? Choose "
        "the text with --text-col"
    )
    code, said = _predict(src, toy_bundle, "--out", str(tmp_path / "o2.csv"), "--text-col", "body")
    assert code == 0 and "warning" not in said


def test_scattered_errors_say_nothing_more(tmp_path: Path, toy_bundle: Path) -> None:
    code, said = _predict(_input(tmp_path / "in.csv"), toy_bundle, "--out", str(tmp_path / "o.csv"))
    assert code == 0 and "warning" not in said  # a third of the rows empty: the rows' own problem


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("undecodable bytes (not UTF-8) at byte 17", "undecodable bytes (not UTF-8)"),
        ("row 12: 3 fields, the header has 2", "N fields, the header has N"),
        ("row 13: 1 field, the header has 2", "N fields, the header has N"),  # one kind with the line above
        ("invalid JSON: Expecting value: line 1 column 5 (char 4)", "invalid JSON"),
        ("text over the 1048576-byte size cap", "text over the 1048576-byte size cap"),
        ("no 'col1' field", "no 'col1' field"),
    ],
)
def test_reasons_lose_what_is_specific_to_one_row(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind


def test_a_file_whose_rows_split_into_the_wrong_columns_points_at_the_delimiter() -> None:
    manifest = {
        "rows_read": 100,
        "error": 90,
        "output": "o.csv",
        "error_reasons": {"N fields, the header has N": 90},
    }
    assert "is the delimiter right? (--delimiter)" in (diagnose(manifest) or "")
    with pytest.raises(
        ErrorRateExceeded, match=r"90 of 100 rows failed \(90.0%, over --max-error-rate 0.5\)"
    ):
        check_error_rate(manifest, 0.5)
    check_error_rate(manifest, None)
    check_error_rate(manifest, 0.9)


def test_exit_codes_are_listed_in_help() -> None:
    said = runner.invoke(app, ["--help"], terminal_width=200).output
    assert "Exit codes:" in said
    for code, meaning in [
        (0, "done"),
        (1, "anything else"),
        (2, "bad usage"),
        (3, "a model bundle that cannot run"),
        (4, "done, but not all of it passed"),
        (130, "SIGINT"),
        (143, "SIGTERM"),
    ]:
        assert re.search(rf"^\s*{code}\s+.*{meaning}", said, re.MULTILINE), code
