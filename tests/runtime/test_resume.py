"""--resume: an interrupted run, continued, gives output identical to an uninterrupted one."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from clsrun.runtime.batching import BatchOptions
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.errors import (
    ErrorRateExceeded,
    InputError,
    OutputExistsError,
    ResumeError,
    StorageError,
    UsageError,
)
from clsrun.runtime.input_files import ReadOptions
from clsrun.runtime.partial import JOURNAL_FILE, CheckpointExistsError, PartialOutput
from clsrun.runtime.score import OutputOptions, ScoreResult, open_input, score_file
from clsrun.runtime.variant import Variant


def _input(path: Path, n: int) -> Path:
    rng = np.random.default_rng(3)
    pool = ["g" * k + "b" * (k % 4) + "x" * (k % 5) for k in range(1, 30)] + ["", "好差", "  "]
    texts = [pool[i] for i in rng.integers(0, len(pool), size=n)]
    pacsv.write_csv(pa.table({"text": texts}), path)
    return path


class _Crash(Exception):
    pass


def _before_each_save(monkeypatch: pytest.MonkeyPatch, hook: Any) -> None:
    """``hook(n)`` runs before the run saves its window number ``n`` (0 first); what it raises, the run does."""
    original = PartialOutput.add
    calls = {"n": 0}

    def add(self: PartialOutput, *args: object, **kwargs: object) -> object:
        hook(calls["n"])
        calls["n"] += 1
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(PartialOutput, "add", add)


def _crash_after(monkeypatch: pytest.MonkeyPatch, parts: int, error: BaseException | None = None) -> None:
    """The next run saves ``parts`` windows, then raises ``error`` (a :class:`_Crash` by default)."""

    def crash(n: int) -> None:
        if n == parts:
            raise error or _Crash()

    _before_each_save(monkeypatch, crash)


@pytest.mark.parametrize("out_name", ["o.csv", "o.jsonl", "o.parquet"])
def test_interrupted_then_resumed_equals_uninterrupted(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch, out_name: str
) -> None:
    src = _input(tmp_path / "in.csv", 4000)
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=300))
    ref = score_file(src, tmp_path / f"ref{Path(out_name).suffix}", clf, options=OutputOptions(probs=True))
    out = tmp_path / out_name
    for stop_after in (3, 7):  # crash twice, the second time during a resumed run
        with monkeypatch.context() as m:
            _crash_after(m, stop_after - (3 if stop_after == 7 else 0))
            with pytest.raises(_Crash):
                score_file(src, out, clf, options=OutputOptions(probs=True, resume=True))
        assert not out.exists()  # never visible before it is complete
    result = score_file(src, out, clf, options=OutputOptions(probs=True, resume=True))
    assert result.manifest["resumed_from_row"] == 7 * 300
    assert out.read_bytes() == ref.output.read_bytes()
    assert result.manifest["ok"] == ref.manifest["ok"] and result.manifest["error"] == ref.manifest["error"]


class _Left:
    """What an interrupted run of 2,000 rows in windows of 250 left: 4 parts checkpointed in ``folder``."""

    def __init__(
        self, tmp_path: Path, bundle: Path, monkeypatch: pytest.MonkeyPatch, options: OutputOptions
    ) -> None:
        self.src = _input(tmp_path / "in.csv", 2000)
        self.clf = Classifier.load(bundle, Variant(threads=1), BatchOptions(window=250))
        self.ref = score_file(self.src, tmp_path / "ref.csv", self.clf, options=options)
        self.out = tmp_path / "o.csv"
        with monkeypatch.context() as m:
            _crash_after(m, 4)
            with pytest.raises(_Crash):
                score_file(self.src, self.out, self.clf, options=options)
        self.folder = PartialOutput.folder_for(self.out)
        self.run_id = json.loads((self.folder / "state.json").read_text())["run_id"]


def test_torn_journal_line_and_stray_part_are_ignored(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    left = _Left(tmp_path, toy_bundle, monkeypatch, OutputOptions())
    with open(left.folder / JOURNAL_FILE, "a", encoding="utf-8") as f:
        f.write('{"index": 4, "start": 10')  # the kill landed mid-line
    torn = left.folder / f".part-000004.{left.run_id}.arrow.k2j4x9.tmp"  # the kill landed mid-write
    torn.write_bytes(b"half a part")
    result = score_file(left.src, left.out, left.clf, options=OutputOptions(resume=True))
    assert not torn.exists()
    assert result.manifest["resumed_from_row"] == 1000
    assert left.out.read_bytes() == left.ref.output.read_bytes()


def test_resume_does_not_replace_a_file_put_at_out_after_the_job_started(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--resume alone replaced a file that appeared at --out after the killed run started (without
    --overwrite, into an empty path); with no window checkpointed the same resume refused it."""
    left = _Left(tmp_path, toy_bundle, monkeypatch, OutputOptions())
    left.out.write_text("someone else's file\n", encoding="utf-8")
    with pytest.raises(OutputExistsError, match=r"a file appeared there after this job started"):
        score_file(left.src, left.out, left.clf, options=OutputOptions(resume=True))
    assert left.out.read_text(encoding="utf-8") == "someone else's file\n"
    assert PartialOutput.checkpointed_rows(left.out) == 1000  # the checkpoint is kept for a resume
    left.out.unlink()
    result = score_file(left.src, left.out, left.clf, options=OutputOptions(resume=True))
    assert result.manifest["resumed_from_row"] == 1000
    assert left.out.read_bytes() == left.ref.output.read_bytes()
    # A run told to --overwrite may replace what is there when it resumes, as it was told to.
    (tmp_path / "again").mkdir()
    again = _Left(tmp_path / "again", toy_bundle, monkeypatch, OutputOptions(overwrite=True))
    again.out.write_text("older output\n", encoding="utf-8")
    assert score_file(again.src, again.out, again.clf, options=OutputOptions(resume=True)).output == again.out
    assert again.out.read_bytes() == again.ref.output.read_bytes()


def test_resume_refuses_a_changed_input_or_options(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _input(tmp_path / "in.csv", 1000)
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=200))
    out = tmp_path / "o.csv"
    with monkeypatch.context() as m:
        _crash_after(m, 1)
        with pytest.raises(_Crash):
            score_file(src, out, clf)
    with pytest.raises(ResumeError, match=r"--probs changed \(was False, now True\)"):
        score_file(src, out, clf, options=OutputOptions(probs=True, resume=True))
    wider = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=400))
    with pytest.raises(ResumeError, match=r"--window changed \(was 200, now 400\)"):
        score_file(src, out, wider, options=OutputOptions(resume=True))
    with open(src, "a", encoding="utf-8") as f:
        f.write("one more row\n")
    with pytest.raises(
        ResumeError, match=r"the input file changed \(size, modification time, status-change time"
    ):
        score_file(src, out, clf, options=OutputOptions(resume=True))
    with pytest.raises(CheckpointExistsError, match=r"left 200 rows checkpointed .* add --resume"):
        score_file(src, out, clf)  # would silently discard the checkpoint
    score_file(src, out, clf, options=OutputOptions(overwrite=True))  # says to start over
    assert out.exists()


def test_kill_9_then_resume_in_a_real_process(tmp_path: Path, toy_bundle: Path) -> None:
    src = _input(tmp_path / "in.csv", 30000)
    cmd = [sys.executable, "-c", "from clsrun.runtime.cli import main; main()", "predict", str(src), "--model", str(toy_bundle),
           "--window", "500", "--batch-tokens", "512", "--threads", "1", "-q"]  # fmt: skip
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=500, batch_tokens=512))
    ref = score_file(src, tmp_path / "ref.csv", clf)
    out = tmp_path / "o.csv"
    journal = PartialOutput.folder_for(out) / JOURNAL_FILE
    proc = subprocess.Popen([*cmd, "--out", str(out)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.is_file() and journal.read_text(encoding="utf-8").count("\n") >= 3:
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.fail("the run finished before it could be killed; make the input bigger")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    subprocess.run([*cmd, "--out", str(out), "--resume"], check=True)
    assert out.read_bytes() == ref.output.read_bytes()


def test_resume_of_a_completed_run_does_nothing(tmp_path: Path, toy_bundle: Path) -> None:
    src = _input(tmp_path / "in.csv", 500)
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=100))
    first = score_file(src, tmp_path / "o.csv", clf, options=OutputOptions(resume=True))
    stamp = first.output.stat().st_mtime_ns
    again = score_file(src, tmp_path / "o.csv", clf, options=OutputOptions(resume=True))
    assert again.manifest == first.manifest and first.output.stat().st_mtime_ns == stamp
    assert again.already_complete and "already complete (500 rows" in again.summary()
    with pytest.raises(
        OutputExistsError, match=r"exists, from another job \(--probs changed .* add --overwrite"
    ):
        score_file(src, tmp_path / "o.csv", clf, options=OutputOptions(resume=True, probs=True))
    options = OutputOptions(resume=True, probs=True, overwrite=True)
    changed = score_file(src, tmp_path / "o.csv", clf, options=options)
    assert changed.manifest["options"]["probs"] is True  # other options: scored again


def test_resume_names_only_what_the_user_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative input path typed twice is the same path; rows per batch that follow --window are not named."""
    monkeypatch.chdir(tmp_path)
    _input(tmp_path / "in.csv", 300)
    clf = Classifier.load(None, Variant(threads=1), BatchOptions(window=100))
    first = score_file(Path("in.csv"), Path("o.csv"), clf)
    assert first.manifest["input"] == str(tmp_path / "in.csv")
    wider = Classifier.load(None, Variant(threads=1), BatchOptions(window=200))
    assert (
        wider.batching.max_batch_rows != clf.batching.max_batch_rows
    )  # the default model's follow the window
    with pytest.raises(OutputExistsError) as refused:
        score_file(Path("in.csv"), Path("o.csv"), wider, options=OutputOptions(resume=True, probs=True))
    assert "(--probs changed (was False, now True); --window changed (was 100, now 200))" in str(
        refused.value
    )
    assert "input path" not in str(refused.value) and "rows per batch" not in str(refused.value)


def test_batch_settings_that_follow_a_new_model_variant_are_not_named_as_options() -> None:
    """`clsrun export --force` changed the variant auto picks: the batch defaults follow it, and the refusal
    named --batch-tokens as changed though nobody typed it."""
    from clsrun.runtime.partial import describe_changes

    old = {"variant": "onnx-int8", "options": {"batch_tokens": 16384, "max_batch_rows": 256, "probs": False}}
    new = {
        "variant": "openvino-int8",
        "options": {"batch_tokens": 32768, "max_batch_rows": 512, "probs": False},
    }
    said = describe_changes(old, new)
    assert len(said) == 1 and said[0].startswith("the model variant (--backend/--precision/--device) changed")
    typed = {**old, "options": {**old["options"], "batch_tokens": 8192}}
    assert describe_changes(old, typed) == ["--batch-tokens changed (was 16384, now 8192)"]


class _FailingRunner:
    """Wraps a runner: the ``fail_at``-th call raises (in whichever stream's thread runs it), once a window is
    checkpointed in ``checkpoint`` (or after a minute): on a loaded machine the writer may lag the streams,
    and the test is about resuming saved windows, not about how far the writer got."""

    def __init__(self, runner: Any, fail_at: int, checkpoint: Path) -> None:
        self.runner, self.providers, self.fail_at = runner, runner.providers, fail_at
        self.checkpoint = checkpoint
        self.calls, self.lock = 0, threading.Lock()

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with self.lock:
            self.calls += 1
            crash = self.calls == self.fail_at
        if crash:
            deadline = time.monotonic() + 60
            while not any(self.checkpoint.glob("part-*.arrow")) and time.monotonic() < deadline:
                time.sleep(0.01)
            raise _Crash
        return np.asarray(self.runner.run(inputs))


def test_a_failing_stream_stops_the_run_and_resume_completes_it(tmp_path: Path, toy_bundle: Path) -> None:
    src = _input(tmp_path / "in.csv", 4000)
    batching, output = BatchOptions(window=300, batch_tokens=400), OutputOptions(probs=True, resume=True)
    one = Classifier.load(toy_bundle, Variant(threads=1), batching)
    ref = score_file(src, tmp_path / "ref.csv", one, options=OutputOptions(probs=True))
    clf = Classifier.load(toy_bundle, Variant(threads=3, streams=3), batching)
    failing = dataclasses.replace(clf, runner=_FailingRunner(clf.runner, 30, tmp_path / ".out.csv.partial"))
    out = tmp_path / "out.csv"
    with pytest.raises(_Crash):
        score_file(src, out, failing, options=output)
    assert not out.exists()
    result = score_file(src, out, clf, options=output)
    assert 0 < result.manifest["resumed_from_row"] < 4000
    assert out.read_bytes() == ref.output.read_bytes()


def test_a_full_disk_names_the_output_and_the_rows_saved_and_resume_continues(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _input(tmp_path / "in.csv", 3000)
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=300))
    ref = score_file(src, tmp_path / "ref.csv", clf)
    out = tmp_path / "o.csv"
    with (
        monkeypatch.context() as m
    ):  # the fifth window finds the disk full (as a write says it: no file name)
        _crash_after(m, 4, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        with pytest.raises(StorageError) as e:
            score_file(src, out, clf)
    message = str(e.value)
    assert message.startswith(
        f"{out}: no space left on the device while scoring into it; 1,200 rows are saved"
    )
    assert "--resume to continue from row 1,200" in message and e.value.exit_code == 1
    assert not out.exists()
    result = score_file(src, out, clf, options=OutputOptions(resume=True))
    assert result.manifest["resumed_from_row"] == 1200
    assert out.read_bytes() == ref.output.read_bytes()


def test_a_disk_full_when_the_manifest_is_written_takes_the_output_back_and_resume_publishes_both(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The output is published, then the manifest finds the disk full: the run had ended exit 1 with a
    complete output, no manifest, and advice ("run again") that the checkpoint then refused."""
    src = _input(tmp_path / "in.csv", 900)
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=300))
    ref = score_file(src, tmp_path / "ref.csv", clf)
    out = tmp_path / "o.csv"

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr("clsrun.runtime.score.atomic_write_text", full)
        with pytest.raises(StorageError) as e:
            score_file(src, out, clf)
    assert str(e.value).startswith(f"{out}: no space left on the device while scoring into it; 900 rows")
    assert "--resume to continue from row 900" in str(e.value) and e.value.exit_code == 1
    assert not out.exists() and not (tmp_path / "o.csv.manifest.json").exists()
    result = score_file(src, out, clf, options=OutputOptions(resume=True))
    assert out.read_bytes() == ref.output.read_bytes() and result.manifest_path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["in.csv", "ref.csv", "ref.csv.manifest.json", "o.csv", "o.csv.manifest.json"]
    )


def test_a_full_disk_before_any_row_was_saved_says_so(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _input(tmp_path / "in.csv", 500)
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=300))
    with monkeypatch.context() as m:
        _crash_after(m, 0, OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)))
        with pytest.raises(
            StorageError, match=r"o\.csv: disk quota exceeded while scoring into it; no row was"
        ):
            score_file(src, tmp_path / "o.csv", clf)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # nothing left behind
    assert score_file(src, tmp_path / "o.csv", clf).manifest["rows_read"] == 500  # the same command, again


@pytest.mark.parametrize("out_name", ["o.csv", "o.parquet"])
def test_a_disk_too_full_to_open_the_output_says_so_and_leaves_nothing(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch, out_name: str
) -> None:
    src = _input(tmp_path / "in.csv", 50)
    clf = Classifier.load(toy_bundle, Variant(threads=1))

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(
            errno.ENOSPC, os.strerror(errno.ENOSPC)
        )  # what pyarrow's writer raises writing a header

    with monkeypatch.context() as m:
        m.setattr("clsrun.runtime.score.TableFile", full)
        with pytest.raises(
            StorageError, match=rf"{out_name}: no space left on the device while scoring into it"
        ):
            score_file(src, tmp_path / out_name, clf)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # no checkpoint without rows left behind


def _on_first_save(monkeypatch: pytest.MonkeyPatch, action: Any) -> None:
    """Run ``action()`` once, when the run saves its first window (the input is then open and being read)."""
    _before_each_save(monkeypatch, lambda n: action() if n == 0 else None)


@pytest.mark.parametrize("how", ["append", "rewrite"])
def test_an_input_written_to_while_scored_publishes_nothing(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    src = _input(tmp_path / "in.csv", 3000)
    other = _input(tmp_path / "other.csv", 3000).read_bytes()[::-1]  # same size, other content

    def write() -> None:
        if how == "append":
            with open(src, "a", encoding="utf-8") as f:
                f.write("one more row\n" * 500)
        else:
            with open(src, "r+b") as f:  # in place: same inode, as `cp B A` does
                f.write(other)

    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=200))
    out = tmp_path / "o.csv"
    _on_first_save(monkeypatch, write)
    with pytest.raises(
        InputError, match=r"was written to while it was being scored \(its (size|content) changed\)"
    ):
        score_file(src, out, clf)
    assert not out.exists() and not PartialOutput.folder_for(out).exists()
    assert not (tmp_path / "o.csv.manifest.json").exists()


def test_an_input_replaced_by_a_rename_while_scored_is_scored_as_it_was(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _input(tmp_path / "in.csv", 3000)
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=200))
    ref = score_file(src, tmp_path / "ref.csv", clf)
    replacement = tmp_path / "new.csv"
    replacement.write_text("text\nsomething else\n", encoding="utf-8")
    _on_first_save(monkeypatch, lambda: os.replace(replacement, src))
    result = score_file(src, tmp_path / "o.csv", clf)  # the reader holds the original open to its end
    assert result.output.read_bytes() == ref.output.read_bytes()


def test_a_retried_finished_job_is_judged_against_the_error_rate_again(
    tmp_path: Path, toy_bundle: Path
) -> None:
    src = tmp_path / "in.csv"
    src.write_text("text\n" + "gg\n\n" * 50, encoding="utf-8")  # every other row has no text
    clf = Classifier.load(toy_bundle, Variant(threads=1))
    strict = OutputOptions(max_error_rate=0.1)
    with pytest.raises(ErrorRateExceeded):
        score_file(src, tmp_path / "o.csv", clf, options=strict)
    with pytest.raises(ErrorRateExceeded, match="50 of 100 rows failed"):
        score_file(src, tmp_path / "o.csv", clf, options=dataclasses.replace(strict, resume=True))
    lenient = score_file(src, tmp_path / "o.csv", clf, options=OutputOptions(max_error_rate=0.6, resume=True))
    assert lenient.already_complete


def test_a_run_replacing_another_jobs_output_drops_its_manifest_before_publishing(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _input(tmp_path / "a.csv", 300), _input(tmp_path / "b.csv", 500)
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=100))
    out = tmp_path / "o.csv"
    score_file(first, out, clf)
    with monkeypatch.context() as m:
        m.setattr("clsrun.runtime.score.TableFile.publish", lambda self: (_ for _ in ()).throw(_Crash()))
        with pytest.raises(_Crash):
            score_file(second, out, clf, options=OutputOptions(overwrite=True))
    assert not (tmp_path / "o.csv.manifest.json").exists()  # never a.csv's manifest beside b.csv's rows
    done = score_file(second, out, clf, options=OutputOptions(resume=True))
    assert done.manifest["rows_read"] == 500 and done.manifest["input"] == str(second)


def test_a_write_between_opening_the_input_and_scoring_it_is_caught(tmp_path: Path, toy_bundle: Path) -> None:
    """The fingerprint is taken before the first byte is read, not when the model has loaded."""
    src = _input(tmp_path / "in.csv", 3000)
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=200))
    stream = open_input(src, ReadOptions())  # what the CLI does before loading the model
    with open(src, "a", encoding="utf-8") as f:
        f.write("one more row\n")
    with pytest.raises(InputError, match=r"\(its size changed\)"):
        score_file(stream, tmp_path / "o.csv", clf)


@pytest.mark.parametrize("how", ["chmod", "touch", "hard link"])
def test_metadata_changes_while_scored_are_not_writes(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    src = _input(tmp_path / "in.csv", 3000)
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=200))
    ref = score_file(src, tmp_path / "ref.csv", clf)
    act = {
        "chmod": lambda: src.chmod(0o600),
        "touch": lambda: os.utime(src, ns=(time.time_ns(), time.time_ns() + 10**9)),
        "hard link": lambda: os.link(src, tmp_path / "backup.csv"),
    }[how]
    _on_first_save(monkeypatch, act)
    assert score_file(src, tmp_path / "o.csv", clf).output.read_bytes() == ref.output.read_bytes()


def test_a_parse_error_from_a_write_under_the_reader_says_it_was_written_to(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _input(tmp_path / "in.csv", 1000)
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=200))

    def run(self: Any, stream: Any, skip: int) -> None:
        with open(src, "a", encoding="utf-8") as f:
            f.write('"a quote never closed\n')
        raise InputError(f"{src}: a quote opened in row 1000 is never closed")

    monkeypatch.setattr("clsrun.runtime.score.Pipeline.run", run)
    out = tmp_path / "o.csv"
    with pytest.raises(InputError, match="was written to while it was being scored"):
        score_file(src, out, clf)
    assert not PartialOutput.folder_for(out).exists()


def test_a_file_unreadable_past_saved_rows_leaves_no_checkpoint_and_its_fixed_copy_scores(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "in.csv"
    good = ("text\n" + "".join(f"row {i} {'g' * (i % 30)}\n" for i in range(60_000))).encode()
    src.write_bytes(good + b'"a quote never closed\n' + b"t\n" * 300)
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=2000))
    out = tmp_path / "o.csv"
    saved: list[int] = []
    real_add = PartialOutput.add

    def add(self: PartialOutput, *args: Any, **kwargs: Any) -> Any:
        record = real_add(self, *args, **kwargs)
        saved.append(self.rows_done)
        return record

    monkeypatch.setattr(PartialOutput, "add", add)
    with pytest.raises(InputError, match="never closed"):
        score_file(src, out, clf)
    assert saved and not PartialOutput.folder_for(out).exists() and not out.exists()
    src.write_bytes(good)  # the user fixes the file and runs the same command again: no --overwrite needed
    assert score_file(src, out, clf).manifest["rows_read"] == 60_000


def test_resume_of_a_finished_job_checks_the_output_is_still_what_its_run_published(
    tmp_path: Path, toy_bundle: Path
) -> None:
    src, out = _input(tmp_path / "in.csv", 50), tmp_path / "o.csv"
    clf = Classifier.load(toy_bundle, Variant(threads=1))
    first = score_file(src, out, clf)
    assert first.manifest["output_bytes"] == out.stat().st_size
    resume = OutputOptions(resume=True)
    assert score_file(src, out, clf, options=resume).already_complete  # untouched: nothing to do
    published = out.read_bytes()
    at = min(i for i in (published.find(b"neg"), published.find(b"pos")) if i >= 0)
    flipped = b"pos" if published[at : at + 3] == b"neg" else b"neg"
    when = out.stat().st_mtime_ns
    out.write_bytes(published[:at] + flipped + published[at + 3 :])  # one label changed, the size kept
    os.utime(out, ns=(when + 10**9, when + 10**9))  # a second later (file clocks tick in milliseconds)
    with pytest.raises(
        OutputExistsError, match=r"was modified since its run published it \(.*\); add --overwrite"
    ):
        score_file(src, out, clf, options=resume)
    out.write_text(out.read_text(encoding="utf-8")[:40], encoding="utf-8")  # cut short after the run
    with pytest.raises(OutputExistsError, match="it was changed since; add --overwrite"):
        score_file(src, out, clf, options=resume)
    again = score_file(src, out, clf, options=OutputOptions(resume=True, overwrite=True))
    assert not again.already_complete and pacsv.read_csv(out).num_rows == 50  # scored again, whole
    other = tmp_path / "copy.csv"  # another output with this job's manifest copied beside it
    other.write_bytes(out.read_bytes())
    other.with_name("copy.csv.manifest.json").write_bytes(out.with_name("o.csv.manifest.json").read_bytes())
    with pytest.raises(OutputExistsError, match=r"its manifest was written for another output \(.*o\.csv\)"):
        score_file(src, other, clf, options=resume)


@pytest.mark.skipif(sys.platform != "linux", reason="Linux file names may hold any bytes")
def test_file_names_that_are_not_utf8_are_refused_before_any_work(tmp_path: Path, toy_bundle: Path) -> None:
    src = _input(tmp_path / "in.csv", 20)
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/in\xe9.csv"))
    odd.write_bytes(src.read_bytes())
    clf = Classifier.load(toy_bundle, Variant(threads=1))
    with pytest.raises(InputError, match=r"in\\xe9\.csv: the file's name is not valid UTF-8"):
        score_file(odd, tmp_path / "o.csv", clf)
    with pytest.raises(UsageError, match=r"--out .*\\xe9\.csv: the name is not valid UTF-8"):
        score_file(src, Path(os.fsdecode(bytes(tmp_path) + b"/\xe9.csv")), clf)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("in")) == []  # nothing left


@pytest.mark.skipif(
    os.pathconf(tempfile.gettempdir(), "PC_NAME_MAX") != 255,
    reason="the figures are those of a 255-byte name limit",
)
def test_an_output_name_too_long_for_the_files_made_beside_it_is_refused_before_any_work(
    tmp_path: Path, toy_bundle: Path
) -> None:
    src = _input(tmp_path / "in.csv", 20)
    clf = Classifier.load(toy_bundle, Variant(threads=1))
    # 240 bytes is a legal name, but not its manifest's temporary name (28 more): it failed after every row
    long = tmp_path / ("o" * 236 + ".csv")
    with pytest.raises(
        UsageError,
        match=r"--out .*o\.csv: the name is 240 bytes, and clsrun makes \.NAME\.manifest\.json\.XXXXXXXX\.tmp "
        r"from it \(268 bytes\), over the 255 bytes a file name may have there; give an --out name of at most "
        r"227 bytes",
    ):
        score_file(src, long, clf)
    stem = tmp_path / ("长" * 81 + ".csv")  # the default output, 长...长.scores.csv, is 254 bytes
    stem.write_bytes(src.read_bytes())
    with pytest.raises(UsageError, match=r"the default output .*\.scores\.csv: the name is 254 bytes"):
        score_file(stem, None, clf)
    with pytest.raises(UsageError, match=r"--out .*: its folder cannot be made: a name in .* is too long"):
        score_file(src, tmp_path / "new" / ("d" * 256) / "o.csv", clf)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.csv", stem.name])  # nothing left
    longest = tmp_path / ("o" * 223 + ".csv")  # the longest it allows is scored whole
    result = score_file(src, longest, clf)
    assert result.manifest["rows_read"] == 20 and result.manifest_path.is_file()


def test_a_checkpointed_part_changed_on_disk_is_scored_again_not_published(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    left = _Left(tmp_path, toy_bundle, monkeypatch, OutputOptions(probs=True))
    part = left.folder / f"part-000002.{left.run_id}.arrow"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of the part flipped, its size unchanged
    part.write_bytes(bytes(data))
    result = score_file(left.src, left.out, left.clf, options=OutputOptions(probs=True, resume=True))
    assert result.manifest["resumed_from_row"] == 2 * 250  # parts 0 and 1 kept, 2 on scored again
    assert left.out.read_bytes() == left.ref.output.read_bytes()
    assert "a checkpointed part (rows 500 to 749) was changed on disk" in caplog.text


@pytest.mark.parametrize("removed_before_the_kill", [0, 1, 2, 3])
def test_a_kill_while_removing_the_checkpoint_after_publishing_leaves_a_job_resume_finds_done(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch, removed_before_the_kill: int
) -> None:
    src, out = _input(tmp_path / "in.csv", 3000), tmp_path / "o.csv"
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=500))
    reference = score_file(src, tmp_path / "ref.csv", clf).output.read_bytes()
    real_unlink, done = Path.unlink, []

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.parent == PartialOutput.folder_for(out):
            if len(done) == removed_before_the_kill:
                raise _Crash("killed")  # the process dies here, the checkpoint folder half removed
            done.append(self.name)
        real_unlink(self, missing_ok=missing_ok)

    with monkeypatch.context() as m:
        m.setattr(Path, "unlink", unlink)
        with pytest.raises(_Crash):
            score_file(src, out, clf)
    left = sorted(p.name for p in PartialOutput.folder_for(out).iterdir())
    assert "state.json" in left  # removed last
    assert ("journal.jsonl" in left) == (removed_before_the_kill == 0)  # removed first
    assert out.read_bytes() == reference  # published before the kill
    again = score_file(src, out, clf, options=OutputOptions(resume=True))
    # with its journal gone the checkpoint holds no rows: the published job is found complete; killed
    # before that, the checkpoint still holds every row, and resuming publishes them again
    assert again.already_complete == (removed_before_the_kill > 0) and out.read_bytes() == reference
    assert not PartialOutput.folder_for(out).exists()


def test_files_of_clsrun_naming_without_their_state_are_no_obstacle(tmp_path: Path, toy_bundle: Path) -> None:
    """What an earlier version's cleanup, killed half way, left: parts and a journal, the state gone."""
    src, out = _input(tmp_path / "in.csv", 200), tmp_path / "o.csv"
    folder = PartialOutput.folder_for(out)
    folder.mkdir()
    (folder / "part-000003.0123456789ab.arrow").write_bytes(b"old")
    (folder / "journal.jsonl").write_text("{}\n", encoding="utf-8")
    clf = Classifier.load(toy_bundle, Variant(threads=1))
    assert score_file(src, out, clf).manifest["rows_read"] == 200
    assert not folder.exists()
    folder.mkdir()
    (folder / "notes.txt").write_text("mine", encoding="utf-8")  # not clsrun's: still refused
    with pytest.raises(UsageError, match="holds files clsrun did not make"):
        score_file(src, out, clf, options=OutputOptions(overwrite=True))


def test_an_output_folder_moved_away_mid_run_is_one_storage_line_and_resumable_where_it_went(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, folder = _input(tmp_path / "in.csv", 1000), tmp_path / "out"
    folder.mkdir()
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=200))
    reference = score_file(src, tmp_path / "ref.csv", clf).output.read_bytes()

    def move_away() -> None:
        folder.rename(tmp_path / "out.old")
        folder.mkdir()  # a new, empty folder under the old name

    with monkeypatch.context() as m:
        _on_first_save(m, move_away)
        with pytest.raises(
            StorageError,
            match=r"o\.csv: its folder \(or its checkpoint folder\) was moved or removed while scoring",
        ):
            score_file(src, folder / "o.csv", clf)
    assert list(folder.iterdir()) == []
    moved = tmp_path / "out.old" / "o.csv"
    assert score_file(src, moved, clf, options=OutputOptions(resume=True)).output.read_bytes() == reference


def test_a_symlinked_output_folder_re_pointed_mid_run_keeps_the_run_in_the_folder_it_locked(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--out current/o.csv`` with ``current -> day1``, re-pointed to ``day2`` while the run scores (a daily
    rotation): the run's checkpoint and output stay in day1, under its lock; a second run of the same
    ``--out`` then works in day2 on its own, and neither clears or replaces the other's files (before, the
    first run's checkpoint and output followed the link into day2, where the second run's --overwrite
    cleared them)."""
    src = _input(tmp_path / "in.csv", 1000)
    (tmp_path / "day1").mkdir()
    (tmp_path / "day2").mkdir()
    current = tmp_path / "current"
    current.symlink_to("day1")
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=200))
    reference = score_file(src, tmp_path / "ref.csv", clf).output.read_bytes()
    second: list[ScoreResult | None] = []

    def rotate_and_run_again() -> None:
        if second:  # the second run's own first save
            return
        current.unlink()
        current.symlink_to("day2")
        second.append(None)
        second[0] = score_file(src, current / "o.csv", clf, options=OutputOptions(overwrite=True))

    with monkeypatch.context() as m:
        _on_first_save(m, rotate_and_run_again)
        first = score_file(src, current / "o.csv", clf)
    assert first.output == tmp_path / "day1" / "o.csv" and first.output.read_bytes() == reference
    assert second[0] is not None and second[0].output == tmp_path / "day2" / "o.csv"
    assert (tmp_path / "day2" / "o.csv").read_bytes() == reference
    assert sorted(p.name for p in (tmp_path / "day1").iterdir()) == ["o.csv", "o.csv.manifest.json"]


def test_an_output_folder_replaced_after_the_lock_was_taken_stops_the_run_before_the_checkpoint(
    tmp_path: Path, toy_bundle: Path
) -> None:
    """A folder rotated while the model loads (``mv out out.old; mkdir out``): the run's lock stays in
    out.old, so a retry would find none in the new folder and share this run's checkpoint. The run stops
    before touching any checkpoint, and the next run in the new folder is unaffected."""
    from clsrun.runtime.claim import OutputClaim

    src, folder = _input(tmp_path / "in.csv", 300), tmp_path / "out"
    clf = Classifier.load(toy_bundle, Variant(threads=1))
    with OutputClaim.take(src, folder / "o.csv", overwrite=True) as claim:
        folder.rename(tmp_path / "out.old")
        folder.mkdir()
        with pytest.raises(
            StorageError, match=r"o\.csv: its folder was moved or replaced while this run held it"
        ) as e:
            score_file(src, claim, clf, options=OutputOptions(overwrite=True))
        assert e.value.exit_code == 1
        assert list(folder.iterdir()) == []  # no checkpoint, no output in the folder it no longer holds
    assert score_file(src, folder / "o.csv", clf).manifest["rows_read"] == 300


@pytest.mark.parametrize("relative", [False, True])
def test_a_part_file_gone_from_a_checkpoint_folder_still_there_is_the_storage_line_not_unexpected(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch, relative: bool
) -> None:
    """The checkpoint folder removed under the run and made again by a later write: the missing file is
    inside it, which is the same story as the folder gone (before: "unexpected FileNotFoundError"), also
    when ``--out`` is relative and the error names the file by its absolute path."""
    monkeypatch.chdir(tmp_path)
    src, out = _input(tmp_path / "in.csv", 1000), Path("o.csv") if relative else tmp_path / "o.csv"
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=200))
    gone = tmp_path / ".o.csv.partial" / ".o.csv.x1.tmp"
    with monkeypatch.context() as m:
        _crash_after(m, 2, FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(gone)))
        with pytest.raises(
            StorageError, match=r"o\.csv: its folder \(or its checkpoint folder\) was moved"
        ) as e:
            score_file(src, out, clf)
    assert e.value.exit_code == 1 and not out.exists()


def test_windows_cut_by_characters_resume_where_they_were_cut(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long texts end windows before --window rows (batching.WINDOW_TEXT_CHARS); a resume continues from
    such a window's end and scores the same windows as an uninterrupted run."""
    from clsrun.runtime.batching import WINDOW_TEXT_CHARS

    rng = np.random.default_rng(3)
    lengths = rng.integers(5_000, 30_000, size=700)  # about 12 million characters: several windows
    src = tmp_path / "long.csv"
    pacsv.write_csv(pa.table({"text": ["好差"[i % 2] * int(n) for i, n in enumerate(lengths)]}), src)
    clf = Classifier.load(toy_bundle, Variant(threads=1), BatchOptions(window=8192))
    ref = score_file(src, tmp_path / "ref.csv", clf)
    out = tmp_path / "o.csv"
    with monkeypatch.context() as m:
        _crash_after(m, 1)
        with pytest.raises(_Crash):
            score_file(src, out, clf)
    saved = PartialOutput.checkpointed_rows(out)
    assert 0 < saved < 700 and int(np.sum(lengths[:saved])) >= WINDOW_TEXT_CHARS  # a window cut by characters
    result = score_file(src, out, clf, options=OutputOptions(resume=True))
    assert result.manifest["resumed_from_row"] == saved
    assert out.read_bytes() == ref.output.read_bytes()


def test_a_lock_file_removed_mid_run_is_said_as_such_not_as_a_moved_folder(
    tmp_path: Path, toy_bundle: Path
) -> None:
    """A clean-up job removing only ``.o.csv.lock``: the run still stops before publishing (another run could
    have taken the output), and says the lock file went; it said the folder was moved or replaced."""
    from clsrun.runtime.claim import OutputClaim

    src, folder = _input(tmp_path / "in.csv", 300), tmp_path / "out"
    clf = Classifier.load(toy_bundle, Variant(threads=1))
    with OutputClaim.take(src, folder / "o.csv") as claim:
        (folder / ".o.csv.lock").unlink()
        with pytest.raises(
            StorageError, match=r"o\.csv: its lock file \.o\.csv\.lock was removed while"
        ) as e:
            score_file(src, claim, clf)
        assert "folder was moved" not in str(e.value) and e.value.exit_code == 1


def test_the_manifest_of_a_running_job_is_no_other_runs_output(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run A scores to o.csv; run B writes its JSON Lines output to o.csv.manifest.json meanwhile. A replaced
    B's output with its manifest when it published, both exit 0. Now B is refused while A runs, A is refused
    while B runs, and a file that is not a manifest appearing there during A stops A before publishing, its
    rows kept for --resume."""
    import clsrun.runtime.score as score
    from clsrun.runtime.errors import OutputExistsError, OutputLockedError
    from clsrun.runtime.outlock import OutputLock

    src, out = _input(tmp_path / "in.csv", 300), tmp_path / "o.csv"
    clf = Classifier.load(toy_bundle, Variant(threads=1))
    running_a = OutputLock.acquire(out, follow=False)  # A scoring o.csv
    with (
        running_a,
        pytest.raises(OutputLockedError, match=r"the manifest of a run writing o\.csv .* goes there"),
    ):
        score_file(src, tmp_path / "o.csv.manifest.json", clf)
    running_b = OutputLock.acquire(tmp_path / "o.csv.manifest.json", follow=False)  # B: o.csv.manifest.json
    with running_b, pytest.raises(OutputLockedError, match=r"another run is writing its output there"):
        score_file(src, out, clf, options=OutputOptions(overwrite=True))
    theirs = b'{"id": "0", "label": "pos"}\n'
    real = score._run_unchanged

    def run_then_b_publishes(*args: Any) -> None:
        real(*args)
        (tmp_path / "o.csv.manifest.json").write_bytes(theirs)

    with monkeypatch.context() as m:
        m.setattr(score, "_run_unchanged", run_then_b_publishes)
        with pytest.raises(
            OutputExistsError, match=r"not a clsrun manifest.*it appeared while this run scored"
        ):
            score_file(src, out, clf)
    assert (tmp_path / "o.csv.manifest.json").read_bytes() == theirs and not out.exists()
    (tmp_path / "o.csv.manifest.json").rename(tmp_path / "theirs.jsonl")
    resumed = score_file(src, out, clf, options=OutputOptions(resume=True))
    assert resumed.manifest["rows_read"] == 300 and resumed.manifest["resumed_from_row"] == 300
