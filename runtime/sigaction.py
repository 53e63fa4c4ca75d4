"""Run clsrun's SIGINT/SIGTERM handler on the interrupted thread's own stack, never an alternate one.

CPython installs every Python signal handler with ``SA_ONSTACK``: the kernel then builds the signal frame
on the thread's alternate signal stack, when the thread has one. Native libraries set such stacks on the
threads they run on, and OpenVINO's CPU plugin sets one on the calling thread for each compiled model and
puts back the one it found when the model goes: models freed in another order than they were made leave
the main thread pointing at a stack that is already freed, and the next SIGINT or SIGTERM is then a
segmentation fault instead of a stop (it happened after an export that built two OpenVINO variants).
Without ``SA_ONSTACK`` the handler runs on the thread's ordinary stack, whatever a library left: Python's
handler only notes the signal, so it needs no more stack than any C call.

Python has no call to change a handler's flags, so :func:`on_thread_stack` rewrites them with
``sigaction(2)`` through ctypes, on Linux for x86-64 and arm64 with glibc or musl (whose ``struct sigaction``
is laid out alike there); elsewhere it does nothing and the default stays.
"""

from __future__ import annotations

import ctypes
import platform
import sys

SA_ONSTACK = 0x08000000  # Linux, every architecture


class _SigAction(ctypes.Structure):
    """``struct sigaction`` of glibc and musl on Linux: handler, 1024-bit mask, flags, restorer."""

    _fields_ = [
        ("handler", ctypes.c_void_p),
        ("mask", ctypes.c_ulong * (1024 // (8 * ctypes.sizeof(ctypes.c_ulong)))),
        ("flags", ctypes.c_int),
        ("restorer", ctypes.c_void_p),
    ]


def _libc() -> ctypes.CDLL | None:
    """libc on Linux for x86-64 and arm64, where ``struct sigaction`` and ``SA_ONSTACK`` are as above."""
    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "aarch64"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def on_thread_stack(signum: int) -> bool:
    """Clear ``SA_ONSTACK`` from the handler now installed for ``signum``; True when it was cleared (or
    not set), False where this platform cannot (then nothing changed)."""
    if _LIBC is None:
        return False
    action = _SigAction()
    if _LIBC.sigaction(signum, None, ctypes.byref(action)) != 0:
        return False
    if action.flags & SA_ONSTACK:
        action.flags &= ~SA_ONSTACK
        if _LIBC.sigaction(signum, ctypes.byref(action), None) != 0:
            return False
    return True
