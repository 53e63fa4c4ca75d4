"""Which exported variant is fastest on this CPU: measured, never assumed.

``--backend auto`` / ``--precision auto`` on CPU run the fastest variant that passed the export gate
(:func:`fastest`). The speeds come from, in order:

1. the export report's ``speeds``, when export ran on a CPU with the same model name and flag set
   (:func:`cpu_key`): export times every passed variant on the gate rows, alternating, median of rounds;
2. the speeds cache (``$CLSRUN_CACHE_DIR``, else ``$XDG_CACHE_HOME/clsrun``, else ``~/.cache/clsrun``:
   ``speeds.json``, keyed by bundle digest and CPU key), written by 3;
3. a measurement now, on the bundle's first :data:`SPEED_ROWS` validation rows (once per
   bundle and CPU), then written to the cache.

A bundle without validation rows cannot be measured: its variants are then taken in export order
(int8 before fp32), and the choice says so. Speeds are rows/s of :meth:`Classifier.predict` (normalise,
tokenize, batch, infer, softmax), each variant with the same threads and its default streams.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clsrun.runtime.files import atomic_write_text
from clsrun.runtime.machine import cpu_info

if TYPE_CHECKING:
    from clsrun.runtime.bundle import Bundle
    from clsrun.runtime.variant import Choice

log = logging.getLogger(__name__)

# Rows each variant is timed on (the first gate rows at export, the first validation rows at first use)
# and alternating rounds (the median of each variant's rounds counts): enough to rank engines whose speeds
# differ by more than the noise, cheap enough for an export of a BERT bundle on two busy cores.
SPEED_ROWS = 64
SPEED_ROUNDS = 3
CACHE_FILE = "speeds.json"


def cpu_key() -> str:
    """This CPU's model name and a short hash of its flag set: speeds measured under one key hold for it."""
    info = cpu_info()
    flags = hashlib.sha256(" ".join(sorted(info.flags)).encode()).hexdigest()[:12]
    return f"{info.model} [flags {flags}]"


def cache_path() -> Path | None:
    """Where first-use measurements are kept (see the module doc); None for a user without a home folder
    (no ``HOME`` and no passwd entry, as in a container or under systemd's DynamicUser, where Python's
    ``Path.home()`` raises RuntimeError; or a home that does not exist, ``/nonexistent``, which a root job
    made): the speeds are measured again each run, as with a cache that cannot be written."""
    root = os.environ.get("CLSRUN_CACHE_DIR")
    if root:
        return Path(root) / CACHE_FILE
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is ignored (it wrote into the job's folder)
        try:
            home = Path.home()
        except RuntimeError:
            return None
        if not home.is_dir():  # HOME=/nonexistent, the "no home" of service accounts: not made for a cache
            return None
        base = str(home / ".cache")
    return Path(base) / "clsrun" / CACHE_FILE


def measure(
    bundle: Bundle, choices: Sequence[Choice], texts: list[str], rounds: int, threads: int | None = None
) -> dict[str, float]:
    """Median rows/s of each choice scoring ``texts`` with ``Classifier.predict``, rounds alternating
    between the choices (so a change in the machine's load falls on all of them); one untimed warm-up each.
    """
    from clsrun.runtime.classifier import Classifier

    opened = {c.key: Classifier.open(bundle, c, threads) for c in choices}
    for clf in opened.values():
        clf.predict(texts[:8])  # first-call costs (kernel selection, shape compilation): not timed
    calls = {key: functools.partial(clf.predict, texts) for key, clf in opened.items()}
    return alternating_rates(calls, len(texts), rounds)


def alternating_rates(calls: Mapping[str, Callable[[], object]], rows: int, rounds: int) -> dict[str, float]:
    """Median rows/s of each call (each one scores ``rows`` rows) over ``rounds`` rounds that alternate
    between the calls, so a change in the machine's load falls on all of them."""
    rates: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            rates[key].append(rows / max(time.perf_counter() - start, 1e-9))
    return {key: round(statistics.median(r), 1) for key, r in rates.items()}


@dataclass(frozen=True)
class Speeds:
    """Rows/s per variant key (``onnx-int8``, ``openvino-int8``) on this CPU, and where they come from."""

    rows_per_s: dict[str, float]
    source: str


def recorded_speeds(bundle: Bundle, keys: set[str]) -> Speeds | None:
    """Speeds of every variant in ``keys`` measured on this CPU, from the export report or the cache."""
    here = cpu_key()
    report = (bundle.export_report() or {}).get("speeds") or {}
    if report.get("cpu") == here and keys <= set(report.get("rows_per_s") or {}):
        return Speeds(dict(report["rows_per_s"]), "measured at export on this CPU")
    entry = _cached_rates(bundle.digest, here)
    if keys <= set(entry):
        return Speeds(entry, f"measured at first use on this CPU (cached in {cache_path()})")
    return None


def _cached_rates(digest: str, here: str) -> dict[str, float]:
    """This bundle's cached speeds on this CPU; an entry that is not variant -> number (a damaged or
    hand-edited cache) is no entry: the cache is a hint, measured again rather than trusted."""
    from clsrun.runtime.bundle import is_rate_table

    by_cpu = _read_cache().get(digest)
    entry = by_cpu.get(here) if isinstance(by_cpu, dict) else None
    return {str(k): float(v) for k, v in entry.items()} if is_rate_table(entry) else {}


def speeds_here(bundle: Bundle, choices: Sequence[Choice]) -> Speeds | None:
    """The speeds of ``choices`` on this CPU: recorded ones, else measured now and cached; None when the
    bundle has no validation rows to measure with."""
    found = recorded_speeds(bundle, {c.key for c in choices})
    if found is not None:
        return found
    texts = _validation_texts(bundle)
    if not texts:
        return None
    log.warning(
        "note: timing %d variants of %s once on this CPU to pick the fastest", len(choices), bundle.root
    )
    rates = measure(bundle, choices, texts, SPEED_ROUNDS)
    _write_cache(bundle.digest, rates)
    return Speeds(rates, f"measured now on {len(texts)} validation rows (first use on this CPU)")


def fastest(bundle: Bundle, candidates: Sequence[Choice]) -> Choice:
    """The fastest of ``candidates`` on this machine, its ``reason`` naming the figures that decided."""
    if candidates[0].device != "cpu":
        return replace(candidates[0], reason="on CUDA: fp16 first, then fp32 (not measured)")
    speeds = speeds_here(bundle, candidates)
    if speeds is None:
        return replace(
            candidates[0], reason="no validation rows to measure speed with: int8 before fp32 (not measured)"
        )
    rates = speeds.rows_per_s
    best = max(candidates, key=lambda c: rates[c.key])
    figures = ", ".join(f"{c.key} {rates[c.key]:g}" for c in sorted(candidates, key=lambda c: -rates[c.key]))
    return replace(best, reason=f"fastest passed variant, rows/s {speeds.source}: {figures}")


def _validation_texts(bundle: Bundle) -> list[str]:
    """The first :data:`SPEED_ROWS` texts of the bundle's validation rows (none when it has none)."""
    from clsrun.runtime.bundle import VALIDATION_FILE
    from clsrun.runtime.labelled import read_labelled

    if not bundle.has(VALIDATION_FILE):
        return []
    return read_labelled(bundle.file(VALIDATION_FILE)).texts[:SPEED_ROWS]


def _read_cache() -> dict[str, Any]:
    path = cache_path()
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(digest: str, rates: dict[str, float]) -> None:
    """Add this bundle's speeds on this CPU to the cache; a cache that cannot be written is only noted."""
    data = _read_cache()
    if not isinstance(data.get(digest), dict):
        data[digest] = {}  # a damaged entry is replaced
    data[digest][cpu_key()] = rates
    path = cache_path()
    if path is None:
        log.warning(
            "note: could not cache measured speeds (this user has no home folder): they will be measured again; "
            "CLSRUN_CACHE_DIR names a folder for them"
        )
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    except OSError as e:
        log.warning(
            "note: could not cache measured speeds in %s (%s): they will be measured again; CLSRUN_CACHE_DIR "
            "names another folder for them",
            path,
            e,
        )
