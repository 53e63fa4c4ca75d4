"""``clsrun bench``: throughput and latency of every way to run a bundle, measured on the same texts.

Measurement, not a stage: it may import the runtime, export and the trainer, and nothing imports it but
the ``clsrun bench`` command body (``tests/test_layout.py`` checks both). One run, in file order:
``config.py`` (what to measure) -> ``inputs.py`` (the texts, tokenized and batched once, as predict batches
them) -> ``machine.py`` (the machine and a measured matmul peak) -> ``flops.py`` (FLOPs of the model) ->
``backends.py`` (each way to run it) -> ``timing.py`` and ``memory.py`` (what is measured) -> ``run.py``
(:func:`run_bench`, the report) -> ``report.py`` and ``plots.py`` (:func:`write_report`).

Needs the ``train`` extra (torch, transformers, matplotlib, psutil).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clsrun.bench.config import BACKENDS, BenchConfig
from clsrun.bench.report import write_report
from clsrun.bench.run import BackendResult, BenchReport, run_bench

__all__ = [
    "BACKENDS",
    "BackendResult",
    "BenchConfig",
    "BenchReport",
    "Written",
    "bench",
    "run_bench",
    "write_report",
]


@dataclass(frozen=True)
class Written:
    """What :func:`bench` measured and wrote."""

    report: BenchReport
    markdown: str  # bench.md's text
    paths: dict[str, Path]  # json, markdown, throughput_png, latency_png


def bench(config: BenchConfig, out_dir: Path | str, progress: Callable[[str], None] | None = None) -> Written:
    """Measure every backend ``config`` names (:func:`run_bench`) and write the report into ``out_dir``
    (:func:`write_report`); ``progress`` gets one line per step. The one call behind ``clsrun bench``."""
    from clsrun.runtime.errors import require

    for module in ("torch", "transformers", "matplotlib", "psutil"):
        require(module, "train")
    from clsrun.runtime.files import missing_folders, remove_if_empty

    made = missing_folders(Path(out_dir))
    try:
        _check_out(Path(out_dir), Path(config.bundle))
        report = run_bench(config, progress)
        paths = write_report(report, out_dir)
    except BaseException:
        remove_if_empty(made)  # a bench that failed (no rows, a stop) leaves no folder it made for --out
        raise
    return Written(report, paths["markdown"].read_text(encoding="utf-8"), paths)


def _check_out(out_dir: Path, bundle: Path) -> None:
    """Refuse now an ``out_dir`` the report cannot go to: it was found only after every backend had been
    measured (minutes of a MiniLM run lost, "bench: permission denied" read like the command's name). Inside
    the model bundle it is refused as predict refuses it: a later ``train --force`` would not replace that
    bundle, and the files are not the bundle's."""
    import tempfile

    from clsrun.bench.report import REPORT_FILES
    from clsrun.runtime.bundle import inside_bundle
    from clsrun.runtime.errors import UsageError
    from clsrun.runtime.files import make_folder, refuse_others_in_sticky_folder

    if inside_bundle(out_dir, bundle):
        raise UsageError(f"--out {out_dir}: is inside the model bundle {bundle}; write the report elsewhere")
    try:
        make_folder(out_dir, f"--out {out_dir}")
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise UsageError(
            f"--out {out_dir}: cannot write there ({e.strerror or e}); choose another folder"
        ) from e
    refuse_others_in_sticky_folder([out_dir / name for name in REPORT_FILES])  # another user's report
