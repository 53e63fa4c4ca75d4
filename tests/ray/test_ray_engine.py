"""`--engine ray` on a local Ray of two workers: the same rows, labels, ids and errors as the local engine.

One Ray instance serves the whole module (starting Ray costs seconds); each test is one small job.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import ray  # the ray extra: `make install` installs it, so CI runs these tests (never skipped)

from clsrun.runtime.batching import BatchOptions
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.errors import BundleError, DependencyError, InputError, UsageError
from clsrun.runtime.input_files import ReadOptions
from clsrun.runtime.outlock import OutputLock
from clsrun.runtime.ray_engine.engine import MANIFEST, RayOptions, _clsrun_cause, score_with_ray
from clsrun.runtime.ray_engine.inputs import resolve_inputs
from clsrun.runtime.ray_engine.stages import FileReader, window_of
from clsrun.runtime.score import OutputOptions, score_file
from clsrun.runtime.variant import Variant

pytestmark = pytest.mark.ray

# Good rows, per-row errors (null, empty, blank, not a string in JSONL) and a spreadsheet formula.
TEXTS: list[object] = ["ggg 好", "bb 差", None, "=HYPERLINK(1)", "", "x y", "   ", "好好好 b", "差差 g"]


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> object:
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def _inputs(folder: Path) -> dict[str, int]:
    """Three files, three formats; returns rows per file name."""
    folder.mkdir()
    texts = [t if isinstance(t, str) or t is None else str(t) for t in TEXTS]
    pacsv.write_csv(pa.table({"text": [t or "" for t in texts * 300]}), folder / "a.csv")
    pq.write_table(pa.table({"text": texts * 250}), folder / "b.parquet", row_group_size=500)
    lines = [json.dumps({"text": t}) for t in [*TEXTS, 7] * 100]
    with gzip.open(folder / "c.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return {"a.csv": 9 * 300, "b.parquet": 9 * 250, "c.jsonl.gz": 10 * 100}


def _parts(out: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted(out.glob("part-*.parquet")))


def _local(
    src: Path,
    bundle: Path,
    tmp: Path,
    batching: BatchOptions,
    read: ReadOptions = ReadOptions(),
    probs: bool = False,
) -> pa.Table:
    target = tmp / f"local-{src.name}.parquet"
    score_file(src, target, Classifier.load(bundle, batching=batching), read, OutputOptions(probs=probs))
    return pq.read_table(target)


def test_multi_file_input_matches_the_local_engine(tmp_path: Path, toy_bundle: Path) -> None:
    rows = _inputs(tmp_path / "in")
    out = tmp_path / "scores.parquet"
    options = RayOptions(workers=2, cpus_per_worker=0.5, quiet=True)
    result = score_with_ray(
        str(tmp_path / "in"), out, toy_bundle, batching=BatchOptions(256), options=options
    )

    got = _parts(out)
    assert got.num_rows == sum(rows.values()) == result.rows
    assert got.column_names == ["id", "label", "score", "status", "error"]
    by_id = {r["id"]: r for r in got.to_pylist()}
    assert len(by_id) == got.num_rows  # every id once
    for name, n in rows.items():
        local = _local(tmp_path / "in" / name, toy_bundle, tmp_path, BatchOptions(256))
        assert local.num_rows == n
        for row in local.to_pylist():
            mine = by_id[f"{name}:{row['id']}"]  # several files: ids are "<file>:<row>"
            assert (mine["label"], mine["score"], mine["status"], mine["error"]) == (
                row["label"],
                row["score"],
                row["status"],
                row["error"],
            )
    m = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    assert m["rows_read"] == m["ok"] + m["error"] == sum(f["rows"] for f in m["files"]) == got.num_rows
    assert [f["rows"] for f in m["files"]] == list(rows.values())
    assert sum(p["rows"] for p in m["parts"]) == got.num_rows and m["ray"]["workers"] == 2
    errors = [r["error"] for r in got.to_pylist() if r["error"]]
    assert sum(m["error_reasons"].values()) == len(errors) == m["error"]  # counted by reason, as locally
    assert m["error_reasons"]["text is a JSON int, not a string"] == 100
    local_manifests = [tmp_path / f"local-{name}.parquet.manifest.json" for name in rows]
    cut = sum(json.loads(f.read_text(encoding="utf-8"))["truncated"] for f in local_manifests)
    assert m["truncated"] == cut  # texts cut to the model's length, counted as the local engine counts
    ran = {
        "backend": "onnx",
        "precision": "int8",
        "device": "cpu",
        "threads": 1,
        "file": "onnx/model.int8.onnx",
    }
    assert m["worker_variants"] == [ran] and m["threads"] == 1  # what the actors ran, as they reported it
    assert m["error"] == sum(1 for r in got.to_pylist() if r["status"] == "error") > 0
    assert not list(tmp_path.glob("scores.parquet.tmp-*"))  # the staging folder was renamed


def test_preserve_order_gives_the_local_output_row_for_row(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "one.csv"
    pacsv.write_csv(
        pa.table({"key": [f"k{i}" for i in range(3000)], "text": ["gg b", "差 x", ""] * 1000}), src
    )
    read, batching = ReadOptions(id_col="key"), BatchOptions(window=200)
    # Ray bundles blocks under 1 MiB into one task; lift that so these small blocks make several parts.
    monkeypatch.setattr(ray.data.DataContext.get_current(), "target_min_block_size", 1)
    out = tmp_path / "o.parquet"
    options = RayOptions(workers=2, cpus_per_worker=0.5, preserve_order=True, block_bytes=20_000, quiet=True)
    score_with_ray([str(src)], out, toy_bundle, Variant(), read, batching, OutputOptions(probs=True), options)
    assert len(list(out.glob("part-*.parquet"))) > 3  # small blocks: several parts to put in order
    assert _parts(out).equals(_local(src, toy_bundle, tmp_path, batching, read, probs=True))


def test_csv_parts_and_the_cli(tmp_path: Path, toy_bundle: Path) -> None:
    from typer.testing import CliRunner

    from clsrun.runtime.cli import app

    _inputs(tmp_path / "in")
    out = tmp_path / "scores.csv"
    args = ["predict", str(tmp_path / "in" / "*.csv"), "--model", str(toy_bundle), "--engine", "ray"]
    res = CliRunner().invoke(app, [*args, "--out", str(out), "--workers", "2", "--cpus-per-worker", "0.5"])
    assert res.exit_code == 0, res.output
    assert "scored 2,700 rows from 1 file(s) (1,800 ok, 900 error)" in res.output
    table = pacsv.read_csv(
        out / "part-00000.csv", convert_options=pacsv.ConvertOptions(strings_can_be_null=False)
    )
    assert table.num_rows == 2700 and table.column("id").to_pylist()[:3] == [0, 1, 2]  # one file: row numbers
    # A second run replaces its own earlier output only with --overwrite (and only one run writes it at a
    # time: the lock beside it); a folder that is not a clsrun output is refused.
    res = CliRunner().invoke(app, [*args, "--out", str(out), "--cpus-per-worker", "0.5"])
    assert res.exit_code == 2 and "already exists (an earlier run's output); add --overwrite" in res.output
    with OutputLock.acquire(out):
        res = CliRunner().invoke(app, [*args, "--out", str(out), "--cpus-per-worker", "0.5", "--overwrite"])
        assert res.exit_code == 2 and f"--out {out}: another run is writing it" in res.output
    rerun = [*args, "--out", str(out), "--cpus-per-worker", "0.5", "--overwrite"]
    assert CliRunner().invoke(app, rerun).exit_code == 0
    assert not (tmp_path / ".scores.csv.lock").exists()
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "in"), "--cpus-per-worker", "0.5"])
    assert res.exit_code == 2 and "is not a clsrun output" in res.output


def test_a_bundle_that_cannot_load_fails_before_any_output(tmp_path: Path, toy_bundle: Path) -> None:
    _inputs(tmp_path / "in")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in toy_bundle.rglob("*"):
        if f.is_file():
            (broken / f.relative_to(toy_bundle)).parent.mkdir(parents=True, exist_ok=True)
            (broken / f.relative_to(toy_bundle)).write_bytes(f.read_bytes())
    (broken / "onnx" / "model.int8.onnx").write_bytes(b"not a model")
    out = tmp_path / "o.parquet"
    with pytest.raises(BundleError, match="sha256 mismatch"):
        score_with_ray(str(tmp_path / "in"), out, broken, options=RayOptions(cpus_per_worker=0.5, quiet=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "in"]


def test_a_bad_file_among_many_fails_the_job_before_ray_starts_and_leaves_nothing(
    tmp_path: Path, toy_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad file that sorts last ended the job only after Ray had started and scored the others."""
    from clsrun.runtime.ray_engine import engine

    def no_ray(*args: object) -> bool:
        raise AssertionError("Ray was started for a job whose input is refused")

    monkeypatch.setattr(engine, "_connect", no_ray)
    _inputs(tmp_path / "in")
    (tmp_path / "in" / "d.csv").write_text("body\nhello\n", encoding="utf-8")  # no text column, sorts last
    with pytest.raises(InputError, match=r"d\.csv: no column 'text'") as refused:
        score_with_ray(
            str(tmp_path / "in"),
            tmp_path / "o.csv",
            toy_bundle,
            options=RayOptions(cpus_per_worker=0.5, quiet=True),
        )
    assert "\n" not in str(refused.value) and "retry" not in str(refused.value)  # the task's line, not Ray's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_a_task_error_is_the_task_own_line_and_a_full_disk_names_the_output() -> None:
    class RayTaskLike(InputError):  # Ray's wrapper: also an instance of what it wraps, with its report
        def __init__(self, cause: BaseException) -> None:
            super().__init__("ray::ReadTask() (pid=1)\n" + str(cause))
            self.cause = cause

    inner = InputError("a.csv: no column 'text'\nFailed to apply UDF transform after 1/1 attempts")
    outer = RuntimeError("the dataset failed")
    outer.__cause__ = RayTaskLike(inner)
    found = _clsrun_cause(outer, "o.csv.tmp")
    assert found is not None and str(found) == "a.csv: no column 'text'"
    full = OSError(errno.ENOSPC, "No space left on device", "Failed to apply UDF transform\nTo change retry")
    wrapped = RuntimeError("task failed")
    wrapped.__cause__ = full
    typed = _clsrun_cause(wrapped, "o.csv.tmp-1")
    assert (
        typed is not None
        and str(typed) == "o.csv.tmp-1: no space left on the device; free some and run again"
    )
    assert _clsrun_cause(RuntimeError("a bug"), "o.csv.tmp") is None


def test_a_model_actors_error_known_only_by_its_report_is_rebuilt() -> None:
    """Ray Data wraps an actor's error in UserCodeException(...) from it, and the `from` is lost on the way
    to the driver: only the worker's traceback text says what failed (a page of it, exit 1, before)."""
    from clsrun.runtime.errors import BundleError, UsageError

    report = (
        "\x1b[36mray::MapWorker(MapBatches(ScoreActor)).submit()\x1b[39m (pid=1, ip=192.0.2.2)\n"
        '  File "stages.py", line 221, in __call__\n    raise self._failed\n'
        "clsrun.runtime.errors.UsageError: --device cuda: this machine has no NVIDIA GPU\n\n"
        "The above exception was the direct cause of the following exception:\n"
        "ray.exceptions.UserCodeException: UDF failed to process a data block.\n"
        "To change retry attempts, backoff ..."
    )
    found = _clsrun_cause(RuntimeError(report), "o.csv.tmp")
    assert isinstance(found, UsageError) and str(found) == "--device cuda: this machine has no NVIDIA GPU"
    damaged = _clsrun_cause(
        RuntimeError("x\nclsrun.runtime.errors.BundleError: B/model.onnx: sha256 mismatch"), "o"
    )
    assert isinstance(damaged, BundleError) and damaged.exit_code == 3
    assert _clsrun_cause(RuntimeError("clsrun.runtime.errors.NoSuchError: x\nos.PathLike: y"), "o") is None


def test_a_run_removes_staging_folders_that_killed_runs_of_its_output_left(
    tmp_path: Path, toy_bundle: Path
) -> None:
    _inputs(tmp_path / "in")
    stale, other = tmp_path / "o.parquet.tmp-0123456789ab", tmp_path / "o.parquet.tmp-mine"
    for folder in (stale, other):
        folder.mkdir()
        (folder / "part-00000.parquet").write_bytes(b"half")
    score_with_ray(
        str(tmp_path / "in"),
        tmp_path / "o.parquet",
        toy_bundle,
        options=RayOptions(cpus_per_worker=0.5, quiet=True),
    )
    assert not stale.exists() and other.exists()  # only the shape of clsrun's own staging names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "o.parquet", "o.parquet.tmp-mine"]


def test_a_sigterm_during_ray_init_is_a_stop_of_clsrun(monkeypatch: pytest.MonkeyPatch) -> None:
    """ray.init's own SIGTERM handler is sys.exit(15): caught, Ray shut down, and a Stop (exit 143) raised."""
    import signal

    from clsrun.runtime import stopping
    from clsrun.runtime.ray_engine import engine

    calls: list[str] = []

    class FakeRay:
        def is_initialized(self) -> bool:
            return False

        def init(self, **kwargs: object) -> None:
            raise SystemExit(signal.SIGTERM)

        def shutdown(self) -> None:
            calls.append("shutdown")

    monkeypatch.delenv("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", raising=False)
    with pytest.raises(stopping.Stop) as stopped:
        engine._connect(FakeRay(), RayOptions(quiet=True))
    assert stopped.value.signum == signal.SIGTERM and calls == ["shutdown"]
    assert os.environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"] == "1"  # Ray's native handler would abort instead


def test_missing_ray_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    with pytest.raises(DependencyError, match=r"pip install '\.\[ray\]'"):
        score_with_ray(str(tmp_path), tmp_path / "o.csv")


def test_local_only_options_are_refused_on_ray(tmp_path: Path) -> None:
    from clsrun.runtime.errors import UsageError

    with pytest.raises(UsageError, match="--streams is for the local engine"):
        score_with_ray(str(tmp_path), tmp_path / "o.csv", variant=Variant(streams=2))
    with pytest.raises(UsageError, match="--resume: not supported with --engine ray"):
        score_with_ray(str(tmp_path), tmp_path / "o.csv", output=OutputOptions(resume=True))


def test_the_local_engine_never_imports_ray(tmp_path: Path, toy_bundle: Path) -> None:
    src = tmp_path / "in.csv"
    pacsv.write_csv(pa.table({"text": ["gg", "bb"]}), src)
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom clsrun.runtime.cli import app\n"
        f"r = CliRunner().invoke(app, ['predict', {str(src)!r}, '--model', {str(toy_bundle)!r}, '-q'])\n"
        "assert r.exit_code == 0, r.output\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_inputs_resolve_from_folders_globs_lists_and_uris(tmp_path: Path) -> None:
    _inputs(tmp_path / "in")
    (tmp_path / "in" / "sub").mkdir()
    (tmp_path / "in" / "sub" / "d.tsv").write_text("text\nx\n", encoding="utf-8")
    (tmp_path / "in" / "sub" / "e.csv").write_text("text\nx\n", encoding="utf-8")
    (tmp_path / "in" / "_manifest.json").write_text("{}", encoding="utf-8")  # skipped: not an input
    (tmp_path / "in" / ".hidden.csv").write_text("text\nx\n", encoding="utf-8")  # skipped: hidden
    (tmp_path / "in" / "notes.txt").write_text("x", encoding="utf-8")  # skipped: unknown type
    folder = resolve_inputs(tmp_path / "in")
    assert folder.names == ["a.csv", "b.parquet", "c.jsonl.gz", "sub/d.tsv", "sub/e.csv"]
    assert resolve_inputs(f"file://{tmp_path}/in/*.csv").names == ["a.csv"]  # "*" stays in its folder
    assert resolve_inputs(f"{tmp_path}/in/**/*.csv").names == ["a.csv", "sub/e.csv"]  # "**" does not
    assert resolve_inputs(str(tmp_path / "in" / "**" / "*.tsv")).uris == [
        str(tmp_path / "in" / "sub" / "d.tsv")
    ]
    listed = resolve_inputs([str(tmp_path / "in" / "b.parquet"), str(tmp_path / "in" / "a.csv")])
    assert listed.names == ["a.csv", "b.parquet"]  # sorted: ids and parts do not depend on the order given
    with pytest.raises(InputError, match=r"no \.csv, \.tsv, \.jsonl or \.parquet file matches"):
        resolve_inputs(str(tmp_path / "in" / "*.xlsx"))
    with pytest.raises(InputError, match="not found"):
        resolve_inputs(str(tmp_path / "nothing"))


def test_inputs_count_each_file_once_and_never_the_runs_own_output(tmp_path: Path) -> None:
    """A link to a folder above (`loop -> .`) listed one file 41 times (11,849 rows from 289, exit 0); an
    --out inside the input folder made the next run of the same command read its output's parts."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("text\nx\n", encoding="utf-8")
    (folder / "loop").symlink_to(".")
    (folder / "same.csv").symlink_to("a.csv")
    assert resolve_inputs(folder).names == ["a.csv"]
    out = folder / "scores.csv"
    for name in ("scores.csv", "scores.csv.tmp-0123456789ab", "scores.csv.old-0123abcd"):
        (folder / name).mkdir()
        (folder / name / "part-00000.csv").write_text("id,label\n0,pos\n", encoding="utf-8")
    (folder / "scores.csv.tmp-0123456789ab.csv").write_text(
        "text\ny\n", encoding="utf-8"
    )  # only a name like it
    files = resolve_inputs(folder, output=str(out))
    assert files.names == ["a.csv", "scores.csv.tmp-0123456789ab.csv"]
    with pytest.raises(InputError, match="every file it lists is in --out"):
        resolve_inputs(out, output=str(out))


@pytest.mark.skipif(sys.platform != "linux", reason="Linux file names may hold any bytes")
def test_input_names_that_are_not_utf8_are_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ok.csv").write_text("text\nx\n", encoding="utf-8")
    odd = Path(os.fsdecode(bytes(folder) + b"/bad\xff.csv"))
    odd.write_text("text\nx\n", encoding="utf-8")
    with pytest.raises(InputError, match="a file name it lists is not valid UTF-8; rename it"):
        resolve_inputs(folder)
    with pytest.raises(InputError, match=r"bad\\xff\.csv: the name is not valid UTF-8; rename it"):
        resolve_inputs(str(odd))


def test_a_remote_file_is_read_by_the_local_reader_through_a_copy(tmp_path: Path) -> None:
    import pyarrow.fs as pafs

    _inputs(tmp_path / "in")
    remote = pafs.SubTreeFileSystem(str(tmp_path / "in"), pafs.LocalFileSystem())  # not a LocalFileSystem
    reader = FileReader(remote, "c.jsonl.gz", "mem://c.jsonl.gz", 2, ReadOptions(), window=300)
    windows = [window_of(t.to_pylist()[0]) for t in reader()]
    assert [w.start for w in windows] == [0, 300, 600, 900] and sum(len(w) for w in windows) == 1000
    assert windows[0].errors[2] == "null text" and windows[0].errors[9] == "text is a JSON int, not a string"
    (tmp_path / "in" / "bad.csv").write_text("body\nx\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"^mem://bad.csv: no column 'text'"):
        list(FileReader(remote, "bad.csv", "mem://bad.csv", 0, ReadOptions(), 8192)())


def test_only_reported_parts_are_published(tmp_path: Path) -> None:
    import pyarrow.fs as pafs

    from clsrun.runtime.errors import UsageError
    from clsrun.runtime.ray_engine.engine import _tidy_staging

    staging = tmp_path / "o.csv.tmp-1"
    staging.mkdir()
    (staging / "part-00000.csv").write_text("id\n0\n", encoding="utf-8")
    (staging / ".part-00001.csv.1a2b.tmp").write_text("id\n", encoding="utf-8")  # a killed attempt's file
    fs = pafs.LocalFileSystem()
    _tidy_staging(fs, str(staging), {"parts": [{"file": "part-00000.csv", "rows": 1}]})
    assert sorted(p.name for p in staging.iterdir()) == ["part-00000.csv"]
    with pytest.raises(UsageError, match="storage every node shares"):
        _tidy_staging(fs, str(staging), {"parts": [{"file": "part-00000.csv"}, {"file": "part-00001.csv"}]})


def test_a_node_without_the_bundle_folder_unpacks_the_shipped_copy(tmp_path: Path, toy_bundle: Path) -> None:
    from clsrun.runtime.bundle import Bundle
    from clsrun.runtime.ray_engine.stages import BundleRef, _bundle_here, pack_bundle

    bundle = Bundle.load(toy_bundle)
    scratch: list = []
    here = BundleRef(str(toy_bundle), bundle.digest, None)
    assert _bundle_here(here, scratch) == toy_bundle  # same folder, same digest: used in place
    elsewhere = BundleRef(str(tmp_path / "not-on-this-node"), bundle.digest, ray.put(pack_bundle(bundle)))
    unpacked = _bundle_here(elsewhere, scratch)
    assert Bundle.load(unpacked).digest == bundle.digest  # every file arrived and verifies
    with pytest.raises(BundleError, match="not found on this Ray node"):
        _bundle_here(BundleRef(str(tmp_path / "nowhere"), bundle.digest, None), scratch)


def test_an_ngram_bundle_scores_on_ray_as_locally(tmp_path: Path, exported_ngram_bundle: Path) -> None:
    src = tmp_path / "reviews.csv"
    texts = ["房间很好，服务棒", "太差了，讨厌", "", "the room was good", "差差 好"] * 200
    pacsv.write_csv(pa.table({"text": texts}), src)
    out = tmp_path / "o.parquet"
    options = RayOptions(workers=2, cpus_per_worker=0.5, preserve_order=True, quiet=True)
    batching = BatchOptions(window=256)
    score_with_ray(
        [str(src)], out, exported_ngram_bundle, Variant(), ReadOptions(), batching, OutputOptions(), options
    )
    got = _parts(out)
    assert got.num_rows == len(texts)
    assert got.equals(_local(src, exported_ngram_bundle, tmp_path, batching))
    assert json.loads((out / MANIFEST).read_text(encoding="utf-8"))["ok"] == len(texts) - 200


def test_an_input_written_to_during_the_job_publishes_nothing(tmp_path: Path) -> None:
    """The local engine refuses to publish rows of an input changed while it was read; Ray did not check."""
    from clsrun.runtime.ray_engine.engine import _require_unchanged
    from clsrun.runtime.readers import open_records

    path = tmp_path / "in.csv"
    path.write_text("text\ngood\n", encoding="utf-8")
    with open_records(path) as stream:
        fingerprints = {str(path): stream.fingerprint}
    _require_unchanged(fingerprints)  # unchanged: publishes
    with path.open("a", encoding="utf-8") as f:
        f.write("one more row\n")
    with pytest.raises(
        InputError, match=r"in\.csv: was written to while it was being scored.*nothing was published"
    ):
        _require_unchanged(fingerprints)


def test_read_tasks_of_local_files_do_not_repeat_the_drivers_file_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The driver opens every local file and says its warnings once; each read task said them again."""
    import pyarrow.fs as pafs

    from clsrun.runtime.input_files import ReadOptions
    from clsrun.runtime.ray_engine.stages import _said_by_driver
    from clsrun.runtime.readers import open_records

    path = tmp_path / "ids.csv"
    path.write_text("text\n" + "".join(f"{i}\n" for i in range(20)), encoding="utf-8")
    with _said_by_driver(pafs.LocalFileSystem()), open_records(path, ReadOptions()):
        pass
    assert "are numbers" not in caplog.text
    tabs = tmp_path / "tabs.csv"  # the delimited-file sniffer's warning, logged by its own module
    tabs.write_text("id\ttext\n" + "".join(f"{i}\tgood row\n" for i in range(20)), encoding="utf-8")
    with _said_by_driver(pafs.LocalFileSystem()), open_records(tabs, ReadOptions()):
        pass
    assert "separated by tabs" not in caplog.text
    with _said_by_driver(pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())):  # not a local disk
        open_records(path, ReadOptions()).close()
        open_records(tabs, ReadOptions()).close()
    assert "are numbers" in caplog.text and "separated by tabs" in caplog.text


def test_inputs_without_rows_give_an_output_with_the_columns(tmp_path: Path, toy_bundle: Path) -> None:
    """A header-only input gave a folder holding only _manifest.json: read back, an output of no columns
    (the local engine writes the header)."""
    import pyarrow.dataset as ds

    (tmp_path / "in.csv").write_text("id,text\n", encoding="utf-8")
    out = tmp_path / "o.parquet"
    options = RayOptions(cpus_per_worker=0.5, quiet=True)
    result = score_with_ray(str(tmp_path / "in.csv"), out, toy_bundle, options=options)
    assert result.manifest["rows_read"] == 0
    table = ds.dataset(out, format="parquet", exclude_invalid_files=True).to_table()
    assert table.num_rows == 0 and table.column_names == ["id", "label", "score", "status", "error"]


def test_a_local_ray_asked_for_more_cpus_than_the_machine_has_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """--cpus-per-worker 100 on 2 cores ran silently (the local Ray is started as large as the job asks)."""
    from types import SimpleNamespace

    from clsrun.runtime.ray_engine.engine import _connect

    started: dict[str, object] = {}
    fake = SimpleNamespace(is_initialized=lambda: False, init=lambda **kw: started.update(kw))
    cores = os.cpu_count() or 1
    assert _connect(fake, RayOptions(workers=1, cpus_per_worker=1, quiet=True)) is True
    assert "asks for more CPUs" not in caplog.text
    _connect(fake, RayOptions(workers=2, cpus_per_worker=100, quiet=True))
    assert (
        f"--workers 2 x --cpus-per-worker 100 asks for more CPUs than this machine's {cores}" in caplog.text
    )
    assert started["num_cpus"] >= 200  # type: ignore[operator]


def test_the_driver_says_a_model_cannot_read_the_first_local_input_as_the_local_engine_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from clsrun.runtime.input_files import ReadOptions
    from clsrun.runtime.ray_engine.engine import _check_local_inputs, _load_on_driver
    from clsrun.runtime.ray_engine.inputs import resolve_inputs

    (tmp_path / "a.csv").write_text(
        "text\n" + "The film was great and a lovely story\n" * 20, encoding="utf-8"
    )
    (tmp_path / "b.csv").write_text("text\n" + "这个电影很好看\n" * 20, encoding="utf-8")
    fingerprints, first = _check_local_inputs(resolve_inputs(str(tmp_path)), ReadOptions())
    assert len(fingerprints) == 2 and first[0].endswith("a.csv") and len(first[1]) == 20
    with caplog.at_level("WARNING", logger="clsrun"):
        _load_on_driver(None, Variant(), first)
    assert "a.csv: the default model cannot read most of the first rows" in caplog.text


class _FakeRay:
    """Records what ray.init was given; ``fails`` is raised by it."""

    def __init__(self, fails: BaseException | None = None) -> None:
        self.given: dict[str, object] = {}
        self.fails = fails

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs: object) -> None:
        self.given = kwargs
        if self.fails is not None:
            raise self.fails

    def shutdown(self) -> None:
        pass


def test_ray_address_in_the_environment_joins_that_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ray job submit` sets RAY_ADDRESS for its job: clsrun passed num_cpus as for a local start, which
    ray.init refuses for a cluster it joins ("--address None: cannot join ...")."""
    from clsrun.runtime.ray_engine.engine import _connect

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    ray = _FakeRay()
    assert _connect(ray, RayOptions()) is True
    assert ray.given["address"] == "10.0.0.1:6379" and "num_cpus" not in ray.given
    assert RayOptions().cluster() == "10.0.0.1:6379" and RayOptions(address="auto").cluster() == "auto"
    with pytest.raises(
        UsageError, match=r"^RAY_ADDRESS=10\.0\.0\.1:6379: cannot join the Ray cluster: no GCS$"
    ):
        _connect(_FakeRay(ConnectionError("no GCS")), RayOptions())
    monkeypatch.delenv("RAY_ADDRESS")
    local = _FakeRay(OSError("validate_socket_filename failed: path too long"))
    with pytest.raises(UsageError, match=r"^cannot start a local Ray: validate_socket_filename failed"):
        _connect(local, RayOptions())
    # A Ray of its own, not the cluster a `ray start` on this host left in /tmp/ray (joined, it refused
    # num_cpus: "cannot start a local Ray: When connecting to an existing cluster, num_cpus ...").
    assert "num_cpus" in local.given and local.given["address"] == "local"


@pytest.mark.parametrize("cpus", [float("nan"), float("inf"), 0.0])
def test_cpus_per_worker_must_be_a_positive_number(cpus: float) -> None:
    with pytest.raises(UsageError, match=r"--cpus-per-worker .*: must be a positive number"):
        RayOptions(cpus_per_worker=cpus)


def test_an_earlier_output_moved_aside_by_a_killed_run_is_removed_or_put_back(tmp_path: Path) -> None:
    """_publish moves OUT to OUT.old-*, moves the new output in, then deletes the old: a kill -9 in between
    left OUT.old-* for good (or no OUT at all, the last complete output only under the .old name)."""
    import pyarrow.fs as pafs

    from clsrun.runtime.errors import OutputExistsError
    from clsrun.runtime.ray_engine.engine import _remove_stale_staging

    fs, out = pafs.LocalFileSystem(), tmp_path / "o.parquet"
    half_deleted = tmp_path / "o.parquet.old-0123abcd"
    for folder in (out, half_deleted):
        folder.mkdir()
        (folder / "_manifest.json").write_text("{}", encoding="utf-8")
    _remove_stale_staging(fs, str(out), overwrite=False)
    assert not half_deleted.exists() and (out / "_manifest.json").exists()  # killed while deleting: goes
    out.rename(half_deleted)  # killed between the two renames: no OUT, the old output aside
    with pytest.raises(OutputExistsError, match=r"put back o\.parquet\.old-0123abcd as .*add --overwrite"):
        _remove_stale_staging(fs, str(out), overwrite=False)
    assert (out / "_manifest.json").exists() and not half_deleted.exists()
    out.rename(half_deleted)
    _remove_stale_staging(fs, str(out), overwrite=True)  # this run replaces it: put back, then replaced
    assert (out / "_manifest.json").exists() and not half_deleted.exists()
    (tmp_path / "o.parquet.old-mine").mkdir()  # not clsrun's name shape: left alone
    _remove_stale_staging(fs, str(out), overwrite=True)
    assert (tmp_path / "o.parquet.old-mine").exists()


def test_a_signal_once_the_output_is_published_leaves_the_run_complete(tmp_path: Path) -> None:
    """A SIGTERM while Ray shut down after publishing said "interrupted" (143) over a complete output, which
    the same command then refused as already there. The local engine completes (exit 0); so does Ray's."""
    data = tmp_path / "in.csv"
    data.write_text("text\n" + "".join(f"review {i} was good\n" for i in range(200)), encoding="utf-8")
    out = tmp_path / "o.csv"
    script = f"""
import os, signal, sys
from clsrun.runtime import stopping
stopping.install()
from clsrun.runtime.ray_engine import engine
real = engine._publish
def publish(*args):
    real(*args)
    os.kill(os.getpid(), signal.SIGTERM)  # noted while the clean-up runs: the run completes
engine._publish = publish
from clsrun.runtime.cli import app
sys.argv = ["clsrun", "predict", {str(data)!r}, "--engine", "ray", "--out", {str(out)!r}, "--quiet",
            "--workers", "1", "--cpus-per-worker", "0.5"]
try:
    app()
except SystemExit as e:
    print("exit", e.code, flush=True)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "exit 0", done.stderr[-2000:]
    assert json.loads((out / MANIFEST).read_text(encoding="utf-8"))["rows_read"] == 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "o.csv"]  # no staging, no lock left


def test_the_manifest_counts_texts_cut_to_the_models_length_as_locally(
    tmp_path: Path, toy_bundle: Path
) -> None:
    """The Ray manifest had no "truncated" count: a run of long texts looked like one that read them whole."""
    src = tmp_path / "in.csv"
    src.write_text("text\n" + "".join(f"{'long ' * 10}{i}\n" if i % 3 else f"short {i}\n" for i in range(60)))
    m = score_with_ray(
        str(src), tmp_path / "o.csv", toy_bundle, options=RayOptions(cpus_per_worker=0.5, quiet=True)
    )
    local = score_file(src, tmp_path / "local.csv", Classifier.load(toy_bundle)).manifest
    assert m.manifest["truncated"] == local["truncated"] == 40


def test_out_dash_is_refused_as_the_local_engine_refuses_it() -> None:
    """The local engine refused `--out -`; on Ray it made a folder named `-` of Parquet parts, exit 0."""
    from clsrun.runtime.ray_engine.engine import _output_target

    with pytest.raises(
        UsageError, match=r"^--out -: clsrun does not write to standard output.*--out scores\.parquet"
    ):
        _output_target("-", overwrite=True)
    with pytest.raises(UsageError, match=r"^--out is empty"):
        _output_target(" ", overwrite=True)
