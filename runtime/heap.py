"""Let a scoring process reuse the memory it frees, instead of handing it back to the kernel each window.

Every window of a run allocates the same large numpy temporaries (code points, hashes, ids, weights: a few
MB each) and frees them. glibc's malloc serves a block that large with its own ``mmap`` and unmaps it on
``free`` until its adaptive threshold has grown past the block's size, and the threads' arenas give free
memory at their top back with ``madvise``; either way the next window faults the same pages in again, each
one zeroed by the kernel. :func:`keep_freed_memory` fixes both thresholds once, so blocks up to
:data:`MMAP_THRESHOLD` come from the arenas and up to :data:`TRIM_THRESHOLD` stays in each for the next
window (README: n-gram scoring, for the page faults and rows/s it saves). Both must be set: a fixed trim
threshold alone also turns the adaptive mmap threshold off, leaving it at 128 KiB.

Written by hand because nothing sets ``mallopt`` from Python; glibc only (elsewhere it does nothing). It is
the process owner's decision (the command line's), never a library call's: it changes the whole process.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # the largest block served from an arena: glibc's own ceiling for its adaptive one
TRIM_THRESHOLD = 64 << 20  # free memory an arena keeps at its top: twice that, as glibc's adaptive rule keeps


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (``mallopt`` exists elsewhere too, with other parameters)."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        return ctypes.CDLL(None)
    except (ValueError, OSError, AttributeError):  # no such confstr name here, or no C library to open
        return None


def keep_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; True when both were set."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
