"""The shared options: one meaning, one default and one check for a flag, in every command that takes it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from clsrun.runtime.batching import BatchOptions
from clsrun.runtime.cli import app, clamp_help_width, unreadable_argument
from clsrun.runtime.cli import options as cli
from clsrun.runtime.input_files import ReadOptions
from clsrun.runtime.labelled import read_labelled
from clsrun.runtime.variant import BACKENDS, DEVICES, SCORING_PRECISIONS, Variant

VARIANT_COMMANDS = ("predict", "eval")


def _help(command: str) -> str:
    res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output
    return res.output


def test_cli_defaults_are_the_library_defaults() -> None:
    variant = Variant()
    assert variant.backend == variant.precision == variant.device == cli.AUTO
    assert variant.threads is None and variant.streams is None
    assert ReadOptions().text_col == cli.TEXT_COL and BatchOptions().window == cli.WINDOW
    defaults = read_labelled.__defaults__ or ()
    assert defaults[:2] == (cli.TEXT_COL, cli.LABEL_COL)


@pytest.mark.parametrize("command", VARIANT_COMMANDS)
def test_help_lists_every_choice(command: str) -> None:
    text = _help(command)
    for choices in (BACKENDS, SCORING_PRECISIONS, DEVICES):
        assert "|".join(choices) in text


@pytest.mark.parametrize("command", ["predict", "eval", "export"])
def test_help_paragraphs_wrap_at_the_terminal_not_where_the_source_broke_them(command: str) -> None:
    text = _help(command)  # 200 columns: a paragraph's lines are full, not cut where the source wrapped
    head = "\n".join(line.strip() for line in text.split("╭")[0].splitlines())
    description = head.strip().split("\n\n")[2:]  # after the usage line and the summary
    assert description
    for paragraph in description:
        lines = paragraph.splitlines()
        assert len(lines) <= len(" ".join(lines)) // 150 + 1, paragraph
    from clsrun.runtime.cli.app import paragraphs_on_one_line

    assert paragraphs_on_one_line("  a\n  b\n\n  c") == "a b\n\nc"
    assert paragraphs_on_one_line("a\n\nlist:\n- one\n- two") == "a\n\nlist:\n- one\n- two"


@pytest.mark.parametrize("command", ["predict", "eval", "bench"])
def test_flags_show_no_value_and_threads_mean_the_same(command: str) -> None:
    text = _help(command)
    flags = [
        line
        for line in text.splitlines()
        if re.search(r"--(resume|probs|quiet|json|preserve-order|tsv-quotes)\b", line)
    ]
    assert flags and not [line for line in flags if "<bool>" in line]
    threads = next(line for line in text.splitlines() if line.lstrip("│ ").startswith("--threads"))
    assert "x>=1" in threads and "every core this process may use" in text


@pytest.mark.parametrize(
    "args",
    [
        ["predict", "in.csv", "--threads", "0"],
        ["eval", "bundle", "in.csv", "--threads", "0"],
        ["bench", "bundle", "--data", "in.csv", "--threads", "0"],
        ["predict", "in.csv", "--precision", "fp64"],
        ["eval", "bundle", "in.csv", "--device", "tpu"],
    ],
)
def test_bad_values_are_refused_before_the_command_runs(args: list[str], tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("text,label\na,x\n", encoding="utf-8")
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 2 and "Invalid value" in res.output


def test_every_command_is_built_by_typer() -> None:
    typer.main.get_command(app)  # a bad annotation fails here, not in front of a user


def test_train_shares_the_flags_and_its_help_gives_the_library_defaults() -> None:
    from clsrun.trainer.data import DEFAULT_VAL_SPLIT, DataOptions
    from clsrun.trainer.options import (
        BERT_DEFAULTS,
        CHARCNN_AUTO_LENGTH,
        CHARCNN_DEFAULTS,
        CHARCNN_MAX_EPOCHS,
        CHARCNN_MIN_STEPS,
        NGRAM_DEFAULTS,
        CharCNNOptions,
    )

    assert (DataOptions().text_col, DataOptions().label_col) == (cli.TEXT_COL, cli.LABEL_COL)
    raw = _help("train")
    assert not [line for line in raw.splitlines() if re.search(r"--(quiet|force|no-logs)\b.*<bool>", line)]
    for shared in ("--text-col", "--label-col", "--device", "--quiet"):
        assert raw.count(shared) >= 1
    text = " ".join(raw.replace("│", " ").split())
    assert "auto uses CUDA when it can" in text  # --device: the shared help
    numbers = {
        "lr": r"--lr .*?n-gram ([\d.e-]+), char-CNN ([\d.e-]+), BERT ([\d.e-]+)",
        "epochs": r"--epochs .*?n-gram (\d+), char-CNN (\d+), BERT (\d+)",
    }
    for field, pattern in numbers.items():
        found = re.search(pattern, text)
        assert found, f"--{field} help names no per-kind defaults"
        defaults = (NGRAM_DEFAULTS[field], CHARCNN_DEFAULTS[field], BERT_DEFAULTS[field])
        assert tuple(float(found[i]) for i in (1, 2, 3)) == defaults
    steps = re.search(r"--epochs .*?up to (\d+) epochs, for (\d+) optimizer steps", text)
    assert steps and (int(steps[1]), int(steps[2])) == (CHARCNN_MAX_EPOCHS, CHARCNN_MIN_STEPS)
    length = re.search(
        r"--max-length .*?n-gram (\d+); char-CNN: the training texts' 90th-percentile length within "
        r"(\d+)-(\d+)\) or tokens \(BERT (\d+)",
        text,
    )
    assert length, "--max-length help names no per-kind defaults"
    assert (int(length[1]), int(length[4])) == (NGRAM_DEFAULTS["max_length"], BERT_DEFAULTS["max_length"])
    assert (int(length[2]), int(length[3])) == CHARCNN_AUTO_LENGTH
    assert CHARCNN_AUTO_LENGTH[0] == CHARCNN_DEFAULTS["max_length"]  # the floor is the short-text length
    charcnn = CharCNNOptions()
    for phrase in (
        f"(default {DEFAULT_VAL_SPLIT:g})",
        f"width ({charcnn.embed_dim})",
        f"features ({charcnn.dropout:g})",
        f"kept ({charcnn.vocab_size})",
        "e.g. " + ",".join(map(str, charcnn.channels)),
        "e.g. " + ",".join(map(str, charcnn.kernel_sizes)),
    ):
        assert phrase in text, phrase


@pytest.mark.parametrize("given", ["missing", "a file"])
@pytest.mark.parametrize("command", ["predict", "eval", "export", "bench"])
def test_a_bundle_that_is_not_a_folder_is_one_line_and_exit_3_in_every_command(
    command: str, given: str, tmp_path: Path
) -> None:
    data = tmp_path / "data.csv"
    data.write_text("label,text\npos,good\n", encoding="utf-8")
    bundle = tmp_path / "nope" if given == "missing" else data
    args = {
        "predict": ["predict", str(data), "--model", str(bundle), "--out", str(tmp_path / "o.csv")],
        "eval": ["eval", str(bundle), str(data)],
        "export": ["export", str(bundle)],
        "bench": ["bench", str(bundle), "--data", str(data), "--out", str(tmp_path / "b")],
    }[command]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 3, res.output
    expected = (
        "model bundle folder not found" if given == "missing" else "is a file, not a model bundle folder"
    )
    assert res.output.strip().splitlines() == [f"error: {bundle}: {expected}"]


@pytest.mark.parametrize("kind", ["ngram", "charcnn", "minilm"])
@pytest.mark.parametrize("command", ["predict", "eval", "export"])
def test_a_model_kind_given_for_a_bundle_says_what_model_takes(
    command: str, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no folder of that name here
    Path("data.csv").write_text("label,text\npos,good\n", encoding="utf-8")
    args = {
        "predict": ["predict", "data.csv", "--model", kind, "--out", "o.csv"],
        "eval": ["eval", kind, "data.csv"],
        "export": ["export", kind],
    }[command]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 3, res.output
    (line,) = res.output.strip().splitlines()
    assert line.startswith(f"error: {kind}: model bundle folder not found ({kind} is a model kind for")
    assert f"`clsrun train DATA --model {kind} --out B`" in line
    assert not Path("o.csv").exists()


def test_threads_and_streams_beyond_any_machine_are_refused() -> None:
    from clsrun.runtime.errors import UsageError
    from clsrun.runtime.variant import MAX_PARALLEL, Variant

    Variant(threads=MAX_PARALLEL, streams=MAX_PARALLEL)  # a big machine is fine
    for options in ({"threads": 100_000}, {"streams": MAX_PARALLEL + 1}):
        with pytest.raises(UsageError, match=f"at most {MAX_PARALLEL}"):
            Variant(**options)  # type: ignore[arg-type]


def test_a_bundle_where_the_data_goes_is_named_with_the_right_order(tmp_path: Path, toy_bundle: Path) -> None:
    """`clsrun eval DATA BUNDLE` was typer's "File '...' is a directory"; `clsrun predict BUNDLE` said the
    local engine scores one file. Both now say which argument the bundle is."""
    data = tmp_path / "d.csv"
    data.write_text("text,label\ngood,pos\n", encoding="utf-8")
    swapped = CliRunner().invoke(app, ["eval", str(data), str(toy_bundle)])
    assert swapped.exit_code == 2
    assert f"the bundle comes first: clsrun eval {toy_bundle} {data}" in swapped.output
    as_input = CliRunner().invoke(app, ["predict", str(toy_bundle)])
    assert as_input.exit_code == 2
    assert (
        f"is a model bundle, not a file to score; give it with --model (clsrun predict FILE --model {toy_bundle})"
        in as_input.output
    )


def test_predict_given_a_bundle_as_its_own_argument_gets_a_hint(toy_bundle: Path) -> None:
    """`clsrun predict BUNDLE FILE` was typer's "Got unexpected extra argument(s)" and nothing more."""
    from clsrun.runtime.cli import misplaced_bundle

    b = str(toy_bundle)
    hint = f"hint: {b} is a model bundle; give it with --model: clsrun predict FILE --model {b}"
    assert misplaced_bundle(["predict", b, "in.csv"]) == hint
    assert misplaced_bundle(["--debug", "predict", "in.csv", b]) == hint
    # after a flag that takes no value, the word is an argument of its own, not the flag's value
    assert misplaced_bundle(["predict", "--overwrite", "in.csv", b]) == hint
    assert misplaced_bundle(["predict", "--out=x.csv", "in.csv", b]) == hint
    assert misplaced_bundle(["predict", "--out", b, "in.csv"]) is None  # --out's value, not an argument
    assert misplaced_bundle(["predict", "in.csv", "--model", b]) is None  # as it should be
    assert misplaced_bundle(["predict", b]) is None  # predict says this one itself
    assert misplaced_bundle(["eval", b, "in.csv"]) is None


def test_a_deleted_current_folder_is_one_line_not_an_unexpected_error(
    tmp_path: Path, toy_bundle: Path
) -> None:
    """Relative paths failed deep inside predict ("unexpected FileNotFoundError", no path named), and
    export/bench died in torch's import (MKL's "FATAL ERROR", exit 2). Absolute paths still score."""
    import subprocess
    import sys

    gone = tmp_path / "gone"
    script = (
        "import os, sys; gone = sys.argv.pop(1); os.makedirs(gone, exist_ok=True); os.chdir(gone); os.rmdir(gone); "
        "from clsrun.__main__ import main; main()"
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-c", script, str(gone), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    said = "error: the current folder no longer exists (it was deleted or moved); cd into one that does and run again"
    src = tmp_path / "in.csv"
    src.write_text("text\ngood\n", encoding="utf-8")
    for args in (("predict", "in.csv"), ("predict", str(src), "--model", str(toy_bundle), "--out", "o.csv")):
        done = run(*args)
        assert done.returncode == 2 and done.stderr.strip() == said, done.stderr
    exported = run("export", str(toy_bundle))
    assert exported.returncode == 2 and exported.stderr.strip() == said
    absolute = run(
        "predict", str(src), "--model", str(toy_bundle), "--out", str(tmp_path / "o.csv"), "--quiet"
    )
    assert absolute.returncode == 0, absolute.stderr
    helped = run("export", "--help")
    assert helped.returncode == 0 and "--precision" in helped.stdout


def test_an_argument_that_is_not_utf8_is_refused_naming_its_option_before_any_command_runs() -> None:
    odd = os.fsdecode(b"b\xff")  # as Python hands over an argument holding a byte that is not UTF-8
    said = unreadable_argument(["bench", odd, "--data", "in.csv"], "utf-8")
    assert said is not None and said.startswith("b\\xff: not valid UTF-8")
    said = unreadable_argument(["predict", "in.csv", "--model", odd], "utf-8")
    assert said is not None and said.startswith("--model b\\xff: not valid UTF-8")
    said = unreadable_argument(["train", "in.csv", f"--out={odd}"], "utf-8")
    assert said is not None and said.startswith("--out=b\\xff: not valid UTF-8")
    assert unreadable_argument(["predict", "评论.csv", "--text-col", "内容"], "utf-8") is None


def test_an_argument_that_is_not_ascii_under_a_locale_that_is_not_utf8_says_how_to_run() -> None:
    typed = os.fsdecode("评论.csv".encode())  # what Python's ASCII locale makes of it: lone surrogates
    said = unreadable_argument(["predict", typed], "ascii")
    assert said is not None and said.startswith(
        "评论.csv: not ASCII, and Python reads the command line as ascii"
    )
    assert "run with PYTHONUTF8=1, or under a UTF-8 locale (LANG=C.UTF-8)" in said
    assert unreadable_argument(["predict", "in.csv", "--text-col", "text"], "ascii") is None


@pytest.mark.skipif(sys.platform != "linux", reason="Linux file names and arguments may hold any bytes")
def test_the_command_line_is_checked_in_a_real_process(tmp_path: Path, toy_bundle: Path) -> None:
    odd = tmp_path.joinpath(os.fsdecode(b"b\xff"))
    odd.symlink_to(toy_bundle)  # a bundle there was said to be damaged (exit 3)
    (tmp_path / "in.csv").write_text("text,label\nhello,pos\n", encoding="utf-8")
    run = [sys.executable, "-m", "clsrun"]
    done = subprocess.run([*run, "eval", odd, "in.csv"], cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count(b"\n") == 1
    assert b"b\\xff: not valid UTF-8" in done.stderr
    ascii_only = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0"}
    args = [*run, "predict", "in.csv", "--text-col", "内容"]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, timeout=120, env=ascii_only)
    assert done.returncode == 2
    assert done.stderr.decode() == (
        "error: --text-col 内容: not ASCII, and Python reads the command line as ascii under this locale (LC_ALL, "
        "LC_CTYPE, LANG); run with PYTHONUTF8=1, or under a UTF-8 locale (LANG=C.UTF-8)\n"
    )
    assert {p.name for p in tmp_path.iterdir()} == {"in.csv", odd.name}  # nothing written


@pytest.mark.parametrize(
    ("environ", "width"),
    [
        ({"COLUMNS": "20"}, "60"),
        ({"COLUMNS": "99999999999999999999"}, "200"),
        ({"COLUMNS": "120"}, "120"),
        ({"TERMINAL_WIDTH": "1", "COLUMNS": "120"}, "60"),
        ({"TERMINAL_WIDTH": "wide"}, None),
        ({"COLUMNS": "wide"}, None),
    ],
)
def test_the_help_width_is_brought_into_a_readable_range(environ: dict[str, str], width: str | None) -> None:
    clamp_help_width(environ)
    assert environ.get("TERMINAL_WIDTH") == width


def test_help_under_an_absurd_columns_is_readable_not_a_traceback() -> None:
    for columns, widest in (("99999999999999999999", 200), ("20", 60)):
        env = {**os.environ, "COLUMNS": columns, "NO_COLOR": "1"}
        done = subprocess.run(
            [sys.executable, "-m", "clsrun", "eval", "--help"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert max(len(line) for line in done.stdout.splitlines()) == widest
