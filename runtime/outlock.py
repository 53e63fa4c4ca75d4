"""One writer per output: an exclusive lock beside the output, held for the whole run (``--resume`` too).

Two runs writing the same ``--out`` (a cron overlap, a retry while the first still runs) would otherwise
share one ``.OUT.partial/`` folder and publish a file mixed from both inputs. The lock is a
``fcntl.flock`` on ``.OUT.lock``: the kernel drops it when the holder dies, even under ``kill -9``, so a
crashed run never blocks the next one, and the file itself says who holds it (pid, host, start time,
command) so the refusal can name the holder.

Why by hand: no library in this project's dependencies offers an inter-process lock, and ``flock`` is
a few lines. The one subtlety is the unlink on release: a second run may have opened the old file
just before it was removed, then lock it; so after locking, the holder checks that the path still names
the file it locked, and starts over if not.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import sys
import time
from pathlib import Path
from types import TracebackType

from clsrun.runtime.errors import OutputLockedError, UsageError, file_errors_of
from clsrun.runtime.files import LINK_LOOP, make_folder, refuse_long_names, resolved

try:  # POSIX only; elsewhere runs are not locked (said once in lock_path's docstring)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def lock_path(output: Path, follow: bool = True) -> Path:
    """``.OUT.lock`` beside ``output`` (a file or, for the Ray engine, a folder), as the path resolves: a
    symlink to it, or ``B/onnx/..`` for ``B``, must take the same lock (and never put one inside it).

    ``follow=False`` for an output that is published by replacing its own name (a scoring run's file): a
    symbolic link there is replaced, not written through, so its lock is the link's name in its resolved
    folder. Locking the link's target instead let a run whose link was re-pointed mid-run (a rotation)
    and a second run of the new target's name each hold a lock while sharing one checkpoint."""
    real = resolved(output if follow else output.parent)
    if real is None:
        raise UsageError(f"{output}: {LINK_LOOP}")
    return real.parent / lock_name(real.name) if follow else real / lock_name(output.name)


def lock_name(name: str) -> str:
    """The name of the lock file of an output named ``name``: ``.NAME.lock``."""
    return f".{name}.lock"


def _holder_line(path: Path) -> str:
    """Who holds the lock, as the lock file says (best effort: it may be half-written)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started"])))
        return f"pid {info['pid']} on {info['host']}, started {started}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another clsrun process"


def holder(output: Path) -> str | None:
    """Who holds ``output``'s lock at this moment, or None when nobody does (or it cannot be told).

    For a reader, not a writer: the lock file is opened read-only and never made, and a shared lock is
    taken and dropped at once. Asked only when a bundle failed to load, to tell "being exported" from
    "damaged" (a writer starting in that instant is refused as by any other run: rare, and said)."""
    if fcntl is None:  # pragma: no cover - Windows
        return None
    try:
        path = lock_path(output)
        # O_NONBLOCK: a FIFO put at the name would block the open (and SIGTERM with it) until a writer came
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except (OSError, UsageError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # only a lock file clsrun made can say who holds it
            return None
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder_line(path)
    except OSError:
        return None
    finally:
        os.close(fd)  # drops the shared lock, if taken
    return None


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of ``path``, or None when it cannot be had."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _open_lock_file(path: Path) -> int:
    """Open (create) the lock file for locking. One left by another user's killed run (mode 0644, theirs)
    cannot be opened for writing; ``flock`` works as well on a read-only descriptor, so it is opened
    read-only then, and the holder's description is not written (the file still says the old run's)."""
    flags = os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
    except PermissionError:
        if not os.path.lexists(path):
            raise
        return os.open(path, os.O_RDONLY | flags)


class OutputLock:
    """An acquired lock on one output. Use :meth:`acquire`; :meth:`release` (or ``with``) frees it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd
        self._folder = _identity(path.parent)  # to tell a removed lock file from a moved folder

    @classmethod
    def acquire(cls, output: Path, role: str = "--out", follow: bool = True) -> OutputLock:
        """Lock ``output`` for this process, or raise :class:`OutputLockedError` naming the holder.

        The output's folder is made if it does not exist yet (a run writes into it anyway). ``role`` is
        how messages name it: ``--out`` for a scoring output, ``bundle`` for a bundle that train or export
        writes (one of them at a time, or two writers would mix their files and hashes). ``follow``: as
        :func:`lock_path`."""
        if fcntl is None:  # pragma: no cover - Windows
            return cls(lock_path(output, follow), -1)
        remedy = f"give an {role} name" if role.startswith("-") else f"rename the {role} to a name"
        refuse_long_names(output, [output.name, lock_name(output.name)], role, remedy)
        # The folder as typed, before resolving: a dangling link in the way is refused there, not followed.
        make_folder(output.parent, f"{role} {output}")
        path = lock_path(output, follow)
        while True:
            try:
                fd = _open_lock_file(path)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise UsageError(
                        f"{path}: is a symbolic link; remove it (clsrun locks --out there)"
                    ) from e
                if e.errno in (errno.ENOENT, errno.ENOTDIR):  # a folder no file can be made in (/proc)
                    raise UsageError(f"{role} {output}: no file can be created in {path.parent}") from e
                if e.errno == errno.EISDIR:
                    raise UsageError(
                        f"{path}: is a folder; clsrun locks {role} {output} with a file of that name: move it away"
                    ) from e
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputLockedError(
                    f"{role} {output}: another run is writing it ({_holder_line(path)}); wait for it to finish, "
                    f"or stop it first"
                ) from None
            if cls._still_named(path, fd):
                break
            os.close(fd)  # locked a file that its holder had just removed: lock the new one
        lock = cls(path, fd)
        try:
            with file_errors_of(path):
                lock._describe()
        except BaseException:
            lock.release()  # a lock file that says nothing (a full disk) is not left behind
            raise
        return lock

    def held(self) -> bool:
        """Whether the lock file this process holds is still at its path: False once the output's folder
        was moved, renamed or replaced since (a rotation: ``mv out out.old; mkdir out``). A run that goes
        on then writes into a folder whose lock another run can take, so it stops instead."""
        if self._fd is None:
            return False
        return self._fd < 0 or self._still_named(self.path, self._fd)

    def folder_unchanged(self) -> bool:
        """Whether the lock's folder is still the one it was made in (when :meth:`held` is False: the lock
        file alone was removed, not the folder moved or replaced)."""
        return self._folder is not None and _identity(self.path.parent) == self._folder

    @staticmethod
    def _still_named(path: Path, fd: int) -> bool:
        try:
            on_disk = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)

    def _describe(self) -> None:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "command": " ".join(["clsrun", *sys.argv[1:]])[:500],
        }
        assert self._fd is not None
        if fcntl.fcntl(self._fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            return  # another user's lock file, opened read-only (_open_lock_file)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (json.dumps(info) + "\n").encode("utf-8"), 0)

    def release(self) -> None:
        """Remove the lock file, then let go of the lock (in that order: see the module docstring)."""
        if self._fd is None:
            return
        # PermissionError: another user's lock file in a sticky folder (/tmp) stays; the lock is still let go
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if self._fd < 0 or self._still_named(self.path, self._fd):
                self.path.unlink()
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
