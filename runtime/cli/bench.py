"""`clsrun bench BUNDLE --data FILE`: throughput and latency of every backend (library: ``export/bench.py``)."""

from __future__ import annotations

from pathlib import Path

import typer

from clsrun.runtime.cli.app import app, reports_errors
from clsrun.runtime.cli.options import AUTO, TEXT_COL, DeviceOpt, Quiet, TextCol, Threads

_ALL = "pipeline,torch-fp32,torch-bf16,onnx-fp32,onnx-int8,onnx-fp16,predict"


def _ints(value: str, flag: str) -> tuple[int, ...]:
    from clsrun.runtime.errors import UsageError

    try:
        out = tuple(int(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"{flag} {value!r}: expected comma-separated whole numbers, e.g. 1,4,16") from None
    if not out or min(out) < 1:
        raise UsageError(f"{flag} {value!r}: expected positive numbers")
    return out


@app.command("bench")
@reports_errors
def bench_command(
    bundle: Path = typer.Argument(..., help="Model bundle folder."),
    data: Path = typer.Option(
        ...,
        "--data",
        exists=True,
        dir_okay=False,
        help="File whose texts every backend scores (any input format).",
    ),
    backends: str = typer.Option(
        _ALL,
        "--backends",
        help="Comma-separated backends to compare. One that cannot run here (not exported, wrong device, "
        "not a BERT bundle) is listed with the reason instead of being dropped.",
    ),
    out: Path = typer.Option(
        Path("bench"), "--out", file_okay=False, help="Folder for bench.json, bench.md and the two PNG plots."
    ),
    batch_sizes: str = typer.Option(
        "1,4,16",
        "--batch-sizes",
        help="Batch sizes for the latency series. Small ones show per-request latency, large ones approach "
        "bulk throughput but take longer to measure.",
    ),
    repeats: int = typer.Option(
        3,
        "--repeats",
        help="Timed repetitions per series (median and min–max reported); more is steadier, slower.",
    ),
    max_rows: int = typer.Option(
        5000,
        "--max-rows",
        help="Score the first N non-empty texts of --data (0: all). More rows steady the figures but eager "
        "PyTorch and the pipeline are slow on long texts.",
    ),
    text_col: TextCol = TEXT_COL,
    device: DeviceOpt = AUTO,
    threads: Threads = None,
    matmul_size: int = typer.Option(
        2048,
        "--matmul-size",
        help="Side of the square matmul that measures the FLOP/s peak: larger gets closer to the true "
        "peak, smaller is quicker.",
    ),
    quiet: Quiet = False,
) -> None:
    """Measure throughput and latency of every way to run BUNDLE, on the same texts.

    Compares the transformers pipeline (BERT bundles), eager PyTorch fp32/bf16, onnxruntime fp32/int8 (fp16 on CUDA) and the real predict path: rows/s and tokens/s, latency percentiles per batch size, padding, FLOP/s against a matmul peak measured in the same run, peak memory. Every backend and the matmul peak use --threads threads. Writes bench.json, bench.md and two PNG plots. Needs the train extra (torch, matplotlib).
    """
    from clsrun.runtime.errors import require

    require("torch", "train")
    require("matplotlib", "train")
    from clsrun.export.bench import BenchConfig, run_bench
    from clsrun.export.bench_report import write_report

    config = BenchConfig(
        bundle=bundle,
        data=data,
        text_col=text_col,
        backends=tuple(b.strip() for b in backends.split(",") if b.strip()),
        batch_sizes=_ints(batch_sizes, "--batch-sizes"),
        repeats=repeats,
        max_rows=max_rows,
        device=device,
        threads=threads,
        matmul_n=matmul_size,
    )
    report = run_bench(config, progress=None if quiet else lambda msg: typer.echo(msg, err=True))
    paths = write_report(report, out)
    typer.echo(paths["markdown"].read_text(encoding="utf-8"))
    typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))
