"""Atomic writes: the target holds the old content or the complete new one, never a part, never a stray."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest

from clsrun.runtime.files import (
    append_line,
    atomic_fs_write,
    atomic_fs_write_text,
    atomic_write,
    atomic_write_text,
    is_temporary,
    move_into_place,
    temporary_for,
    temporary_name,
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old", encoding="utf-8")

    def half(tmp: Path) -> None:
        tmp.write_text("new but cut", encoding="utf-8")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(target, half)
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_written_through_a_temporary_name_with_an_ordinary_mode(tmp_path: Path) -> None:
    seen: list[str] = []

    def write(tmp: Path) -> None:
        seen.append(tmp.name)
        tmp.write_bytes(b"done")

    atomic_write(tmp_path / "state.json", write)
    assert is_temporary(seen[0]) and seen[0].startswith(".state.json.")
    assert not is_temporary("state.json") and not is_temporary(".hidden")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_replaced_file_stays_readable_by_whoever_could_read_it(tmp_path: Path) -> None:
    """A re-export under umask 077 made a shared bundle's clsrun.json 0600: another user's predict failed.
    Only read bits carry over: never a setuid bit, nor an old mode its owner could not read."""
    target, odd = tmp_path / "clsrun.json", tmp_path / "odd.csv"
    for path, mode in ((target, 0o644), (odd, 0o4311)):
        path.write_text("{}", encoding="utf-8")
        path.chmod(mode)
    old = os.umask(0o077)
    try:
        atomic_write_text(target, '{"new": 1}')
        atomic_write_text(odd, "x")
        atomic_write_text(tmp_path / "fresh.json", "{}")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o7777 == 0o644 and target.read_text(encoding="utf-8") == '{"new": 1}'
    assert odd.stat().st_mode & 0o7777 == 0o600  # the umask's, plus no read bit it did not have
    assert (tmp_path / "fresh.json").stat().st_mode & 0o777 == 0o600  # a new file: the umask's


def test_text_replaces_and_the_temporary_can_live_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "scratch").mkdir()
    target = tmp_path / "m.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two", tmp_dir=tmp_path / "scratch")
    assert target.read_text(encoding="utf-8") == "two"
    assert list((tmp_path / "scratch").iterdir()) == []


def test_journal_lines_are_appended(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    append_line(journal, '{"a": 1}')
    append_line(journal, '{"a": 2}')
    assert journal.read_text(encoding="utf-8").splitlines() == ['{"a": 1}', '{"a": 2}']


@pytest.mark.parametrize("remote", [False, True])
def test_filesystem_writes_publish_complete_files_only(tmp_path: Path, remote: bool) -> None:
    # A SubTreeFileSystem is not a LocalFileSystem: it takes the upload-then-move path of S3 or HDFS.
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()) if remote else pafs.LocalFileSystem()
    root = "" if remote else f"{tmp_path}/"
    atomic_fs_write_text(fs, f"{root}manifest.json", "{}\n")
    assert (tmp_path / "manifest.json").read_text(encoding="utf-8") == "{}\n"

    def broken(local: Path) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_fs_write(fs, f"{root}part-00000.csv", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_move_into_place_replaces_the_target_whole(tmp_path: Path) -> None:
    staged = tmp_path / ".stage" / "model.onnx"
    staged.parent.mkdir()
    staged.write_bytes(b"new model")
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    move_into_place(staged, target)
    assert target.read_bytes() == b"new model" and not staged.exists()


def test_a_folder_that_can_be_written_but_not_read_is_not_flushed_and_does_not_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An output folder of mode 0300: the output was renamed into place, then opening the folder to flush it
    failed, and the run exited 2 "permission denied ... run with --resume" with its output published."""
    from clsrun.runtime import files

    real_open = os.open

    def no_reading_folders(path: Any, flags: int, *args: Any) -> int:
        if Path(path).is_dir():
            raise PermissionError(13, "Permission denied", str(path))
        return int(real_open(path, flags, *args))

    monkeypatch.setattr(files.os, "open", no_reading_folders)
    files.atomic_write_text(tmp_path / "out.txt", "published")
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == "published"
    (tmp_path / "locked").write_text("x", encoding="utf-8")
    monkeypatch.setattr(files.os, "open", lambda *a: (_ for _ in ()).throw(PermissionError(13, "no")))
    with pytest.raises(PermissionError):  # a file that cannot be opened is still an error
        files.fsync_path(tmp_path / "locked")


def test_the_form_of_a_temporary_name_is_as_long_as_the_names_made(tmp_path: Path) -> None:
    made = temporary_for(tmp_path / "o.csv.manifest.json")
    assert len(made.name) == len(temporary_name("o.csv.manifest.json")) and is_temporary(made.name)
