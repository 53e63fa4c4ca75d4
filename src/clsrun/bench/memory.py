"""Peak memory of a backend: this process's resident set, sampled by a background thread while it runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

SAMPLE_SECONDS = 0.005  # how often the resident set is read; a short spike between two reads is missed


@contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """Sample this process's RSS while the block runs; the dict gets ``baseline_mib`` and ``peak_mib`` at exit."""
    import psutil

    proc = psutil.Process()
    out = {"baseline_mib": proc.memory_info().rss / 2**20}
    peak = [out["baseline_mib"]]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_SECONDS):
            peak[0] = max(peak[0], proc.memory_info().rss / 2**20)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        out["peak_mib"] = max(peak[0], proc.memory_info().rss / 2**20)
