"""Writing files so that a crash never leaves half of one: the one way every stage does it.

A file is written under a temporary name in the same folder (or in ``tmp_dir``, on the same file system),
flushed to disk, given the mode a plain ``open`` would give it, and renamed over the target; the folder is
then flushed too, so the rename survives a power cut. The target therefore holds either its old content or
the complete new one, never a mix. Temporary names are ``.<target name>.<random>.tmp``
(:func:`is_temporary`), so a reader of the folder can tell them from real files.

- :func:`atomic_write`: the general form, with a callback that writes the temporary path (Arrow tables,
  CSV/JSONL/Parquet writers, IPC files); :func:`temporary_for` and :func:`publish`, its two halves, for a
  file filled over a longer time;
- :func:`atomic_write_text` / :func:`atomic_write_bytes`: small files (manifests, state, reports);
- :func:`atomic_fs_write` / :func:`atomic_fs_write_text`: the same on any pyarrow filesystem (the Ray
  engine's parts and manifest may go to S3, GCS or HDFS);
- :func:`move_into_place`: publish a file that was built whole elsewhere on the same file system (export's
  staging folder) the same way: flushed, renamed, folder flushed;
- :func:`append_line`: one durable journal line; :func:`fsync_path`: flush a file or folder.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import tempfile
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.fs as pafs

TMP_SUFFIX = ".tmp"
# The random part of a temporary name: tempfile.mkstemp's names hold 8 random characters.
_RANDOM_PART = "X" * 8
# A file system that will not say its limit on a name's length: the limit of Linux's own (ext4, xfs, tmpfs).
_USUAL_NAME_MAX = 255


def non_utf8_name(path: Path | str) -> str | None:
    """``path`` spelt with its undecodable bytes as ``\\xNN`` when its name is not valid UTF-8, else None.

    Linux allows any bytes in a file name; Python keeps the invalid ones as lone surrogates, which pyarrow's
    writers and the UTF-8 manifest cannot encode. Such a name is refused before any work (a run used to
    score every row and then fail at the manifest, its output published without one)."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return None


LINK_LOOP = "a loop of symbolic links (a link that leads back to itself)"  # what a message says of one


def resolved(path: Path) -> Path | None:
    """``path`` with its symbolic links followed, or None when they loop (then it names no file and cannot
    be locked or compared: readers, the output claim and the lock each say :data:`LINK_LOOP`)."""
    try:
        return path.resolve()
    except RuntimeError:  # a loop, up to Python 3.12
        return None
    except OSError as e:  # a loop from Python 3.13 (ELOOP); any other failure is not ours to rename
        if e.errno == errno.ELOOP:
            return None
        raise


def pinned(path: Path) -> Path:
    """``path`` in its folder as that resolves now, when a symbolic link leads there (``current/o.csv``,
    ``current -> 2026-12-01``); else ``path`` as given.

    A run locks its output's folder once, but each later open of ``current/...`` follows the link anew: had
    the link been re-pointed mid-run (a daily rotation), the run's checkpoint and output would land in the
    new folder under no lock of its own, where a second run could take that folder's lock and clear them
    or replace the output. Pinned, the run finishes in the folder it locked. Paths without links keep
    their spelling (messages say what the user typed)."""
    folder = resolved(path.parent)
    if folder is None or folder == path.parent.absolute():
        return path
    return folder / path.name


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, innermost first (``new/..`` among them
    while ``new`` does not exist: :func:`remove_if_empty` passes over such names)."""
    return [p for p in (folder, *folder.parents) if not p.exists() and not p.is_symlink()]


def remove_if_empty(folders: list[Path]) -> None:
    """Remove the ``folders`` (innermost first) a run made, each only while empty: a checkpoint kept in one
    stays, and so does every folder above it."""
    for folder in folders:
        if folder.name in ("..", "."):  # `new/..` is not a folder of its own: `new` comes next
            continue
        try:
            folder.rmdir()
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENAMETOOLONG):  # never made: the run failed before it
                continue
            return


def user_name(uid: int) -> str:
    """``user NAME`` for a user id, ``user id N`` where it has no passwd entry."""
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name}"
    except (ImportError, KeyError):
        return f"user id {uid}"


def refuse_others_in_sticky_folder(paths: list[Path]) -> None:
    """In a sticky folder (``/tmp``, a shared drop folder: mode 1777) only a file's owner may replace it: a run
    that replaces another user's file there (an output, a manifest, a bench report) did all its work and then
    failed to publish ("operation not permitted"). :class:`UsageError` naming the owner, before any work."""
    from clsrun.runtime.errors import UsageError

    me = os.geteuid()
    for path in paths:
        try:
            folder, owner = path.parent.stat(), path.lstat().st_uid
        except OSError:
            continue
        if folder.st_mode & stat.S_ISVTX and owner != me and me not in (0, folder.st_uid):
            raise UsageError(
                f"{path}: belongs to {user_name(owner)}, and in {path.parent} (a sticky folder, like /tmp) only "
                "a file's owner may replace it; ask them to remove it, or choose another --out"
            )


def name_max(folder: Path) -> int:
    """The longest file name, in bytes, the file system holding ``folder`` allows (asked of its nearest
    existing parent while ``folder`` is not made yet)."""
    for place in (folder, *folder.parents):
        try:
            return int(os.pathconf(place, "PC_NAME_MAX"))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except (OSError, ValueError):  # a file system (or platform) that does not say
            break
    return _USUAL_NAME_MAX


def refuse_long_names(path: Path, made: Collection[str], flag: str, remedy: str) -> None:
    """:class:`UsageError` when a name clsrun makes beside ``path`` from its name (``made``: the names, its
    own among them) is longer than its file system allows (:func:`name_max`, in the file system encoding's
    bytes), telling the longest name ``path`` may have: "``{remedy}`` of at most N bytes".

    Called before any work and before any folder is made: a scoring run with a legal but long ``--out``
    scored every row, then failed to name its manifest's temporary file ("File name too long"), leaving a
    checkpoint that ``--resume`` failed on again."""
    from clsrun.runtime.errors import UsageError

    def size(name: str) -> int:
        return len(os.fsencode(name))

    limit = name_max(path.parent)
    longest = max(made, key=size)
    if size(longest) <= limit:
        return
    own = size(path.name)
    made_from = (
        ""
        if longest == path.name
        else f", and clsrun makes {longest.replace(path.name, 'NAME')} from it ({size(longest)} bytes)"
    )
    raise UsageError(
        f"{flag} {path}: the name is {own} bytes{made_from}, over the {limit} bytes a file name may have "
        f"there; {remedy} of at most {limit - (size(longest) - own)} bytes"
    )


def make_folder(folder: Path, flag: str) -> None:
    """Make ``folder`` and its parents (as ``mkdir -p``); :class:`UsageError` naming ``flag`` when a file or
    a dangling link is in the way, instead of the bare ``FileExistsError`` / ``NotADirectoryError``."""
    from clsrun.runtime.errors import UsageError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise UsageError(f"{flag}: its folder cannot be made: a name in {folder} is too long") from e
        if not isinstance(e, (FileExistsError, NotADirectoryError, FileNotFoundError)):
            raise
        on_the_way = [*reversed(folder.parents), folder]
        dangling_or_file = (p for p in on_the_way if (p.is_symlink() and not p.exists()) or p.is_file())
        blocking = next(dangling_or_file, None)
        what = f"{blocking} is not a folder" if blocking is not None else (e.strerror or "").lower()
        raise UsageError(f"{flag}: its folder cannot be made: {what}") from e


def is_temporary(name: str) -> bool:
    """True for the temporary name of a write in progress (or of one a crash cut short)."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def fsync_path(path: Path) -> None:
    """Flush a file or folder to disk (a folder: so a rename inside it survives a power cut).

    A folder this process may write into but not read (mode 0300, a drop box) cannot be opened to flush:
    its rename has happened all the same, so that flush is skipped rather than failing a run whose output
    is already in place.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except PermissionError:
        if path.is_dir():
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_readable(path: Path) -> None:
    """Give a file made by ``mkstemp`` (mode 0600) the mode a plain ``open`` would have (0666 less umask)."""
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def atomic_write(target: Path, write: Callable[[Path], None], tmp_dir: Path | None = None) -> None:
    """Call ``write(tmp)`` to fill a temporary file, then flush it and rename it to ``target``.

    ``target`` appears only when complete; a failure (or an exception in ``write``) leaves no file under
    either name. ``tmp_dir`` (same file system as ``target``; default its folder) holds the temporary file.
    """
    tmp = temporary_for(target, tmp_dir)
    try:
        write(tmp)
        publish(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def temporary_for(target: Path, tmp_dir: Path | None = None) -> Path:
    """A new empty file with ``target``'s temporary name (:func:`is_temporary`), in ``tmp_dir`` (same file
    system as ``target``; default its folder): where :func:`atomic_write` and a file written over a whole
    run (``writers.TableFile``) are filled before :func:`publish`."""
    folder = tmp_dir if tmp_dir is not None else target.parent
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=TMP_SUFFIX)  # temporary_name
    os.close(fd)
    return Path(name)


def temporary_name(target_name: str) -> str:
    """The form of the temporary name :func:`temporary_for` gives a file named ``target_name``, its random
    part written as ``X``: as long as each such name, for checking that one fits (:func:`refuse_long_names`)."""
    return f".{target_name}.{_RANDOM_PART}{TMP_SUFFIX}"


def publish(tmp: Path, target: Path) -> None:
    """Give the finished temporary file ``tmp`` a plain file's mode, plus the read permissions of the file it
    replaces, and move it over ``target``, flushed before and after (:func:`move_into_place`).

    Whoever could read the replaced file still can: a re-export under ``umask 077`` made a shared bundle's
    ``clsrun.json`` 0600, and every other user's predict failed on it. Only read bits carry over: a whole
    old mode also carried a setuid bit, or an owner who could not read their own file (0200), onto a new
    file of another owner."""
    _make_readable(tmp)
    try:
        old = os.lstat(target)
    except OSError:
        old = None
    if old is not None and stat.S_ISREG(old.st_mode) and old.st_mode & 0o444:
        os.chmod(tmp, stat.S_IMODE(os.stat(tmp).st_mode) | (old.st_mode & 0o444))
    move_into_place(tmp, target)


def atomic_write_bytes(target: Path, data: bytes, tmp_dir: Path | None = None) -> None:
    """Write ``data`` to ``target`` atomically (see :func:`atomic_write`)."""
    atomic_write(target, lambda tmp: _write_bytes(tmp, data), tmp_dir)


def _write_bytes(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def atomic_write_text(target: Path, text: str, tmp_dir: Path | None = None) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically (see :func:`atomic_write`)."""
    atomic_write_bytes(target, text.encode("utf-8"), tmp_dir)


def move_into_place(source: Path, target: Path) -> None:
    """Rename the finished file ``source`` over ``target`` (same file system), flushed before and after, so
    ``target`` holds either its old content or all of ``source``, even after a power cut."""
    fsync_path(source)
    os.replace(source, target)
    fsync_path(target.parent)


def append_line(path: Path, line: str) -> None:
    """Append ``line`` and a newline to ``path`` and flush it to disk before returning (a journal entry)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def atomic_fs_write(fs: pafs.FileSystem, path: str, write: Callable[[Path], None]) -> None:
    """:func:`atomic_write` on any pyarrow filesystem: ``write`` always fills a local temporary file.

    On a local disk that is :func:`atomic_write` itself. Elsewhere the file is written locally, uploaded
    under a temporary name beside ``path`` and moved onto it, so a reader never sees part of an upload
    under the final name (a retried task replaces the object instead of adding a second one).
    """
    import pyarrow.fs as pafs

    if isinstance(fs, pafs.LocalFileSystem):
        atomic_write(Path(path), write)
        return
    folder, name = posixpath.split(path)
    remote_tmp = posixpath.join(folder, f".{name}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")
    with tempfile.TemporaryDirectory(prefix="clsrun-upload-") as scratch:
        local = Path(scratch) / name
        write(local)
        pafs.copy_files(str(local), remote_tmp, destination_filesystem=fs)
    fs.move(remote_tmp, path)


def atomic_fs_write_text(fs: pafs.FileSystem, path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` on ``fs`` atomically (see :func:`atomic_fs_write`)."""
    atomic_fs_write(fs, path, lambda tmp: _write_bytes(tmp, text.encode("utf-8")))
