"""predict_file: the one library call behind `clsrun predict` (engine dispatch, progress, summary line)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from clsrun.runtime.batching import BatchOptions
from clsrun.runtime.errors import InputError, OutputExistsError, UsageError
from clsrun.runtime.input_files import ReadOptions
from clsrun.runtime.predict import predict_file
from clsrun.runtime.readers import RecordStream
from clsrun.runtime.score import OutputOptions, score_file
from clsrun.runtime.variant import Variant


class _Counter:
    """A progress reporter that remembers what it was told, and whether it was closed."""

    def __init__(self, stream: RecordStream) -> None:
        self.stream, self.resumed_rows, self.rows, self.closed = stream, 0, 0, False

    def resumed(self, rows: int) -> None:
        self.resumed_rows += rows

    def update(self, rows: int) -> None:
        self.rows += rows

    def __enter__(self) -> _Counter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.closed = True


def test_local_run_reports_progress_and_a_summary_line(tmp_path: Path, toy_bundle: Path) -> None:
    src = tmp_path / "in.csv"
    pacsv.write_csv(pa.table({"key": ["a", "b", "c"], "text": ["gg", "", "bb"]}), src)
    made: list[_Counter] = []

    def progress(stream: RecordStream) -> _Counter:
        made.append(_Counter(stream))
        return made[-1]

    result = predict_file(
        src,
        tmp_path / "o.jsonl",
        toy_bundle,
        Variant(threads=1),
        ReadOptions(id_col="key"),
        BatchOptions(window=2),
        OutputOptions(probs=True),
        progress=progress,
    )
    assert result.summary().startswith(
        f"scored 3 rows (2 ok, 1 error, 0 truncated) -> {tmp_path / 'o.jsonl'} in "
    )
    assert f"onnx int8 cpu, 1 thread, 1 stream; model {toy_bundle.resolve()}" in result.summary()
    (bar,) = made
    assert bar.rows == 3 and bar.resumed_rows == 0 and bar.closed and bar.stream.path == src


def test_local_engine_refuses_folders_and_missing_files(tmp_path: Path, toy_bundle: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        predict_file(tmp_path / "nope.csv", model=toy_bundle)
    with pytest.raises(UsageError, match="is a folder; the local engine scores one file"):
        predict_file(tmp_path, model=toy_bundle)


def _open_descriptors(path: Path) -> int:
    """This process's file descriptors open on ``path`` (Linux: /proc/self/fd)."""
    target = str(path.resolve())
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # the descriptor listing the folder itself, already closed
            count += fd.readlink().as_posix() == target
    return count


def test_the_input_is_closed_however_the_run_ends(tmp_path: Path, toy_bundle: Path) -> None:
    """One open per input, closed by its reader (issue 17): after a run, and after a refusal before scoring."""
    src = tmp_path / "in.csv"
    pacsv.write_csv(pa.table({"text": ["gg", "bb"] * 50}), src)
    out = tmp_path / "o.csv"
    predict_file(src, out, toy_bundle, Variant(threads=1))
    assert _open_descriptors(src) == 0
    with pytest.raises(OutputExistsError):  # refused once the input is open, before the model loads
        predict_file(src, out, toy_bundle, Variant(threads=1))
    assert _open_descriptors(src) == 0


def test_rows_whose_scores_are_not_numbers_are_error_rows_not_ok_nan(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundle whose weights diverged (or were damaged) gives NaN logits: such rows are errors, and the
    API's labels and ``clsrun eval`` do not crash on them."""
    from clsrun.runtime.classifier import NOT_FINITE, Classifier

    clf = Classifier.load(toy_bundle, Variant(threads=1))
    real = clf.runner.run

    def some_nan(inputs: dict[str, Any]) -> Any:
        logits = real(inputs).copy()
        logits[::2] = np.nan  # every other row of each batch
        return logits

    monkeypatch.setattr(clf.runner, "run", some_nan)
    got = clf.predict(["gg", "bb", "gggg", "b"])
    assert sum(e == NOT_FINITE for e in got.errors) == 2 and sum(label != "" for label in got.labels) == 2
    src = tmp_path / "in.csv"
    pacsv.write_csv(pa.table({"text": ["gg", "bb", "gggg", "b"]}), src)
    result = score_file(src, tmp_path / "o.csv", clf)
    assert result.manifest["error"] == 2 and result.manifest["ok"] == 2
    rows = pacsv.read_csv(tmp_path / "o.csv").to_pylist()
    assert [r["status"] for r in rows].count("error") == 2
    assert all(r["score"] == r["score"] for r in rows)  # no NaN written
