"""Typed errors. Library code raises these; only the CLI turns them into exit codes and one-line messages.

Exit codes (DESIGN.md): 0 done; 1 anything else (a bug, a full disk); 2 bad usage, input that cannot be read
at all, an output locked by another run or that exists without ``--overwrite``; 3 invalid model bundle; 4
done, but more rows failed than ``--max-error-rate`` allows; 130 / 143 / 129 stopped by SIGINT / SIGTERM / SIGHUP.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class ClsrunError(Exception):
    """Base of every error clsrun reports to a user. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1


class UsageError(ClsrunError):
    """The user asked for something that cannot be done as asked (bad flag value, conflicting options)."""

    exit_code = 2


class InputError(ClsrunError):
    """An input file cannot be read at all: missing, wrong format, missing column, truncated."""

    exit_code = 2


class ResumeError(UsageError):
    """``--resume`` was asked for, but the partial output belongs to another input or model."""


class OutputLockedError(UsageError):
    """Another run holds the lock on the same output (``runtime/outlock.py``): two writers would mix it."""


class BundleBusyError(OutputLockedError):
    """A bundle failed to load while ``clsrun export`` or ``train`` held its lock: files half replaced, not
    damaged. Exit 2 with the holder named, as for an output locked by another run."""


class OutputExistsError(UsageError):
    """The output (or a checkpoint of it) exists and the run was not told to replace it (``--overwrite``)."""


class ErrorRateExceeded(ClsrunError):
    """More rows failed than ``--max-error-rate`` allows. The output and its manifest were still written:
    exit 4 tells a scheduler "done, but the input was bad" apart from a crash (1) and bad usage (2)."""

    exit_code = 4


class Interrupted(ClsrunError):
    """SIGINT or SIGTERM stopped a run at a safe point. Exits 128 + the signal number (130, 143), as a shell
    reports a process killed by that signal, so schedulers read it the same way. The message is a full
    sentence (what was saved, how to continue), printed without the ``error:`` prefix."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class BundleError(ClsrunError):
    """A model bundle is missing, damaged, incomplete or of an unknown schema."""

    exit_code = 3


class ModelNotFoundError(ClsrunError):
    """A base model (``minilm`` or a checkpoint folder) is not available locally, or its folder cannot be
    used (incomplete, pickle weights, not BERT, asks for code to run). Nothing is downloaded."""

    exit_code = 2


class ExportError(ClsrunError):
    """An export step failed."""


class AlreadyExportedError(ExportError):
    """Export refused to replace an earlier export without ``--force``: bad usage, not a failure."""

    exit_code = 2


class AccuracyGateError(ExportError):
    """One or more exported variants were refused (they lost more accuracy than allowed, or could not be
    built); the message lists every one. ``report`` is the export's report (``clsrun.export.ExportReport``),
    written before this was raised, so a caller can show every variant; None when raised without one.
    Exit 4, like :class:`ErrorRateExceeded`: the export is done (the passing variants are in place and the
    bundle runs), but not all of what was asked passed; 1 would tell a scheduler it crashed."""

    exit_code = 4
    report: object = None


class DependencyError(ClsrunError):
    """An optional dependency (an extra such as ``clsrun[train]`` or ``clsrun[ray]``) is not installed."""

    exit_code = 2


class StorageError(ClsrunError):
    """The file system refused a read or a write: permission denied, read-only, disk full, over quota.

    Not a bug, and not clsrun's to fix: the message names the path and what to do. Permission and
    read-only problems exit 2 (the path given cannot be used as asked); a full disk or quota exits 1 (the
    same command can succeed later: a scoring run keeps its checkpoint for ``--resume``).
    """


_STORAGE = {  # errno: what the file system said, and the exit code
    errno.EACCES: ("permission denied", 2),
    errno.EPERM: ("operation not permitted", 2),
    errno.EROFS: ("read-only file system", 2),
    errno.ENOSPC: ("no space left on the device", 1),
    errno.EDQUOT: ("disk quota exceeded", 1),
    errno.EFBIG: ("file too large for the process's limit (ulimit -f) or the file system", 1),
}
_LATER = (errno.ENOSPC, errno.EDQUOT)  # the same command can succeed once there is room


def needs_room(e: OSError) -> bool:
    """True for a full disk or quota: the same command can succeed once there is room."""
    return e.errno in _LATER


_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how Rust's std::io::Error prints an errno


@contextmanager
def file_errors_of(path: Path | str) -> Iterator[None]:
    """Turn a failed file write into an ``OSError`` naming ``path``, so a full disk is said of the file.

    Why: an ``OSError`` from a write through an open descriptor or inside a library (matplotlib, onnx)
    carries no file name, and :func:`storage_error` would say "a file"; libraries written in Rust
    (safetensors) raise their own exception class for an I/O failure and keep the errno only in the
    message (``... No space left on device (os error 28)``), which would read as an unexpected error
    instead of :func:`storage_error`'s one line. Anything else passes.
    """
    try:
        yield
    except OSError as e:
        if e.filename is not None or e.errno is None:
            raise
        raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from e
    except Exception as e:
        found = _RUST_OS_ERROR.search(str(e))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(path)) from e


@contextmanager
def damaged(
    path: Path | str, what: str, advice: str = "", error: type[ClsrunError] | None = None
) -> Iterator[None]:
    """Turn any failure to parse bundle file ``path`` as ``what`` into one :class:`BundleError` line:
    ``PATH: not WHAT (the parser's message on one line)ADVICE``. ``error``: another type to raise (a
    training checkpoint is :class:`ModelNotFoundError`, exit 2).

    Why every ``Exception``: each parser has its own failure types (``SafetensorError``, a bare
    ``Exception`` from ``tokenizers``, ``RecursionError`` from ``json`` on deep nesting, torch's multi-line
    ``RuntimeError`` on a shape mismatch), and a damaged model file is the bundle's fault whichever it is:
    exit 3 naming the file, not "unexpected". Use it around the parse only. A :class:`ClsrunError` (already
    typed) and ``MemoryError`` (not the file's fault) pass as they are."""
    try:
        yield
    except BundleError as e:
        if str(path) in str(e):
            raise
        raise BundleError(f"{path}: {e}") from e  # a check inside the parse that did not name the file
    except (ClsrunError, MemoryError):
        raise
    except Exception as e:
        short = resource_error(e)  # out of memory or file descriptors: not the file's fault
        if short is not None:
            raise short from e
        said = " ".join(str(e).split()) or type(e).__name__
        raise (error or BundleError)(f"{path}: not {what} ({clipped(said, 300)}){advice}") from e


def storage_problem(e: OSError) -> tuple[str, int] | None:
    """``(what the file system said, exit code)`` for an ``OSError`` that is it saying no, else None."""
    return _STORAGE.get(e.errno or 0)


def storage_error(e: OSError, where: str | None = None) -> StorageError | None:
    """The typed error for an ``OSError`` that is the file system saying no, else None (a real surprise).

    It names ``where`` when given (the caller knows the file better: Ray Data rewrites an error's file
    name, pyarrow's file systems give none), else the error's own file."""
    known = storage_problem(e)
    if known is None:
        return None
    reason, code = known
    where = where if where is not None else e.filename if e.filename is not None else "a file"
    error = StorageError(f"{where}: {reason}" + ("; free some and run again" if needs_room(e) else ""))
    error.exit_code = code
    return error


class ResourceError(ClsrunError):
    """The machine (or a limit set on the process) gave no more memory or threads. Not a bug in clsrun: the
    same command can succeed with more room (a scoring run keeps its checkpoint for ``--resume``)."""


_OUT_OF_MEMORY = (
    "give the process more memory, or use less (a smaller --window or --batch-tokens when scoring, a smaller "
    "--batch-size when training)"
)
_NO_THREAD = (
    "cannot start a thread: the limit on processes and threads (ulimit -u) or memory is reached; "
    "raise it, or run with fewer --threads/--streams"
)
# How native libraries say they ran out of address space: a shared library that cannot be mapped (an
# import under ``ulimit -v``), an allocation that failed, a thread pool that could not grow (pyarrow).
_NATIVE_OUT_OF_MEMORY = ("failed to map segment", "cannot allocate memory", "std::bad_alloc")
_NATIVE_NO_THREAD = ("failed to launch worker thread",)


def resource_error(e: BaseException) -> ResourceError | None:
    """The typed error for running out of memory, threads or file descriptors (``ulimit -v``/``-u``/``-n``,
    a cgroup), else None. None of them is the fault of the file being read or the bundle being loaded,
    so callers that turn a read failure into "cannot be read" ask this first: a damaged-model line (exit 3)
    sent an operator to the wrong place."""
    if isinstance(e, MemoryError) or (isinstance(e, OSError) and e.errno == errno.ENOMEM):
        detail = f" ({e})" if isinstance(e, MemoryError) and str(e) else ""
        return ResourceError(f"out of memory{detail}: {_OUT_OF_MEMORY}")
    if isinstance(e, OSError) and e.errno in (errno.EMFILE, errno.ENFILE):
        return ResourceError(
            "too many open files: the limit on open files (ulimit -n) is reached; raise it (ulimit -n 4096), "
            "or run with fewer --streams"
        )
    said = str(e).lower()
    if isinstance(e, RuntimeError) and "can't start new thread" in said:
        return ResourceError(_NO_THREAD)
    if isinstance(e, (ImportError, RuntimeError, OSError)) or type(e).__module__.startswith("pyarrow"):
        if any(words in said for words in _NATIVE_OUT_OF_MEMORY):
            return ResourceError(f"out of memory (a native library could not allocate): {_OUT_OF_MEMORY}")
        if any(words in said for words in _NATIVE_NO_THREAD):
            return ResourceError(_NO_THREAD)
    return None


class TrainingError(ClsrunError):
    """A training that cannot give a model: its weights or scores stopped being numbers (it diverged)."""

    exit_code = 1


class InternalError(ClsrunError):
    """An invariant of clsrun itself failed. This is a bug: the message says so."""

    def __init__(self, message: str) -> None:
        super().__init__(f"internal error (this is a bug in clsrun, please report it): {message}")


def clipped(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters with ``...`` when longer: how a message quotes a user's value
    (a text, a label) without letting a 10 MB cell become the message."""
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def install_hint(extra: str) -> str:
    """How to add an optional extra. clsrun is on no package index, so not ``pip install 'clsrun[x]'``:
    the extra is installed from the source folder, as the README's set-up does."""
    return f"pip install '.[{extra}]' in the clsrun source folder (the {extra!r} extra)"


def require(module: str, extra: str) -> None:
    """Raise :class:`DependencyError` naming ``extra`` when ``module`` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise DependencyError(f"this needs the '{module}' package: {install_hint(extra)}")
