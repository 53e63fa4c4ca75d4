"""The identity of an input file: what ``--resume`` compares between runs, and what a run checks before it
publishes, so rows of a file that changed underneath are never passed off as that file's scores."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO

_SAMPLE = 1 << 20  # bytes hashed at each end of the input for its fingerprint


def input_fingerprint(path: Path) -> dict[str, Any]:
    """The input's identity: device, inode, size, modification and status-change times, sampled sha256.

    Any write to a file changes its status-change time (``ctime``), which no tool can set back (``cp -p``,
    ``rsync -t`` and ``touch -d`` restore the modification time only), and a file replaced by a rename
    has a new inode; so an edit anywhere in the file, even one of the same size with the mtime restored,
    changes the fingerprint. The sampled hash (first and last MiB) also catches a different file put in
    place on a filesystem whose inodes or times are coarse. Hashing the whole file would read a 10 GB
    input once more before scoring starts, for nothing the times do not already tell.
    """
    with open(path, "rb") as f:
        stat = os.fstat(f.fileno())
        sample = _sample_sha256(f, stat.st_size)
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "inode": stat.st_ino,
        "device": stat.st_dev,
        "sample_sha256": sample,
    }


def _sample_sha256(f: BinaryIO, size: int) -> str:
    """sha256 of the first and last MiB; of the whole file when it is no longer than those two (a file of
    1.5 MiB was hashed through its first MiB only: an edit in its last half was not seen)."""
    h = hashlib.sha256()
    if size > 2 * _SAMPLE:
        h.update(f.read(_SAMPLE))
        f.seek(-_SAMPLE, os.SEEK_END)
        h.update(f.read(_SAMPLE))
    else:
        h.update(f.read())
    return h.hexdigest()


def changed_while_read(path: Path, fingerprint: dict[str, Any]) -> str | None:
    """What changed in the file ``fingerprint`` was taken of (before it was opened), as found through
    ``path`` now; None when its content did not.

    - ``path`` naming another file (the input replaced by a rename) or none (deleted) is not a change: the
      reader holds the original open and reads it to the end whatever the path names.
    - A new size is (an append, a copy of another file over it). So is a new modification time with a
      different sampled content (first and last MiB).
    - Metadata alone is not: ``chmod``, ``chown``, a hard link (only the status-change time moves), or a
      ``touch`` (the modification time moves, the content is the same). A write of the same size inside the
      file that leaves both ends as they were is not seen: the price of not reading the file twice.
    """
    try:
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())
            if (stat.st_ino, stat.st_dev) != (fingerprint.get("inode"), fingerprint.get("device")):
                return None
            if stat.st_size != fingerprint.get("size"):
                return "size"
            if stat.st_mtime_ns == fingerprint.get("mtime_ns"):
                return None
            return "content" if _sample_sha256(f, stat.st_size) != fingerprint.get("sample_sha256") else None
    except FileNotFoundError:
        return None


def written_to(path: Path, fingerprint: dict[str, Any], doing: str) -> str | None:
    """``PATH: was written to while it was being DOING (its ... changed)`` when :func:`changed_while_read`
    finds a change, else None: the head of the message a run gives before it stops."""
    changed = changed_while_read(path, fingerprint)
    return (
        None
        if changed is None
        else f"{path}: was written to while it was being {doing} (its {changed} changed)"
    )
