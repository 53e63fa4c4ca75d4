"""Crash-safe partial output: finished windows as fsynced part files plus a journal, for ``--resume``.

Layout, next to the output ``OUT``: a folder ``.OUT.partial/`` holding
- ``state.json``: what the run depends on (input fingerprint, bundle digest, options that change the
  output); a resume whose state differs is refused with :class:`ResumeError`;
- ``part-000000.arrow``, ...: one Arrow IPC file per finished window, written under a temporary name,
  fsynced and renamed;
- ``journal.jsonl``: one line per part, appended and fsynced only after its part is durable.

A part counts only once its journal line is complete, so ``kill -9`` at any moment loses at most the
windows in flight; a resumed run skips the journaled rows and produces the same windows as an
uninterrupted run (windows are fixed-size), so the assembled output is identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from clsrun.runtime.errors import InternalError, ResumeError
from clsrun.runtime.files import append_line, atomic_write, atomic_write_text, fsync_path

STATE_FILE = "state.json"
JOURNAL_FILE = "journal.jsonl"
_SAMPLE = 1 << 20  # bytes hashed at each end of the input for its fingerprint


def input_fingerprint(path: Path) -> dict[str, Any]:
    """Size, mtime and sha256 of the first and last MiB: cheap on a 10 GB file, and catches real edits.

    A full sha256 would read the whole input once more before scoring starts; size and mtime change with
    any ordinary rewrite, and the sampled hash catches a copy of a different file with the same size.
    """
    stat = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(_SAMPLE))
        if stat.st_size > 2 * _SAMPLE:
            f.seek(-_SAMPLE, os.SEEK_END)
            h.update(f.read(_SAMPLE))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sample_sha256": h.hexdigest()}


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


class PartialOutput:
    """The partial-output folder of one output file. Use :meth:`open`."""

    def __init__(self, folder: Path, state: dict[str, Any], parts: list[PartRecord]) -> None:
        self.folder = folder
        self.state = state
        self.parts = parts

    @staticmethod
    def folder_for(output: Path) -> Path:
        return output.parent / f".{output.name}.partial"

    @classmethod
    def open(cls, output: Path, state: dict[str, Any], resume: bool) -> PartialOutput:
        """Start a new partial output, or with ``resume`` continue the one left by an interrupted run.

        A fresh start discards any earlier partial folder. Raises :class:`ResumeError` when the partial
        output belongs to another input, model or set of options (naming what changed).
        """
        folder = cls.folder_for(output)
        if resume and (folder / STATE_FILE).is_file():
            old = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
            changes = _changes(old, state)
            if changes:
                raise ResumeError(
                    f"cannot resume {output}: {'; '.join(changes)} since the interrupted run "
                    f"(partial output in {folder}); run without --resume to start over"
                )
            return cls(folder, state, cls._recover(folder))
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        atomic_write_text(folder / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n")
        fsync_path(folder)
        return cls(folder, state, [])

    @staticmethod
    def _recover(folder: Path) -> list[PartRecord]:
        """Journaled parts whose files are intact, in order; everything after the first gap is dropped."""
        parts: list[PartRecord] = []
        journal = folder / JOURNAL_FILE
        lines = journal.read_text(encoding="utf-8").splitlines() if journal.is_file() else []
        for line in lines:
            try:
                record = PartRecord(**json.loads(line))
            except (ValueError, TypeError):
                break  # a line cut short by the kill: that part never counted
            path = folder / _part_name(record.index)
            expected_start = parts[-1].start + parts[-1].rows if parts else 0
            if record.index != len(parts) or record.start != expected_start:
                break
            if not path.is_file() or path.stat().st_size != record.bytes:
                break
            parts.append(record)
        keep = {_part_name(p.index) for p in parts} | {STATE_FILE, JOURNAL_FILE}
        for stray in folder.iterdir():
            if stray.name not in keep:
                stray.unlink()
        text = "".join(json.dumps(asdict(p)) + "\n" for p in parts)
        atomic_write_text(journal, text)
        return parts

    @property
    def rows_done(self) -> int:
        return sum(p.rows for p in self.parts)

    def add(self, table: pa.Table, start: int, ok: int, error: int, truncated: int) -> PartRecord:
        """Make one finished window durable: part file (tmp, fsync, rename), then its journal line."""
        if start != self.rows_done:
            raise InternalError(f"part starting at row {start} added after {self.rows_done} rows")
        index = len(self.parts)
        final = self.folder / _part_name(index)

        def write(tmp: Path) -> None:
            with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)

        atomic_write(final, write)
        record = PartRecord(index, start, table.num_rows, ok, error, truncated, final.stat().st_size)
        append_line(self.folder / JOURNAL_FILE, json.dumps(asdict(record)))
        self.parts.append(record)
        return record

    def tables(self) -> Iterator[pa.Table]:
        """The parts in order, one at a time (memory-mapped: assembling never holds the whole output)."""
        for p in self.parts:
            with pa.memory_map(str(self.folder / _part_name(p.index))) as source:
                yield ipc.open_file(source).read_all()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# How a changed state entry is named to the user: the flag they typed, or what the fingerprint covers.
_NAMES = {
    "input": "the input path",
    "input_fingerprint": "the input file (size, mtime or content)",
    "bundle_digest": "the model bundle",
    "variant": "the model variant (--backend/--precision/--device)",
    "options.text_col": "--text-col",
    "options.id_col": "--id-col",
    "options.probs": "--probs",
    "options.window": "--window",
    "options.batch_tokens": "--batch-tokens",
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


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One phrase per state entry that differs, e.g. ``--window changed (was 4096, now 8192)``."""
    a, b = _flatten(old), _flatten(new)
    phrases = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            name = _NAMES.get(key, key)
            detail = "" if key == "input_fingerprint" else f" (was {a.get(key)!r}, now {b.get(key)!r})"
            phrases.append(f"{name} changed{detail}")
    return phrases


def _part_name(index: int) -> str:
    return f"part-{index:06d}.arrow"
