"""`clsrun predict` through typer's CliRunner (exit codes, messages) and one real subprocess run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from typer.testing import CliRunner

from clsrun.runtime.cli import app

runner = CliRunner()


def _input(path: Path, n: int = 2000, bad_every: int = 50) -> Path:
    texts: list[str | None] = []
    texts += ["ggg 好", "bb 差", "=HYPERLINK(1)"] * (n // 3) + ["g"] * (n % 3)
    for i in range(0, n, bad_every):
        texts[i] = [None, "", "   \t "][i // bad_every % 3]
    pacsv.write_csv(pa.table({"text": texts}), path)
    return path


def test_predict_writes_every_row_and_the_manifest(tmp_path: Path, toy_bundle: Path) -> None:
    src = _input(tmp_path / "in.csv")
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["predict", str(src), "--model", str(toy_bundle), "--out", str(out), "--probs"])
    assert res.exit_code == 0, res.output
    assert "scored 2000 rows (1960 ok, 40 error" in res.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2000 and [r["id"] for r in rows] == list(range(2000))
    assert rows[0]["status"] == "error" and rows[1]["label"] == "neg" and "prob_pos" in rows[2]
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text(encoding="utf-8"))
    assert manifest["rows_read"] == 2000 and manifest["error"] == 40


def test_streams_option_runs_and_is_recorded(tmp_path: Path, toy_bundle: Path) -> None:
    src = _input(tmp_path / "in.csv", 500)
    args = ["predict", str(src), "--model", str(toy_bundle), "--threads", "2"]
    res = runner.invoke(app, [*args, "--streams", "2", "--out", str(tmp_path / "two.csv")])
    assert res.exit_code == 0, res.output
    assert "2 threads, 2 streams" in res.output
    res = runner.invoke(app, [*args, "--streams", "1", "--out", str(tmp_path / "one.csv")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
    res = runner.invoke(app, [*args, "--streams", "3"])
    assert res.exit_code == 2 and "--streams 3: must be between 1 and the threads (2)" in res.output
    res = runner.invoke(app, [*args, "--streams", "2", "--engine", "ray", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "--streams is for the local engine" in res.output


def test_quiet_prints_nothing(tmp_path: Path, toy_bundle: Path) -> None:
    src = _input(tmp_path / "in.csv", 30)
    res = runner.invoke(app, ["predict", str(src), "--model", str(toy_bundle), "--quiet"])
    assert res.exit_code == 0 and res.output == ""
    assert (tmp_path / "in.scores.csv").is_file()


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (b"body\nhello\n", [], "no column 'text'"),
        (b"", [], "Empty CSV file"),
        (b"text\nhello\n", ["--id-col", "key"], "no column 'key'"),
    ],
)
def test_bad_input_exits_2_before_the_model_loads(
    tmp_path: Path, content: bytes, args: list[str], message: str
) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(content)
    # The model path does not exist: exit 2 (not 3) shows the input was refused before the model loaded.
    res = runner.invoke(app, ["predict", str(src), "--model", str(tmp_path / "no-model"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output


def test_bad_bundle_exits_3_and_bad_flag_exits_2(tmp_path: Path, toy_bundle: Path) -> None:
    src = _input(tmp_path / "in.csv", 10)
    res = runner.invoke(app, ["predict", str(src), "--model", str(tmp_path)])
    assert res.exit_code == 3 and "not a clsrun model bundle" in res.output
    res = runner.invoke(app, ["predict", str(src), "--model", str(toy_bundle), "--precision", "fp16"])
    assert res.exit_code == 2 and "no fp16 variant" in res.output
    res = runner.invoke(
        app, ["predict", str(src), "--model", str(toy_bundle), "--out", str(tmp_path / "o.xlsx")]
    )
    assert res.exit_code == 2 and "unknown output type" in res.output


def test_csv_output_neutralises_formulas(tmp_path: Path, toy_bundle: Path) -> None:
    src = tmp_path / "in.csv"
    pacsv.write_csv(pa.table({"id": ["=1+2", "@x", "-3"], "text": ["gg", "bb", "=cmd"]}), src)
    out = tmp_path / "o.csv"
    res = runner.invoke(
        app, ["predict", str(src), "--model", str(toy_bundle), "--id-col", "id", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[1].startswith('"\'=1+2"') and lines[2].startswith('"\'@x"') and lines[3].startswith('"-3"')


def test_real_subprocess_run(tmp_path: Path, toy_bundle: Path) -> None:
    src = _input(tmp_path / "in.csv", 300)
    cmd = [sys.executable, "-c", "from clsrun.runtime.cli import main; main()", "predict", str(src)]
    done = subprocess.run([*cmd, "--model", str(toy_bundle)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "scored 300 rows" in done.stderr
    out = pacsv.read_csv(tmp_path / "in.scores.csv")
    assert out.num_rows == 300 and out.column_names == ["id", "label", "score", "status", "error"]
