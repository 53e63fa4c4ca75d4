"""Claiming the output of a local run before any work: checked, then locked until the run ends.

A run writes ``OUT``, ``OUT.manifest.json`` and, while it runs, ``.OUT.partial/`` (its checkpoint). Before
the model loads, :meth:`OutputClaim.take`

- resolves ``OUT`` (``--out``, else ``INPUT_STEM.scores.csv`` beside the input) and refuses what cannot be
  written as asked: ``-`` (the output appears only when complete, so never on a pipe), an unknown
  extension, a folder, the input itself, a name too long for the names made from it (the longest,
  ``.OUT.manifest.json.XXXXXXXX.tmp`` in the checkpoint, is 28 bytes longer);
- locks it (``outlock.py``): one writer per output, for the whole run, ``--resume`` and the final rename
  included; a second run is refused naming the first;
- refuses to discard what is there without ``--overwrite``: an existing output, or a checkpoint of an
  interrupted run (``--resume`` continues that one instead).

``--resume`` with no checkpoint and an existing output is decided once the model is loaded (``score.py``):
the same job's finished output is "already complete"; anything else still needs ``--overwrite``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from clsrun.runtime.bundle import inside_bundle
from clsrun.runtime.errors import OutputExistsError, OutputLockedError, UsageError
from clsrun.runtime.files import (
    LINK_LOOP,
    make_folder,
    missing_folders,
    non_utf8_name,
    pinned,
    refuse_long_names,
    refuse_others_in_sticky_folder,
    remove_if_empty,
    resolved,
    temporary_name,
    user_name,
)
from clsrun.runtime.outlock import OutputLock, holder, lock_name
from clsrun.runtime.partial import PartialOutput
from clsrun.runtime.writers import output_format


def default_output(input_path: Path) -> Path:
    """``INPUT_STEM.scores.csv`` next to the input (``reviews.csv.gz`` -> ``reviews.scores.csv``)."""
    name = input_path.name
    for suffix in (".gz", ".csv", ".tsv", ".jsonl", ".json", ".parquet"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return input_path.with_name(f"{name}.scores.csv")


def check_out_name(output: str, engine: str = "local") -> None:
    """Refuse an ``--out`` that names no place to write, on either engine: ``-`` (standard output: the
    output appears only once complete; the Ray engine made a folder named ``-`` and exited 0) or nothing."""
    if output == "-":
        raise UsageError(
            "--out -: clsrun does not write to standard output: the output appears only once complete "
            "(written under a temporary name, then renamed); give a "
            + ("file (e.g. --out scores.csv)" if engine == "local" else "folder (e.g. --out scores.parquet)")
            + " and read that"
        )
    if not output.strip():
        raise UsageError("--out is empty: give the output's name (e.g. --out scores.csv)")


def output_path(input_path: Path, output: Path | str | None, bundle: Path | None = None) -> Path:
    """Where a local run of ``input_path`` writes, checked: a file clsrun can write in a known format,
    outside the model ``bundle`` folder (when given), whose files the run reads and hashes."""
    if output is not None:
        check_out_name(str(output))
        if str(output).endswith(("/", os.sep)):
            raise UsageError(
                f"--out {output}: ends in a slash, so names a folder; the local engine writes one file"
            )
    out = Path(output) if output is not None else default_output(input_path)
    bad_name = non_utf8_name(out)
    if bad_name is not None:
        raise UsageError(f"--out {bad_name}: the name is not valid UTF-8; give a UTF-8 file name")
    flag = "--out" if output is not None else "the default output"
    refuse_long_names(out, names_made_beside(out), flag, "give an --out name")
    output_format(out)  # refuse an unknown extension before any work
    _refuse_link_loop(out)
    if out.is_dir():
        raise UsageError(f"--out {out}: is a folder; the local engine writes one file")
    if out.resolve() == input_path.resolve() or _same_file(out, input_path):
        raise UsageError(f"--out {out}: is the input file itself")
    if _same_file(manifest_path(out), input_path):  # predict o.csv.manifest.json --out o.csv
        raise UsageError(
            f"--out {out}: its manifest, {manifest_path(out).name}, would replace the input file; choose another --out"
        )
    if bundle is not None and inside_bundle(out, bundle):
        raise UsageError(f"--out {out}: is inside the model bundle {bundle}; write the scores elsewhere")
    return out


def names_made_beside(out: Path) -> list[str]:
    """Every name a run writing ``out`` makes in its folder, ``out``'s own first: the output, its manifest
    and lock, the checkpoint folder, and the two temporary files in that (the output's and the manifest's).
    The names inside the checkpoint that do not come from ``out`` (``part-000000.RUN.arrow``) are short."""
    manifest = manifest_path(out).name
    return [
        out.name,
        manifest,
        lock_name(out.name),
        PartialOutput.folder_for(out).name,
        temporary_name(out.name),
        temporary_name(manifest),
    ]


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file (device and inode), whatever names lead there: a bind mount or a
    hard link is not seen by comparing resolved paths."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # either is missing or unreadable: not one file
        return False


def _refuse_link_loop(out: Path) -> None:
    """Refuse an ``--out`` that is (or lies under) a loop of symbolic links: it names no file, and
    resolving it (to lock it) fails."""
    if resolved(out) is None:
        raise UsageError(f"--out {out}: {LINK_LOOP}")


@dataclass(frozen=True)
class OutputClaim:
    """An output checked and locked for one run; valid inside :meth:`take`'s ``with`` block."""

    path: Path
    resume: bool
    overwrite: bool
    lock: OutputLock | None = None

    def lost(self) -> str | None:
        """Why the run no longer holds its output (its folder was moved or replaced since it was locked),
        or None while it does. Checked before the checkpoint is used and before publishing: the lock and
        the files it guards must be in the same folder, or a second run could take the new folder's lock
        and write into this run's checkpoint."""
        if self.lock is None or self.lock.held():
            return None
        if self.lock.folder_unchanged():  # a clean-up of the folder removed the lock file alone
            return (
                f"{self.path}: its lock file {self.lock.path.name} was removed while this run held it (by a "
                "clean-up of the folder?), so another run could have taken the output; nothing was published"
            )
        return (
            f"{self.path}: its folder was moved or replaced while this run held it (its lock "
            f"{self.lock.path.name} is no longer there); nothing was published"
        )

    def refuse_manifest_taken(self) -> None:
        """Before publishing (which first removes ``OUT.manifest.json``): refuse when what is at that name
        now is not this job's to replace. Checked at the start too, but another run may have written its
        output there since (``--out o.csv.manifest.json``, a JSON Lines file), and the manifest replaced
        it with exit 0 on both sides. The rows stay in the checkpoint for ``--resume``."""
        _refuse_manifest_locked(
            self.path, "nothing was published: once it is done, move its file away and --resume"
        )
        if not self.overwrite:
            _refuse_foreign_manifest(
                self.path, since=" (it appeared while this run scored; --resume keeps the saved rows)"
            )

    @classmethod
    @contextmanager
    def take(
        cls,
        input_path: Path,
        output: Path | str | None,
        resume: bool = False,
        overwrite: bool = False,
        bundle: Path | None = None,
    ) -> Iterator[OutputClaim]:
        """Check and lock the output of a run of ``input_path``; the lock is released on leaving.

        Raises :class:`~clsrun.runtime.errors.OutputLockedError` when another run holds it,
        :class:`~clsrun.runtime.partial.CheckpointExistsError` or :class:`OutputExistsError` when a run
        with neither ``resume`` nor ``overwrite`` would discard a checkpoint or replace an output.
        """
        out = output_path(input_path, output, bundle)
        made = missing_folders(out.parent)
        try:
            make_folder(
                out.parent, f"--out {out}"
            )  # inside: a name too long deep in it leaves none made above
            out = pinned(out)  # the folder it resolves to now, for the whole run (files.pinned)
            with OutputLock.acquire(out, follow=False) as lock:  # a link at OUT is replaced, so locked as OUT
                _refuse_folders_at_our_names(out)
                _refuse_others_files(out)
                if not resume and not overwrite:
                    _refuse_to_discard(out)
                _refuse_manifest_locked(out, "wait for it, or choose another --out")
                _refuse_running_manifest(out)
                if not overwrite:
                    _refuse_foreign_manifest(out)
                yield cls(out, resume, overwrite, lock)
        except BaseException:
            remove_if_empty(made)  # a run that failed (a missing bundle) left its new, empty folders
            raise


def _refuse_others_files(out: Path) -> None:
    """Another user's checkpoint at ``.OUT.partial`` that this user cannot change is said as theirs (it was
    "journal.jsonl: permission denied"), and so is their output or manifest in a sticky folder
    (:func:`~clsrun.runtime.files.refuse_others_in_sticky_folder`). Before any work, naming the owner."""
    me = os.geteuid()
    checkpoint = PartialOutput.folder_for(out)
    try:
        theirs = checkpoint.lstat().st_uid
    except OSError:
        theirs = me
    if theirs != me and me != 0 and not _can_change(checkpoint):
        raise UsageError(
            f"{checkpoint}: the checkpoint of a stopped run of {user_name(theirs)}, which this user cannot "
            "change; --resume as that user, or ask them to remove it, or choose another --out"
        )
    refuse_others_in_sticky_folder([out, manifest_path(out)])


def _can_change(folder: Path) -> bool:
    """Whether this user may add and remove files in ``folder``."""
    return os.access(folder, os.W_OK | os.X_OK)


MANIFEST_SUFFIX = ".manifest.json"


def manifest_path(output: Path) -> Path:
    """Where a run of ``output`` writes its manifest: beside it."""
    return output.with_name(output.name + MANIFEST_SUFFIX)


def _refuse_folders_at_our_names(out: Path) -> None:
    """A folder where the output or its manifest goes is said now, not as "unexpected IsADirectoryError"
    after every row was scored (``--overwrite`` does not remove folders)."""
    for path, what in ((out, "the output"), (manifest_path(out), "the output's manifest")):
        if path.is_dir() and not path.is_symlink():
            raise UsageError(f"{path}: is a folder, where {what} goes: move it away or choose another --out")


# A manifest is a few KiB; a file much larger at that name is someone's data, never read in whole to be sure.
_MANIFEST_MAX_BYTES = 1 << 20


def _refuse_manifest_locked(out: Path, advice: str) -> None:
    """Refuse when another run is writing its output at ``OUT.manifest.json`` (it holds that name's lock):
    the manifest would replace that run's output, ``--overwrite`` or not."""
    target = manifest_path(out)
    busy = holder(target)
    if busy is not None:
        raise OutputLockedError(
            f"{target}: another run is writing its output there ({busy}), where this run writes its manifest; "
            + advice
        )


def _refuse_running_manifest(out: Path) -> None:
    """Refuse an ``--out`` that is the manifest of a run scoring now (``--out o.csv.manifest.json`` while a
    run writes ``o.csv``): that run would replace this output with its manifest when it publishes."""
    if not out.name.endswith(MANIFEST_SUFFIX):
        return
    owner = out.with_name(out.name[: -len(MANIFEST_SUFFIX)])
    busy = holder(owner)
    if busy is not None:
        raise OutputLockedError(
            f"--out {out}: the manifest of a run writing {owner.name} ({busy}) goes there; choose another --out"
        )


def _refuse_foreign_manifest(out: Path, since: str = "") -> None:
    """A file at ``OUT.manifest.json`` that is not a clsrun manifest is someone's data (a JSON Lines output
    of another run, ``--out o.csv.manifest.json``): a run replaced it with its manifest, unasked. ``since``:
    what the message adds when it came during the run."""
    target = manifest_path(out)
    if not target.is_file():
        return
    try:
        small = target.stat().st_size <= _MANIFEST_MAX_BYTES
        data = json.loads(target.read_bytes()) if small else None
    except (OSError, ValueError):
        data = None
    if not (isinstance(data, dict) and "clsrun_version" in data):
        raise OutputExistsError(
            f"{target}: exists and is not a clsrun manifest, where this run writes its manifest{since}; "
            "add --overwrite to replace it, or move it away, or choose another --out"
        )


def _refuse_to_discard(out: Path) -> None:
    PartialOutput.refuse_to_discard(out)
    if out.exists():
        raise OutputExistsError(
            f"--out {out}: already exists; add --overwrite to replace it (or --resume, which keeps it "
            f"when it is this same job's finished output)"
        )
