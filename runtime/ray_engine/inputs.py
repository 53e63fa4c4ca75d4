"""INPUT as a set of files: one file, a folder, a glob or a list of them, on any filesystem pyarrow supports.

``resolve_inputs("s3://bucket/in/*.parquet")`` lists the files once, sorted, so that file numbers, ids
and part order never depend on listing order; :func:`local_copy` gives the runtime's readers (which read
local files) a local path for a file on any filesystem.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from clsrun.runtime.errors import InputError, UsageError
from clsrun.runtime.files import non_utf8_name
from clsrun.runtime.input_files import detect_format


@dataclass(frozen=True)
class InputFiles:
    """The files of INPUT in scoring order, on one filesystem, with their names for ids and the manifest."""

    filesystem: pafs.FileSystem
    paths: list[str]  # filesystem paths, sorted
    names: list[str]  # each path relative to ``root``
    root: str  # deepest folder holding every file
    uris: list[str]  # how each file is shown to the user

    def __len__(self) -> int:
        return len(self.paths)


def open_location(spec: str) -> tuple[pafs.FileSystem, str, str]:
    """``(filesystem, path, uri prefix)`` of a local path or a URI such as ``s3://bucket/key``."""
    if "://" not in spec:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(spec)), ""
    try:
        fs, path = pafs.FileSystem.from_uri(spec if not _has_glob(spec) else _glob_base(spec))
    except (pa.ArrowInvalid, OSError, ValueError) as e:
        raise InputError(f"{spec}: cannot open this location: {str(e).splitlines()[0]}") from e
    if _has_glob(spec):  # from_uri saw the folder only; put the pattern back on the path
        path = posixpath.join(path, spec[len(_glob_base(spec)) :].lstrip("/"))
    scheme = spec.split("://", 1)[0]
    return fs, path, f"{scheme}://"


def _has_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def _glob_base(pattern: str) -> str:
    """The part of a glob before its first wildcard component (``s3://b/in/*.csv`` -> ``s3://b/in``)."""
    head = pattern
    while _has_glob(head):
        head = head.rsplit("/", 1)[0] if "/" in head else ""
    return head


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A shell-style glob as a regex on whole paths: ``*`` and ``?`` stay inside one folder, ``**`` crosses."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape("["))
                i += 1
            else:
                body = pattern[i + 1 : end]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def _listable(name: str) -> bool:
    """Files a folder or glob expands to: known formats, not hidden or ``_``-prefixed (manifests, markers)."""
    base = posixpath.basename(name)
    if base.startswith((".", "_")):
        return False
    try:
        detect_format(base)
    except InputError:
        return False
    return True


def resolve_inputs(inputs: str | Path | Sequence[str | Path], output: str | None = None) -> InputFiles:
    """Expand INPUT (a file, a folder, a glob, or a list of them) into a sorted list of files.

    Folders are searched recursively; a glob's ``**`` matches any depth. Everything must live on one
    filesystem (one Ray read cannot mix, say, local files and S3 objects). ``output``: the run's OUT
    folder, whose part files (and its staging and replaced siblings) a folder or glob around it must not
    list: a second run of the same command read the first one's output as input. On a local disk a file
    reached by several paths (a symbolic link to it, or a link to a folder above it: a loop) counts once.
    """
    specs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not specs:
        raise UsageError("INPUT: no input given")
    found: set[str] = set()
    fs0: pafs.FileSystem | None = None
    prefix0 = ""
    for raw in specs:
        spec = str(raw)
        bad_name = non_utf8_name(spec)
        if bad_name is not None:
            raise InputError(f"{bad_name}: the name is not valid UTF-8; rename it")
        fs, path, prefix = open_location(spec)
        if fs0 is not None and (fs.type_name != fs0.type_name or prefix != prefix0):
            raise UsageError(f"INPUT: {spec} is on another filesystem than {specs[0]}; use one filesystem")
        fs0, prefix0 = fs, prefix
        found.update(_files_of(fs, spec, path))
    assert fs0 is not None
    paths = [p for p in _once_each(fs0, sorted(found)) if not _inside_output(fs0, p, output)]
    if not paths:
        raise InputError(f"{specs[0]}: every file it lists is in --out {output}")
    root = posixpath.dirname(paths[0]) if len(paths) == 1 else posixpath.commonpath(paths)
    names = [posixpath.relpath(p, root) if root else p for p in paths]
    return InputFiles(fs0, paths, names, root, [prefix0 + p for p in paths])


def _files_of(fs: pafs.FileSystem, spec: str, path: str) -> list[str]:
    """The files one INPUT ``spec`` (at ``path`` on ``fs``) names: a glob's matches, a folder's files (not
    hidden), or the file itself. pyarrow decodes each listed name as UTF-8 when its path is read: a name
    that is not is one line, as for the local engine."""
    try:
        if _has_glob(path):
            base = _glob_base(path) or "."
            rest = path[len(base) :].lstrip("/")
            deep = "**" in rest or "/" in rest  # list subfolders only when the pattern reaches into them
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=deep, allow_not_found=True))
            pattern = _glob_regex(path)
            hits = [i.path for i in infos if i.is_file and pattern.fullmatch(i.path) and _listable(i.path)]
            if not hits:
                raise InputError(f"{spec}: no .csv, .tsv, .jsonl or .parquet file matches")
            return hits
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"{spec}: file or folder not found")
        if info.type != pafs.FileType.Directory:
            detect_format(path)  # an explicitly named file must have a known extension
            return [path]
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        hits = [i.path for i in infos if i.is_file and _listable(i.path) and not _hidden_below(i.path, path)]
    except UnicodeDecodeError as e:
        raise InputError(f"{spec}: a file name it lists is not valid UTF-8; rename it") from e
    if not hits:
        raise InputError(f"{spec}: folder holds no .csv, .tsv, .jsonl or .parquet file")
    return hits


def _inside_output(fs: pafs.FileSystem, path: str, output: str | None) -> bool:
    """Whether ``path`` lies in OUT, or in one of its staging (``OUT.tmp-*``) or replaced (``OUT.old-*``)
    folders (on a local disk: as both resolve, so a link on the way does not hide it)."""
    if not output:
        return False
    out = output.rstrip("/")
    if isinstance(fs, pafs.LocalFileSystem):
        path, out = os.path.realpath(path), os.path.realpath(out)
    return (
        path.startswith(out + "/") or re.match(re.escape(out) + r"\.(tmp|old)-[0-9a-f]+/", path) is not None
    )


def _once_each(fs: pafs.FileSystem, paths: list[str]) -> list[str]:
    """``paths`` with each local file once, under its shortest spelling, sorted: a symbolic link to a
    folder above (``loop -> .``) listed one file 41 times, down to the depth the system allows."""
    if not isinstance(fs, pafs.LocalFileSystem):
        return paths
    best: dict[str, str] = {}
    for path in paths:
        real = os.path.realpath(path)
        if real not in best or (path.count("/"), path) < (best[real].count("/"), best[real]):
            best[real] = path
    return sorted(best.values())


def _hidden_below(path: str, folder: str) -> bool:
    """True when a folder between ``folder`` and ``path`` is hidden or ``_``-prefixed (``_temporary``)."""
    parts = posixpath.relpath(path, folder).split("/")[:-1]
    return any(p.startswith((".", "_")) for p in parts)


@contextlib.contextmanager
def local_copy(fs: pafs.FileSystem, path: str) -> Iterator[Path]:
    """A local path for ``path``: itself on a local disk, else a temporary copy streamed from ``fs``.

    The local engine's reader opens local files (gzip, Parquet footers, JSONL lines); copying a remote
    object first lets every pyarrow filesystem use that same reader instead of a second one.
    """
    if isinstance(fs, pafs.LocalFileSystem):
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="clsrun-in-") as tmp:
        local = Path(tmp) / posixpath.basename(path)
        pafs.copy_files(path, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        yield local
