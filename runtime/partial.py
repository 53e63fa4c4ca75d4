"""Crash-safe partial output: finished windows as fsynced part files plus a journal, for ``--resume``.

Layout, next to the output ``OUT``: a folder ``.OUT.partial/`` holding
- ``state.json``: what the run depends on (input identity, bundle digest, options that change the
  output) and the run's id; a resume whose state differs is refused with :class:`ResumeError`;
- ``part-000000.RUN.arrow``, ...: one Arrow IPC file per finished window, written under a temporary
  name, fsynced and renamed; ``RUN`` is the run's id, so a part another run left can never be assembled;
- ``journal.jsonl``: one line per part, appended and fsynced only after its part is durable.

A part counts only once its journal line is complete, so ``kill -9`` at any moment loses at most the
windows in flight; a resumed run skips the journaled rows and produces the same windows as an
uninterrupted run (windows are fixed-size), so the assembled output is identical.

The folder is trusted only when clsrun made it: a symbolic link, or a folder without clsrun's
``state.json``, is refused rather than written into, and only files named as clsrun names them are ever
deleted there (anything else is left alone).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from clsrun.runtime.bundle import sha256_file
from clsrun.runtime.errors import InternalError, ResumeError, UsageError
from clsrun.runtime.files import append_line, atomic_write, atomic_write_text, fsync_path, is_temporary
from clsrun.runtime.fingerprint import input_fingerprint  # noqa: F401  (where --resume's checks live)

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
JOURNAL_FILE = "journal.jsonl"
FORMAT = "clsrun-partial/2"  # in state.json: marks a folder clsrun made (and its layout)
# The names clsrun gives files in the folder (besides the temporary names of atomic writes: files.is_temporary).
_OURS = re.compile(r"state\.json|journal\.jsonl|part-\d{6}\.[0-9a-f]{12}\.arrow")


class CheckpointExistsError(UsageError):
    """A run without ``--resume`` found the checkpoint of an interrupted run of the same output."""


@dataclass
class PartRecord:
    """One journal line: a finished window."""

    index: int
    start: int  # first row number
    rows: int
    ok: int
    error: int
    truncated: int
    bytes: int  # size of the part file, checked on resume
    run: str = ""  # id of the run that wrote it: must be this run's
    reasons: dict[str, int] = field(default_factory=dict)  # error rows per reason (row_errors.reason_kind)
    # sha256 of the part file, checked on resume: a part changed on disk at the same size (a flipped byte
    # is a different score) is scored again rather than published; "" in journals written before it
    sha256: str = ""


class PartialOutput:
    """The partial-output folder of one output file. Use :meth:`open`."""

    def __init__(self, folder: Path, state: dict[str, Any], parts: list[PartRecord]) -> None:
        self.folder = folder
        self.state = state
        self.run_id: str = state["run_id"]
        self.parts = parts

    @staticmethod
    def folder_for(output: Path) -> Path:
        return output.parent / f".{output.name}.partial"

    @classmethod
    def open(cls, output: Path, state: dict[str, Any], resume: bool, restart: bool = False) -> PartialOutput:
        """Start a new partial output, or with ``resume`` continue the one left by an interrupted run.

        Raises :class:`ResumeError` when the partial output belongs to another input, model or set of
        options (naming what changed), and :class:`CheckpointExistsError` when a run without ``resume``
        would discard checkpointed rows and ``restart`` does not say to.
        """
        folder = cls.folder_for(output)
        old = _trusted_state(folder)
        if old is not None and resume:
            changes = describe_changes(old, state)
            if changes:
                raise ResumeError(
                    f"cannot resume {output}: {'; '.join(changes)} since the interrupted run "
                    f"(partial output in {folder}); run with --overwrite instead of --resume to start over"
                )
            kept = {k: old[k] for k in _RUN_KEYS if k in old}
            state = {**state, **kept}
            return cls(folder, state, cls._recover(folder, state["run_id"]))
        if old is not None and not restart:
            cls.refuse_to_discard(output)
        if old is not None:
            _remove_ours(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # "replaces": whether this job may replace a file at ``output`` (--overwrite, or one was there and
        # the run went ahead): a resume must not replace one that appeared since without being told to.
        replaces = restart or output.exists()
        state = {**state, "format": FORMAT, "run_id": secrets.token_hex(6), "replaces": replaces}
        try:
            _write_state(folder, state)
            fsync_path(folder)
        except OSError as e:  # no room for the state (a full disk, no inode left): leave no empty folder
            with contextlib.suppress(OSError):
                folder.rmdir()
            raise OSError(e.errno, e.strerror, str(folder)) from e  # the checkpoint, not its temporary file
        return cls(folder, state, [])

    def mark_publishing(self) -> None:
        """Record that every row is in and the output is about to be published: a file found at the output
        by a later ``--resume`` may then be this run's own (killed after publishing), not another's."""
        self.state = {**self.state, "publishing": True}
        _write_state(self.folder, self.state)

    @classmethod
    def checkpointed_rows(cls, output: Path) -> int:
        """Rows an interrupted run of ``output`` left checkpointed (0 when there is no checkpoint).

        Refuses, as :meth:`open` does, a partial folder clsrun did not make."""
        folder = cls.folder_for(output)
        state = _trusted_state(folder)
        return 0 if state is None else sum(p.rows for p in cls._journaled(folder, state["run_id"]))

    @classmethod
    def discard_leftover(cls, output: Path) -> None:
        """Remove what a run killed while removing its checkpoint (after publishing) left of it: clsrun's
        files only, and the folder when nothing else is in it."""
        folder = cls.folder_for(output)
        if folder.is_dir() and not folder.is_symlink():
            _remove_ours(folder)
            with contextlib.suppress(OSError):
                folder.rmdir()

    @classmethod
    def refuse_to_discard(cls, output: Path) -> None:
        """Raise :class:`CheckpointExistsError` when an interrupted run of ``output`` left rows to lose."""
        rows = cls.checkpointed_rows(output)
        if rows:
            raise CheckpointExistsError(
                f"{output}: an interrupted run left {rows:,} rows checkpointed in {cls.folder_for(output)}; "
                f"add --resume to continue it, or --overwrite to discard them and start over"
            )

    @staticmethod
    def _journaled(folder: Path, run_id: str) -> list[PartRecord]:
        """Journaled parts of run ``run_id`` whose files are intact, in order, up to the first gap."""
        parts: list[PartRecord] = []
        journal = folder / JOURNAL_FILE
        lines = journal.read_text(encoding="utf-8").splitlines() if journal.is_file() else []
        for line in lines:
            try:
                record = PartRecord(**json.loads(line))
            except (ValueError, TypeError):
                break  # a line cut short by the kill: that part never counted
            path = folder / _part_name(record.index, run_id)
            expected_start = parts[-1].start + parts[-1].rows if parts else 0
            if record.run != run_id or record.index != len(parts) or record.start != expected_start:
                break
            if not path.is_file() or path.is_symlink() or path.stat().st_size != record.bytes:
                break
            if record.sha256 and sha256_file(path) != record.sha256:
                log.warning(
                    "%s: a checkpointed part (rows %d to %d) was changed on disk since it was written: "
                    "scoring again from row %d",
                    folder,
                    record.start,
                    record.start + record.rows - 1,
                    record.start,
                )
                break
            parts.append(record)
        return parts

    @classmethod
    def _recover(cls, folder: Path, run_id: str) -> list[PartRecord]:
        """The intact journaled parts; clsrun's other files in the folder (torn parts) are removed."""
        parts = cls._journaled(folder, run_id)
        keep = {_part_name(p.index, run_id) for p in parts} | {STATE_FILE, JOURNAL_FILE}
        _remove_ours(folder, keep)
        text = "".join(json.dumps(asdict(p)) + "\n" for p in parts)
        atomic_write_text(folder / JOURNAL_FILE, text)
        return parts

    @property
    def rows_done(self) -> int:
        return sum(p.rows for p in self.parts)

    def reasons(self) -> dict[str, int]:
        """Error rows per reason over every part, most frequent first."""
        total: dict[str, int] = {}
        for p in self.parts:
            for reason, n in p.reasons.items():
                total[reason] = total.get(reason, 0) + n
        return dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))

    def add(
        self,
        table: pa.Table,
        start: int,
        ok: int,
        error: int,
        truncated: int,
        reasons: dict[str, int] | None = None,
    ) -> PartRecord:
        """Make one finished window durable: part file (tmp, fsync, rename), then its journal line.

        ``reasons``: the window's error rows per reason, so a resumed run's manifest counts them all."""
        if start != self.rows_done:
            raise InternalError(f"part starting at row {start} added after {self.rows_done} rows")
        index = len(self.parts)
        final = self.folder / _part_name(index, self.run_id)

        def write(tmp: Path) -> None:
            with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)

        atomic_write(final, write)
        size = final.stat().st_size
        record = PartRecord(
            index,
            start,
            table.num_rows,
            ok,
            error,
            truncated,
            size,
            self.run_id,
            reasons or {},
            sha256_file(final),
        )
        append_line(self.folder / JOURNAL_FILE, json.dumps(asdict(record)))
        self.parts.append(record)
        return record

    def tables(self) -> Iterator[pa.Table]:
        """The parts in order, one at a time (memory-mapped: assembling never holds the whole output)."""
        for p in self.parts:
            with pa.memory_map(str(self.folder / _part_name(p.index, self.run_id))) as source:
                yield ipc.open_file(source).read_all()

    def remove(self) -> None:
        """Delete clsrun's files and the folder; anything else found there is left, and said."""
        _remove_ours(self.folder)
        try:
            self.folder.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            others = sorted(p.name for p in self.folder.iterdir())
            log.warning(
                "left %s in place: it holds files clsrun did not make (%s)", self.folder, ", ".join(others)
            )


# How a changed state entry is named to the user: the flag they typed, or what the fingerprint covers.
_NAMES = {
    "input": "the input path",
    "input_fingerprint": "the input file",
    "bundle_digest": "the model bundle",
    "variant": "the model variant (--backend/--precision/--device)",
    "options.text_col": "--text-col",
    "options.id_col": "--id-col",
    "options.probs": "--probs",
    "options.window": "--window",
    "options.batch_tokens": "--batch-tokens",
    "options.delimiter": "--delimiter",
    "options.tsv_quotes": "--tsv-quotes",
    "options.max_batch_rows": "the rows per batch",
    "options.max_text_bytes": "the text size cap",
}

# Entries others set: not named when one of those changed too (--window sets an n-gram bundle's batch rows;
# the model variant, chosen anew when `clsrun export --force` rebuilt the bundle, sets the batch defaults).
_FOLLOWS = {
    "options.max_batch_rows": ("options.window", "variant", "bundle_digest"),
    "options.batch_tokens": ("variant", "bundle_digest"),
}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key == "options":
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _write_state(folder: Path, state: dict[str, Any]) -> None:
    """``state.json`` of a checkpoint, replaced atomically."""
    atomic_write_text(folder / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n")


# State entries of one run, not of the job: never a change to refuse a resume for.
_RUN_KEYS = frozenset({"format", "run_id", "replaces", "publishing"})


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One phrase per state entry that differs, e.g. ``--window changed (was 4096, now 8192)``."""
    a, b = _flatten(old), _flatten(new)
    phrases = []
    changed = {key for key in set(a) | set(b) if a.get(key) != b.get(key)} - _RUN_KEYS
    for key in sorted(changed):
        if not changed.intersection(_FOLLOWS.get(key, ())):
            name = _NAMES.get(key, key)
            detail = (
                _fingerprint_detail(a.get(key), b.get(key))
                if key == "input_fingerprint"
                else (f" (was {a.get(key)!r}, now {b.get(key)!r})")
            )
            phrases.append(f"{name} changed{detail}")
    return phrases


# What each fingerprint field is called when it is what changed.
_FINGERPRINT = {
    "size": "size",
    "mtime_ns": "modification time",
    "ctime_ns": "status-change time: a write, or a chmod, chown or new hard link, which cannot be told apart",
    "inode": "inode, so it was replaced",
    "device": "device",
    "sample_sha256": "content",
}


def _fingerprint_detail(old: Any, new: Any) -> str:
    old, new = old or {}, new or {}
    fields = [name for key, name in _FINGERPRINT.items() if old.get(key) != new.get(key)]
    return f" ({', '.join(fields) or 'its identity'})"


def _trusted_state(folder: Path) -> dict[str, Any] | None:
    """The state of a partial folder clsrun made, None when there is none; refuse anything else."""
    if folder.is_symlink():
        raise UsageError(
            f"{folder}: is a symbolic link; clsrun keeps checkpoints only in a folder it made itself: remove the link"
        )
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise UsageError(f"{folder}: is not a folder; clsrun keeps its checkpoint there: move it away")
    path = folder / STATE_FILE
    try:
        state = (
            json.loads(path.read_text(encoding="utf-8")) if path.is_file() and not path.is_symlink() else None
        )
    except (OSError, ValueError):
        state = None
    if (
        not isinstance(state, dict)
        or state.get("format") != FORMAT
        or not isinstance(state.get("run_id"), str)
    ):
        # Empty (a crash right after mkdir), or plain files of clsrun's naming without any state file (a
        # cleanup of an earlier version killed before it was done): nothing that can be resumed, and
        # nothing of anyone else's. A state file that is damaged, foreign or a link is said below.
        leftovers = list(folder.iterdir())
        if not (path.exists() or path.is_symlink()) and all(
            (_OURS.fullmatch(e.name) or is_temporary(e.name)) and e.is_file() and not e.is_symlink()
            for e in leftovers
        ):
            _remove_ours(folder)
            return None
        raise UsageError(
            f"{folder}: holds files clsrun did not make (or made by an older version); move it away, "
            f"or choose another --out"
        )
    return state


def _remove_ours(folder: Path, keep: Collection[str] = ()) -> None:
    """Delete the plain files of ``folder`` that clsrun names (never other files, folders or links).

    The journal goes first and the state file last: a process killed part of the way through (after
    publishing, say) leaves a folder that still says whose it is and holds no rows, which the next run
    reads as an empty checkpoint (``--resume`` then finds the published output), not as a folder of
    unknown files to refuse."""
    ours = [
        entry
        for entry in folder.iterdir()
        if entry.name not in keep and (_OURS.fullmatch(entry.name) or is_temporary(entry.name))
    ]
    for entry in sorted(ours, key=lambda e: (e.name != JOURNAL_FILE) + (e.name == STATE_FILE)):
        if entry.is_symlink() or entry.is_file():
            entry.unlink(missing_ok=True)


def _part_name(index: int, run_id: str) -> str:
    return f"part-{index:06d}.{run_id}.arrow"
