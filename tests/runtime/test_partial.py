"""The partial-output folder is trusted only when clsrun made it, and a changed input is always noticed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from clsrun.runtime.errors import ResumeError, UsageError
from clsrun.runtime.partial import JOURNAL_FILE, STATE_FILE, PartialOutput, input_fingerprint

STATE = {"input": "in.csv", "options": {"window": 2}}


def _window(start: int) -> pa.Table:
    return pa.table({"id": [str(start), str(start + 1)], "label": ["a", "b"]})


def _two_parts(out: Path) -> PartialOutput:
    partial = PartialOutput.open(out, STATE, resume=False)
    partial.add(_window(0), 0, 2, 0, 0)
    partial.add(_window(2), 2, 2, 0, 0)
    return partial


def test_resume_continues_from_the_journal(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    first = _two_parts(out)
    again = PartialOutput.open(out, STATE, resume=True)
    assert again.rows_done == 4 and again.run_id == first.run_id
    assert [t.num_rows for t in again.tables()] == [2, 2]


def test_a_symlinked_partial_folder_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    elsewhere = tmp_path / "important"
    elsewhere.mkdir()
    (elsewhere / "state.json").write_text("{}")
    (elsewhere / "data.txt").write_text("keep")
    PartialOutput.folder_for(out).symlink_to(elsewhere, target_is_directory=True)
    for resume in (True, False):
        with pytest.raises(UsageError, match="is a symbolic link"):
            PartialOutput.open(out, STATE, resume=resume, restart=True)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["data.txt", "state.json"]


def test_a_folder_clsrun_did_not_make_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    folder = PartialOutput.folder_for(out)
    folder.mkdir()
    (folder / "notes.txt").write_text("not clsrun's")
    with pytest.raises(UsageError, match="holds files clsrun did not make"):
        PartialOutput.open(out, STATE, resume=True, restart=True)
    assert (folder / "notes.txt").read_text() == "not clsrun's"


def test_stray_entries_are_left_alone_and_never_break_resume(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    partial = _two_parts(out)
    (partial.folder / "a-subfolder").mkdir()
    (partial.folder / "README").write_text("someone's note")
    again = PartialOutput.open(out, STATE, resume=True)
    assert again.rows_done == 4
    again.remove()
    assert sorted(p.name for p in partial.folder.iterdir()) == ["README", "a-subfolder"]


def test_parts_of_another_run_are_never_assembled(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    partial = _two_parts(out)
    state = json.loads((partial.folder / STATE_FILE).read_text())
    state["run_id"] = "0" * 12  # the journal and parts now belong to a run that is not this state's
    (partial.folder / STATE_FILE).write_text(json.dumps(state))
    again = PartialOutput.open(out, STATE, resume=True)
    assert again.rows_done == 0
    assert not list(again.folder.glob("part-*")), "the other run's parts were discarded"
    assert (again.folder / JOURNAL_FILE).read_text() == ""


def test_a_same_size_edit_with_the_mtime_restored_changes_the_fingerprint(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("text\n" + "".join(f"row {i:05d}\n" for i in range(400_000)))
    before = input_fingerprint(src)
    stat = src.stat()
    data = bytearray(src.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 3] = b"XYZ"  # same size, in the middle: outside the sampled first/last MiB
    with open(src, "r+b") as f:
        f.write(data)
    os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # what cp -p / rsync -t do
    after = input_fingerprint(src)
    assert after["size"] == before["size"] and after["mtime_ns"] == before["mtime_ns"]
    assert after != before
    out = tmp_path / "o.csv"
    PartialOutput.open(out, {**STATE, "input_fingerprint": before}, resume=False)
    with pytest.raises(
        ResumeError,
        match=r"the input file changed \(status-change time: a write, or a chmod, chown or new hard link",
    ):
        PartialOutput.open(out, {**STATE, "input_fingerprint": after}, resume=True)


def test_no_room_for_the_state_leaves_no_empty_checkpoint_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system out of inodes made the folder, then failed the state's temporary file: the empty
    `.OUT.partial/` stayed and the error named the temporary file."""
    import errno

    import clsrun.runtime.partial as partial

    def no_room(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path.parent / ".state.json.x1.tmp"))

    monkeypatch.setattr(partial, "atomic_write_text", no_room)
    out = tmp_path / "o.csv"
    with pytest.raises(OSError) as e:
        PartialOutput.open(out, {"input": "x"}, resume=False)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(PartialOutput.folder_for(out))
    assert list(tmp_path.iterdir()) == []


def test_an_edit_past_the_first_mib_of_a_file_under_two_mib_is_seen(tmp_path: Path) -> None:
    """A file of 1-2 MiB was hashed through its first MiB only: the same-size edit of its last row, with a
    new modification time, passed the check before publishing."""

    from clsrun.runtime.fingerprint import changed_while_read, input_fingerprint

    path = tmp_path / "in.csv"
    path.write_bytes(b"text\n" + b"a good row\n" * 150_000)  # 1.5 MiB
    before = input_fingerprint(path)
    with path.open("r+b") as f:
        f.seek(-5, os.SEEK_END)
        f.write(b"BAD!\n")
    os.utime(path, ns=(before["mtime_ns"] + 10**9, before["mtime_ns"] + 10**9))
    assert changed_while_read(path, before) == "content"
