"""`clsrun bench BUNDLE --data FILE`: throughput and latency of every backend (library: ``clsrun.bench``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clsrun.runtime.cli.app import app, reports_errors
from clsrun.runtime.cli.options import AUTO, TEXT_COL, DeviceOpt, Quiet, TextCol, Threads, int_list

_ALL = "pipeline,torch-fp32,torch-bf16,onnx-fp32,onnx-int8,onnx-fp16,predict"


@app.command("bench")
@reports_errors
def bench_command(
    bundle: Annotated[Path, typer.Argument(help="Model bundle folder.")],
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            exists=True,
            dir_okay=False,
            help="File whose texts every backend scores (any input format).",
        ),
    ],
    backends: Annotated[
        str,
        typer.Option(
            "--backends",
            help="Comma-separated backends to compare. One that cannot run here (not exported, wrong device, "
            "not a BERT bundle) is listed with the reason instead of being dropped. Default: all of "
            + ", ".join(_ALL.split(","))
            + "; openvino-int8 (a bundle's OpenVINO variant; needs the openvino extra) when named.",
            show_default=False,  # the default as one unbreakable word was cut at the terminal's width
        ),
    ] = _ALL,
    out: Annotated[
        Path,
        typer.Option("--out", file_okay=False, help="Folder for bench.json, bench.md and the two PNG plots."),
    ] = Path("bench"),
    batch_sizes: Annotated[
        str,
        typer.Option(
            "--batch-sizes",
            help="Batch sizes for the latency series. Small ones show per-request latency, large ones approach "
            "bulk throughput but take longer to measure.",
        ),
    ] = "1,4,16",
    repeats: Annotated[
        int,
        typer.Option(
            "--repeats",
            min=1,
            help="Timed repetitions per series (median and min–max reported); more is steadier, slower.",
        ),
    ] = 3,
    max_rows: Annotated[
        int,
        typer.Option(
            "--max-rows",
            min=0,
            help="Score the first N non-empty texts of --data (0: all). More rows steady the figures but eager "
            "PyTorch and the pipeline are slow on long texts.",
        ),
    ] = 5000,
    text_col: TextCol = TEXT_COL,
    device: DeviceOpt = AUTO,
    threads: Threads = None,
    matmul_size: Annotated[
        int,
        typer.Option(
            "--matmul-size",
            min=1,
            help="Side of the square matmul that measures the FLOP/s peak: larger gets closer to the true "
            "peak, smaller is quicker.",
        ),
    ] = 2048,
    quiet: Quiet = False,
) -> None:
    """Measure throughput and latency of every way to run BUNDLE, on the same texts.

    Compares the transformers pipeline (BERT bundles), eager PyTorch fp32/bf16, onnxruntime fp32/int8 (fp16 on CUDA) and the real predict path: rows/s and tokens/s, latency percentiles per batch size, padding, FLOP/s against a matmul peak measured in the same run, peak memory. Every backend and the matmul peak use --threads threads. Writes bench.json, bench.md and two PNG plots; bench.md says how each figure was measured. Needs the train extra (torch, matplotlib).
    """
    from clsrun.bench import BenchConfig, bench

    config = BenchConfig(
        bundle=bundle,
        data=data,
        text_col=text_col,
        backends=tuple(b.strip() for b in backends.split(",") if b.strip()),
        batch_sizes=int_list(batch_sizes, "--batch-sizes", "1,4,16"),
        repeats=repeats,
        max_rows=max_rows,
        device=device,
        threads=threads,
        matmul_n=matmul_size,
    )
    written = bench(config, out, progress=None if quiet else lambda msg: typer.echo(msg, err=True))
    typer.echo(written.markdown)
    typer.echo("wrote " + ", ".join(str(p) for p in written.paths.values()))
