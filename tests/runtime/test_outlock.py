"""One writer per output: the lock beside --out."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from clsrun.runtime.errors import OutputLockedError, UsageError
from clsrun.runtime.outlock import OutputLock, lock_path


def test_a_second_lock_on_the_same_output_is_refused_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    with OutputLock.acquire(out):
        assert lock_path(out).is_file()
        with pytest.raises(
            OutputLockedError, match=rf"--out {out}: another run is writing it \(pid {os.getpid()} on "
        ):
            OutputLock.acquire(out)
    assert not lock_path(out).exists(), "a released lock leaves nothing behind"
    with OutputLock.acquire(out):  # free again
        pass


def test_other_outputs_in_the_same_folder_are_independent(tmp_path: Path) -> None:
    with OutputLock.acquire(tmp_path / "a.csv"), OutputLock.acquire(tmp_path / "b.csv"):
        assert lock_path(tmp_path / "a.csv") != lock_path(tmp_path / "b.csv")


def test_the_lock_of_a_killed_process_is_free(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from clsrun.runtime.outlock import OutputLock;"
            f"OutputLock.acquire(Path({str(out)!r})); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLockedError):
            OutputLock.acquire(out)
        holder.kill()  # kill -9: no clean-up ran, the stale file stays, the kernel dropped the lock
        holder.wait()
        assert lock_path(out).exists()
        with OutputLock.acquire(out):
            pass
    finally:
        holder.kill()


def test_a_lock_taken_on_a_file_its_holder_just_removed_does_not_count(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    first = OutputLock.acquire(out)
    stale_fd = os.open(lock_path(out), os.O_RDWR)  # opened just before the holder removes it
    first.release()
    try:
        assert not OutputLock._still_named(lock_path(out), stale_fd)
        second = OutputLock.acquire(out)  # makes a new file and locks that one
        assert OutputLock._still_named(lock_path(out), second._fd or -1)
        second.release()
    finally:
        os.close(stale_fd)


def test_a_symlink_in_place_of_the_lock_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    target = tmp_path / "elsewhere"
    target.write_text("keep me\n")
    lock_path(out).symlink_to(target)
    with pytest.raises(UsageError, match="symbolic link"):
        OutputLock.acquire(out)
    assert target.read_text() == "keep me\n"


def test_a_folder_at_the_lock_or_manifest_name_is_said_before_scoring(
    tmp_path: Path, toy_bundle: Path
) -> None:
    """Both were "unexpected IsADirectoryError" (exit 1), the manifest's after every row was scored."""
    from clsrun.runtime.classifier import Classifier
    from clsrun.runtime.score import score_file
    from clsrun.runtime.variant import Variant

    out = tmp_path / "scores.csv"
    lock_path(out).mkdir()
    with pytest.raises(UsageError, match=r"\.scores\.csv\.lock: is a folder; clsrun locks --out"):
        OutputLock.acquire(out)
    lock_path(out).rmdir()
    src = tmp_path / "in.csv"
    src.write_text("text\ngood\n", encoding="utf-8")
    (tmp_path / "scores.csv.manifest.json").mkdir()
    clf = Classifier.load(toy_bundle, Variant(threads=1))
    with pytest.raises(
        UsageError, match=r"scores\.csv\.manifest\.json: is a folder, where the output's manifest"
    ):
        score_file(src, out, clf)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "scores.csv.manifest.json"]


def test_the_folder_of_a_new_output_is_made(tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "scores.csv"
    with OutputLock.acquire(out):
        assert lock_path(out).is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == []


def test_an_output_whose_folder_cannot_be_made_is_a_usage_error_naming_what_is_in_the_way(
    tmp_path: Path,
) -> None:
    (tmp_path / "scores.csv").write_text("x", encoding="utf-8")  # a file where the folder would go
    with pytest.raises(UsageError, match=r"its folder cannot be made: .*scores\.csv is not a folder"):
        OutputLock.acquire(tmp_path / "scores.csv" / "out.csv")
    (tmp_path / "gone").symlink_to(tmp_path / "missing")  # a dangling link
    with pytest.raises(UsageError, match=r"its folder cannot be made: .*gone is not a folder"):
        OutputLock.acquire(tmp_path / "gone" / "out.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gone", "scores.csv"]  # nothing made


@pytest.mark.skipif(
    os.pathconf(tempfile.gettempdir(), "PC_NAME_MAX") != 255,
    reason="the figures are those of a 255-byte name limit",
)
def test_a_name_whose_lock_file_name_would_be_too_long_is_refused_before_any_folder_is_made(
    tmp_path: Path,
) -> None:
    out = tmp_path / "new" / ("m" * 252)  # a train --out: legal, but .NAME.lock is 258 bytes
    with pytest.raises(
        UsageError,
        match=r"--out .*m: the name is 252 bytes, and clsrun makes \.NAME\.lock from it .*at most 249 bytes",
    ):
        OutputLock.acquire(out)
    with pytest.raises(UsageError, match=r"bundle .*: .*; rename the bundle to a name of at most 249 bytes"):
        OutputLock.acquire(out, role="bundle")
    assert list(tmp_path.iterdir()) == []
    with OutputLock.acquire(tmp_path / "new" / ("m" * 249)) as lock:
        assert lock.path.is_file()


def test_a_symlink_or_a_dotdot_path_takes_the_same_lock_beside_the_real_folder(tmp_path: Path) -> None:
    from clsrun.runtime.outlock import lock_path

    real = tmp_path / "bundle"
    (real / "onnx").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert lock_path(link) == lock_path(real / "onnx" / "..") == tmp_path / ".bundle.lock"


def test_an_output_that_is_a_link_to_a_file_is_locked_as_its_own_name(tmp_path: Path) -> None:
    """A scoring run replaces a link at --out (it publishes under that name), but it locked the link's
    target: once the link was re-pointed (a rotation), a second run of the same --out locked the new target
    and cleared the first run's checkpoint, which sat under the link's name."""
    from clsrun.runtime.claim import OutputClaim

    src = tmp_path / "in.csv"
    src.write_text("text\ngood\n", encoding="utf-8")
    for day in ("day1.csv", "day2.csv"):
        (tmp_path / day).write_text("old\n", encoding="utf-8")
    cur = tmp_path / "cur.csv"
    cur.symlink_to(tmp_path / "day1.csv")
    with OutputClaim.take(src, cur, overwrite=True) as first:
        assert first.lock is not None and first.lock.path == tmp_path / ".cur.csv.lock"
        cur.unlink()
        cur.symlink_to(tmp_path / "day2.csv")
        with (
            pytest.raises(OutputLockedError, match="another run is writing it"),
            OutputClaim.take(src, cur, overwrite=True),
        ):
            pass
        with OutputClaim.take(src, tmp_path / "day1.csv", overwrite=True) as other:  # another name: its own
            assert other.lock is not None and other.lock.path == tmp_path / ".day1.csv.lock"


def test_a_full_disk_while_the_lock_is_described_names_the_lock_file_and_leaves_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written through a descriptor, the error had no file name: "a file: no space left on the device"."""
    from clsrun.runtime import outlock
    from clsrun.runtime.errors import storage_error

    def full(*args: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outlock.os, "pwrite", full)
    out = tmp_path / "o.csv"
    with pytest.raises(OSError) as caught:
        OutputLock.acquire(out)
    assert caught.value.filename == str(lock_path(out))
    assert str(storage_error(caught.value)).startswith(f"{lock_path(out)}: no space left on the device")
    assert not lock_path(out).exists()


def test_a_stale_lock_file_another_user_owns_is_locked_read_only_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of another user killed outright leaves its 0644 lock file in a shared folder: this user cannot
    open it for writing (before: "permission denied", every run refused). flock needs no write access,
    so the lock is taken on a read-only descriptor; two runs still exclude each other."""
    out = tmp_path / "scores.csv"
    stale = lock_path(out)
    stale.write_text(
        '{"pid": 1, "host": "h", "started": 0, "command": "clsrun predict old"}\n', encoding="utf-8"
    )
    real_open = os.open

    def as_another_user(path: object, flags: int, *args: object) -> int:
        if Path(str(path)) == stale and flags & os.O_ACCMODE != os.O_RDONLY:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", as_another_user)
    with OutputLock.acquire(out) as lock:
        assert lock.held()
        with pytest.raises(OutputLockedError, match="another run is writing it"):
            OutputLock.acquire(out)
        assert "clsrun predict old" in stale.read_text(encoding="utf-8")  # not written: not ours to write
    monkeypatch.setattr(os, "open", real_open)
    with OutputLock.acquire(out):  # free again afterwards
        pass


def test_a_bundle_that_fails_to_load_while_another_run_writes_it_is_said_to_be_busy(
    tmp_path: Path, toy_bundle: Path
) -> None:
    """predict or eval during ``export --force`` met variants half replaced and said the bundle was
    damaged (exit 3), advising the export that was already running: now who writes it, and to wait."""
    import shutil

    from clsrun.runtime.classifier import Classifier
    from clsrun.runtime.errors import BundleBusyError, BundleError

    bundle = tmp_path / "B"
    shutil.copytree(toy_bundle, bundle)
    onnx = sorted((bundle / "onnx").glob("*.onnx"))
    onnx[0].unlink()  # what an export between removing the old variants and installing the new leaves
    with OutputLock.acquire(bundle, role="bundle"):
        with pytest.raises(BundleBusyError, match=r"another run is writing this bundle \(pid \d+") as busy:
            Classifier.load(bundle)
        assert busy.value.exit_code == 2
    with pytest.raises(BundleError, match=r"listed in clsrun\.json but missing") as damaged:
        Classifier.load(bundle)  # nobody writes it: damaged, as before
    assert not isinstance(damaged.value, BundleBusyError) and damaged.value.exit_code == 3


def test_a_bundle_file_removed_after_loading_is_a_bundle_error_or_busy(
    tmp_path: Path, toy_bundle: Path
) -> None:
    """A file moved away between the listing and its hashing (train --force replacing the bundle) was
    "unexpected FileNotFoundError" (exit 1)."""
    import shutil

    from clsrun.runtime.bundle import Bundle
    from clsrun.runtime.errors import BundleBusyError, BundleError

    bundle = tmp_path / "B"
    shutil.copytree(toy_bundle, bundle)
    loaded = Bundle.load(bundle, lazily=True)
    victim = next(rel for rel in loaded.files if rel.endswith(".onnx"))
    (bundle / victim).unlink()
    with pytest.raises(BundleError, match=r"listed in clsrun\.json but missing"):
        loaded.file(victim)
    with OutputLock.acquire(bundle, role="bundle"), pytest.raises(BundleBusyError):
        from clsrun.runtime.classifier import Classifier

        Classifier.load(bundle)


def test_holder_never_blocks_on_a_fifo_at_the_lock_name(tmp_path: Path) -> None:
    from clsrun.runtime.outlock import holder

    out = tmp_path / "B"
    out.mkdir()
    os.mkfifo(lock_path(out))  # an open() without O_NONBLOCK waited here for a writer, SIGTERM ignored
    assert holder(out) is None
    lock_path(out).unlink()
    assert holder(out) is None and not lock_path(out).exists()  # asking makes no lock file
    with OutputLock.acquire(out, role="bundle"):
        assert holder(out) is not None
