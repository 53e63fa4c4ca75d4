"""`clsrun predict` through typer's CliRunner (exit codes, messages) and one real subprocess run."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import typer.main
from typer.testing import CliRunner

from clsrun.runtime.cli import app, global_flags_first
from clsrun.runtime.cli.predict import ScoringBar
from clsrun.runtime.readers import ReadProgress

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
    assert "scored 2,000 rows (1,960 ok, 40 error" in res.output
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
    assert "scored 300 rows" in done.stderr and "scoring" not in done.stderr  # a pipe: no bar
    out = pacsv.read_csv(tmp_path / "in.scores.csv")
    assert out.num_rows == 300 and out.column_names == ["id", "label", "score", "status", "error"]


# -- the progress bar: tqdm on stderr when it is a terminal, with the input's row count and time left --------


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, so the progress bar is drawn into it."""

    def isatty(self) -> bool:
        return True


def _on_terminal(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> str:
    """Run clsrun in this process with stderr a (fake) terminal; what it wrote there."""
    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    code = typer.main.get_command(app).main(args, prog_name="clsrun", standalone_mode=False)
    assert code in (None, 0), err.getvalue()
    return err.getvalue()


def _frames(stderr: str) -> list[str]:
    """The bar's successive states (tqdm redraws its line after a carriage return)."""
    return [f.strip() for f in stderr.replace("\r", "\n").splitlines() if f.strip().startswith("scoring")]


@pytest.mark.parametrize("name", ["in.csv", "in.parquet"])
def test_bar_on_a_terminal_shows_the_total(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    src = _input(tmp_path / "in.csv", 2000)
    if name.endswith(".parquet"):
        every_line = pacsv.ParseOptions(ignore_empty_lines=False)  # the empty texts are rows too
        pq.write_table(pacsv.read_csv(src, parse_options=every_line), tmp_path / name)
        src = tmp_path / name
    stderr = _on_terminal(monkeypatch, ["predict", str(src), "--model", str(toy_bundle), "--window", "500"])
    frames = _frames(stderr)
    # CSV: estimated from the bytes read (here the first chunk is the whole file) until the end is read;
    # Parquet: the row count in its metadata from the start.
    first = "scoring (~est.):" if name.endswith(".csv") else "scoring:"
    assert frames[0].startswith(first) and "0.00/2.00k" in frames[0], frames
    assert frames[-1].startswith("scoring: 100%") and "2.00k/2.00k" in frames[-1], frames
    assert stderr.rstrip().splitlines()[-1].startswith("scored 2,000 rows")


def test_no_bar_with_quiet_or_when_stderr_is_not_a_terminal(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["predict", str(_input(tmp_path / "in.csv", 300)), "--model", str(toy_bundle)]
    res = runner.invoke(app, args)  # CliRunner's stderr is not a terminal
    assert res.exit_code == 0 and res.output.startswith("scored 300 rows") and res.output.count("\n") == 1
    assert _on_terminal(monkeypatch, [*args, "--quiet", "--overwrite"]) == ""  # a rerun: --overwrite


def test_resumed_run_starts_the_bar_at_the_rows_done(
    tmp_path: Path,
    toy_bundle: Path,
    monkeypatch: pytest.MonkeyPatch,
    crash_after_parts: Callable[[int], AbstractContextManager[None]],
) -> None:
    args = ["predict", str(_input(tmp_path / "in.csv", 2000)), "--model", str(toy_bundle), "--window", "500"]
    with crash_after_parts(2):
        assert runner.invoke(app, [*args, "--resume"]).exit_code == 1
    frames = _frames(_on_terminal(monkeypatch, [*args, "--resume"]))
    assert "1.00k/2.00k" in frames[1] and "? rows/s" in frames[1], frames  # resumed: no rate yet
    assert frames[-1].startswith("scoring: 100%") and "2.00k/2.00k" in frames[-1], frames


class _Stream:
    """What ScoringBar asks of a RecordStream: ``progress()``."""

    def __init__(self) -> None:
        self.now = ReadProgress(1000, 0.1, 10_000, False)

    def progress(self) -> ReadProgress:
        return self.now


def test_scoring_bar_follows_the_estimate_and_leaves_resumed_rows_out_of_the_rate() -> None:
    stream = _Stream()
    bar = ScoringBar(stream, file=io.StringIO())  # type: ignore[arg-type]
    assert bar.bar.total == 10_000 and bar.bar.desc == "scoring (~est.)"
    bar.resumed(4000)
    assert bar.bar.n == bar.bar.initial == 4000  # tqdm's rate counts from here: rows/s of this run only
    stream.now = ReadProgress(6000, 0.5, 12_000, False)
    bar.update(1000)
    assert bar.bar.n == 5000 and bar.bar.total == 12_000
    stream.now = ReadProgress(4500, 1.0, 4500, False)  # an estimate below the rows written: never under n
    bar.update(100)
    assert bar.bar.total == 5100
    stream.now = ReadProgress(11_000, 1.0, 11_000, True)
    bar.update(5900)
    assert bar.bar.total == 11_000 and bar.bar.n == 11_000 and bar.bar.desc == "scoring"
    bar.close()


def test_a_scoring_process_writes_nothing_into_home(tmp_path: Path, toy_bundle: Path) -> None:
    """onnxruntime 1.32 kept a device id and an event database under ~/.cache/Microsoft on every run (and
    printed a coloured warning into the job's log where HOME could not be written)."""
    import os

    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(home), CLSRUN_CACHE_DIR=str(tmp_path / "cache"))
    src, out = _input(tmp_path / "in.csv", 20), tmp_path / "o.csv"
    cmd = [sys.executable, "-m", "clsrun", "predict", str(src), "--model", str(toy_bundle), "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.is_file() and list(home.iterdir()) == []


def _run_with_stderr(args: list[str], stderr: int) -> int:
    cmd = [sys.executable, "-m", "clsrun", "predict", *args]
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=stderr, timeout=120).returncode


def test_a_log_pipe_closed_or_a_closed_stderr_does_not_change_the_exit_code(
    tmp_path: Path, toy_bundle: Path
) -> None:
    import os

    src, out = _input(tmp_path / "in.csv", 300), tmp_path / "o.csv"
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the log collector is gone: every write to stderr fails with EPIPE
    try:
        ok = _run_with_stderr([str(src), "--model", str(toy_bundle), "--out", str(out)], write_end)
        refused = _run_with_stderr([str(empty), "--model", str(toy_bundle), "--out", str(out)], write_end)
    finally:
        os.close(write_end)
    assert (ok, refused) == (0, 2)  # not 1: the summary line that could not be written is only dropped
    assert len(pacsv.read_csv(out)) == 300 and Path(f"{out}.manifest.json").is_file()
    # stderr closed before the process started (`2>&-`): Python has no sys.stderr at all
    closed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; os.close(2); from clsrun.__main__ import main; main()",
            "predict",
            str(empty),
            "--model",
            str(toy_bundle),
            "--out",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        timeout=120,
    )
    assert closed.returncode == 2


def test_a_lossy_stream_drops_writes_once_its_reader_or_disk_is_gone_and_raises_anything_else() -> None:
    import errno

    from clsrun.runtime.cli.streams import LossyStream

    class Pipe(io.StringIO):
        error = errno.EPIPE

        def write(self, text: str) -> int:
            if "x" in text:
                raise OSError(self.error, "no")
            return super().write(text)

    pipe = Pipe()
    stream = LossyStream(pipe)  # type: ignore[arg-type]
    assert stream.write("a") == 1 and stream.write("x!") == 2 and stream.write("b") == 1
    assert stream.gone and pipe.getvalue() == "a"  # after the reader went, nothing more is written
    for full in (errno.ENOSPC, errno.EDQUOT, errno.EIO):  # a log file on a full or failing disk: the same
        pipe.error = full
        assert LossyStream(pipe).write("x") == 1  # type: ignore[arg-type]
    pipe.error = errno.EACCES  # anything else is not the stream's end: it still fails
    with pytest.raises(OSError, match="no"):
        LossyStream(pipe).write("x")  # type: ignore[arg-type]


def test_libraries_info_lines_stay_out_of_stderr_unless_debug(tmp_path: Path, toy_bundle: Path) -> None:
    src, out = _input(tmp_path / "in.csv", 30), tmp_path / "o.csv"
    chatty = (
        "import atexit, logging, sys; "
        "atexit.register(lambda: logging.getLogger('somelib').info('library chatter at exit')); "
        "from clsrun.__main__ import main; main()"
    )
    runs = {}
    for debug in ([], ["--debug"]):
        # --debug after the command: the console entry point moves it where typer reads it
        args = ["predict", str(src), "--model", str(toy_bundle), "--out", str(out), "--overwrite", *debug]
        res = subprocess.run(
            [sys.executable, "-c", chatty, *args], capture_output=True, text=True, timeout=120
        )
        assert res.returncode == 0, res.stderr
        runs[bool(debug)] = res.stderr
    assert "library chatter" not in runs[False] and "scored 30 rows" in runs[False]
    assert "library chatter at exit" in runs[True]  # --debug shows everything


def test_debug_is_read_before_or_after_the_command_but_not_after_a_separator() -> None:
    assert global_flags_first(["predict", "x.csv", "--debug"]) == ["--debug", "predict", "x.csv"]
    assert global_flags_first(["--debug", "eval", "B", "--debug"]) == ["--debug", "eval", "B"]
    assert global_flags_first(["predict", "--", "--debug"]) == ["predict", "--", "--debug"]  # a file's name
    assert global_flags_first(["--version"]) == ["--version"]


def test_an_error_naming_a_file_with_a_line_end_in_its_name_is_one_line(
    tmp_path: Path, toy_bundle: Path
) -> None:
    src = tmp_path / "a\nb\r.csv"  # Linux allows any byte but / and NUL in a name
    src.write_text("text\nhello\n", encoding="utf-8")
    res = runner.invoke(app, ["predict", str(src), "--model", str(toy_bundle), "--text-col", "nope"])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "a\\nb\\r.csv: no column 'nope'" in res.output


def test_an_error_quoting_raw_bytes_is_one_printable_line(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clsrun.runtime import predict
    from clsrun.runtime.errors import InputError

    def damaged(*args: object, **kwargs: object) -> None:
        raise InputError("in.parquet: a page cannot be read (don't know what type: \x0f\x1b[2J)")

    monkeypatch.setattr(predict, "open_input", damaged)
    src = tmp_path / "in.csv"
    src.write_text("text\nhello\n", encoding="utf-8")
    res = runner.invoke(
        app, ["predict", str(src), "--model", str(toy_bundle), "--out", str(tmp_path / "o.csv")]
    )
    assert res.exit_code == 2
    assert "don't know what type: \\x0f\\x1b[2J)" in res.output and "\x1b" not in res.output


def test_without_model_the_summary_says_the_default_model_and_what_it_labels(tmp_path: Path) -> None:
    import json

    from clsrun.runtime.bundle import DEFAULT_MODEL_ABOUT, default_model_path

    src = tmp_path / "in.csv"
    src.write_text("text\nShares fell sharply.\n", encoding="utf-8")
    res = runner.invoke(app, ["predict", str(src), "--out", str(tmp_path / "o.csv")])
    assert res.exit_code == 0, res.output
    assert res.output.strip().endswith(f"; {DEFAULT_MODEL_ABOUT})")  # a user who forgot --model sees it
    labels = json.loads((default_model_path() / "clsrun.json").read_text(encoding="utf-8"))["labels"]
    assert DEFAULT_MODEL_ABOUT.endswith("labels " + " / ".join(labels))  # the words match the shipped model


def test_ray_options_given_to_the_local_engine_are_refused(tmp_path: Path, toy_bundle: Path) -> None:
    """--workers/--address without --engine ray were ignored: a job meant for a cluster ran here, silently."""
    src = _input(tmp_path / "in.csv", n=10)
    args = ["predict", str(src), "--model", str(toy_bundle), "--out", str(tmp_path / "o.csv")]
    result = runner.invoke(app, [*args, "--workers", "5", "--address", "auto", "--preserve-order"])
    assert result.exit_code == 2
    assert "--address, --workers, --preserve-order: options of --engine ray" in result.output
    assert not (tmp_path / "o.csv").exists()
    assert runner.invoke(app, args).exit_code == 0


def test_an_output_that_is_a_loop_of_symbolic_links_is_one_line(tmp_path: Path, toy_bundle: Path) -> None:
    """It was "unexpected RuntimeError: Symlink loop" (resolving the output to lock it)."""
    src = _input(tmp_path / "in.csv", n=10)
    (tmp_path / "a.csv").symlink_to("b.csv")
    (tmp_path / "b.csv").symlink_to("a.csv")
    result = runner.invoke(
        app, ["predict", str(src), "--model", str(toy_bundle), "--out", str(tmp_path / "a.csv")]
    )
    assert result.exit_code == 2 and "a.csv: a loop of symbolic links" in result.output


def test_the_manifest_names_input_output_and_bundle_as_absolute_paths(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Typed relative to the caller's folder, the paths in the manifest would not say which model scored
    which file to whoever reads it from elsewhere (the output's own folder, a later job)."""
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    _input(work / "in.csv", 30)
    model = Path(__import__("shutil").copytree(toy_bundle, work / "model"))
    monkeypatch.chdir(work)
    res = runner.invoke(app, ["predict", "in.csv", "--model", "model", "--out", "out/o.csv", "--quiet"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((work / "out" / "o.csv.manifest.json").read_text(encoding="utf-8"))
    assert manifest["input"] == str(work / "in.csv")
    assert manifest["output"] == str(work / "out" / "o.csv")
    assert manifest["bundle"] == str(model)


@pytest.mark.parametrize(
    ("raised", "said"),
    [
        (
            MemoryError("Unable to allocate 13.6 MiB"),
            "error: out of memory (Unable to allocate 13.6 MiB): give",
        ),
        (RuntimeError("can't start new thread"), "error: cannot start a thread: the limit on processes"),
        (OSError(27, "File too large"), "file too large for the process's limit (ulimit -f)"),
    ],
)
def test_running_out_of_memory_threads_or_file_size_is_one_line_not_a_bug(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch, raised: BaseException, said: str
) -> None:
    """ulimit -v, -u and -f were "unexpected MemoryError / RuntimeError / OSError ... (run with --debug)"."""
    from clsrun.runtime import pipeline

    def fails(*args: object) -> None:
        raise raised

    monkeypatch.setattr(pipeline.Pipeline, "run", fails)
    src = _input(tmp_path / "in.csv", 30)
    res = runner.invoke(
        app, ["predict", str(src), "--model", str(toy_bundle), "--out", str(tmp_path / "o.csv")]
    )
    assert res.exit_code == 1
    assert said in res.output and "unexpected" not in res.output


def test_a_thread_that_could_not_start_is_the_error_not_a_join_of_it(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline joined the thread whose start failed: "cannot join thread before it is started" hid
    the real error."""
    import threading

    real_start, started = threading.Thread.start, []

    def third_fails(self: threading.Thread) -> None:
        started.append(self.name)
        if len(started) == 3:
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", third_fails)
    src = _input(tmp_path / "in.csv", 30)
    res = runner.invoke(
        app, ["predict", str(src), "--model", str(toy_bundle), "--out", str(tmp_path / "o.csv")]
    )
    assert res.exit_code == 1 and "cannot start a thread" in res.output, res.output


def test_a_run_that_fails_leaves_no_empty_output_folders(tmp_path: Path, toy_bundle: Path) -> None:
    """`--out a/b/s.csv` made a/b/ before the bundle was found missing (exit 3), and left it."""
    src = _input(tmp_path / "in.csv", 20)
    res = runner.invoke(
        app, ["predict", str(src), "--model", str(tmp_path / "nosuch"), "--out", str(tmp_path / "a/b/s.csv")]
    )
    assert res.exit_code == 3 and "model bundle folder not found" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]
    dotdot = str(tmp_path / "new" / ".." / "other" / "s.csv")  # mkdir -p makes `new` too
    res = runner.invoke(app, ["predict", str(src), "--model", str(tmp_path / "nosuch"), "--out", dotdot])
    assert res.exit_code == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]
    kept = tmp_path / "kept"
    kept.mkdir()
    res = runner.invoke(
        app, ["predict", str(src), "--model", str(tmp_path / "nosuch"), "--out", str(kept / "s.csv")]
    )
    assert res.exit_code == 3 and kept.is_dir()  # a folder that was there stays


def test_another_users_output_in_a_sticky_folder_is_refused_before_scoring(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a file's owner may replace it in a sticky folder (/tmp, a shared drop folder): the run scored
    every row, then failed to publish ("operation not permitted while scoring into it")."""
    import os

    from clsrun.runtime import claim

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    src, out = _input(tmp_path / "in.csv", 20), shared / "s.csv"
    out.write_text("last night's\n", encoding="utf-8")
    owner = out.stat().st_uid
    monkeypatch.setattr(claim.os, "geteuid", lambda: owner + 1)  # someone else (and not root)
    res = runner.invoke(
        app, ["predict", str(src), "--model", str(toy_bundle), "--out", str(out), "--overwrite"]
    )
    assert res.exit_code == 2 and "only a file's owner may replace it" in res.output
    assert out.read_text(encoding="utf-8") == "last night's\n" and not (shared / ".s.csv.partial").exists()
    monkeypatch.setattr(claim.os, "geteuid", lambda: owner)  # its owner replaces it
    res = runner.invoke(
        app, ["predict", str(src), "--model", str(toy_bundle), "--out", str(out), "--overwrite"]
    )
    assert res.exit_code == 0, res.output
    os.chmod(shared, 0o755)


def test_another_users_checkpoint_is_said_as_theirs(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was ".../journal.jsonl: permission denied", naming neither whose run it was nor what to do."""
    from clsrun.runtime import claim

    src, out = _input(tmp_path / "in.csv", 20), tmp_path / "s.csv"
    (tmp_path / ".s.csv.partial").mkdir()
    owner = (tmp_path / ".s.csv.partial").stat().st_uid
    monkeypatch.setattr(claim.os, "geteuid", lambda: owner + 1)
    monkeypatch.setattr(claim, "_can_change", lambda folder: False)  # as root, every access is allowed
    for flags in ([], ["--resume"], ["--overwrite"]):
        res = runner.invoke(app, ["predict", str(src), "--model", str(toy_bundle), "--out", str(out), *flags])
        assert res.exit_code == 2 and "the checkpoint of a stopped run of user" in res.output, flags
        assert "--resume as that user" in res.output


def test_running_out_of_file_descriptors_is_said_as_that(tmp_path: Path, toy_bundle: Path) -> None:
    """Under a low ``ulimit -n`` the model's file could not be opened: it was "model.onnx: cannot be read"
    (exit 3, a damaged bundle: the wrong place to look), or an unexpected OSError. Now the limit is named,
    exit 1, wherever the open fails; with room enough the run scores."""
    import resource

    src = tmp_path / "in.csv"
    src.write_text("text\ngood\nbad\n", encoding="utf-8")
    said: dict[int, tuple[int, str]] = {}
    for limit in range(5, 13):

        def low_limit(n: int = limit) -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

        cmd = [sys.executable, "-m", "clsrun", "predict", str(src), "--model", str(toy_bundle)]
        cmd += ["--out", str(tmp_path / f"o{limit}.csv"), "--quiet"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, preexec_fn=low_limit)
        said[limit] = (done.returncode, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "")
    failed = {n: s for n, s in said.items() if s[0] != 0}
    assert failed, said  # some limit in the range is too low to score
    assert any(code == 0 for code, _ in said.values()), said  # and some is enough
    for code, line in failed.values():
        if "Too many open files" in line and not line.startswith("error:"):
            continue  # Python itself could not start (its own traceback): before clsrun runs
        assert code == 1 and line.startswith(
            "error: too many open files: the limit on open files (ulimit -n)"
        ), said
