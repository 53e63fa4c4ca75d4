"""`clsrun export BUNDLE`: ONNX variants of a bundle's model, each kept only if it passes the accuracy gate."""

from __future__ import annotations

from pathlib import Path

import typer

from clsrun.runtime.cli.app import app, reports_errors
from clsrun.runtime.cli.options import LABEL_COL, TEXT_COL, LabelCol, TextCol


@app.command("export")
@reports_errors
def export(
    bundle: Path = typer.Argument(..., help="Model bundle folder to export."),
    precision: str = typer.Option(
        "fp32,int8",
        "--precision",
        help="Comma list of fp32, int8, fp16, ov-fp32, ov-int8. fp32 is always built (the others derive from "
        "it and it is the fallback). int8 is the fast CPU variant (int8 weights: a quarter of their fp32 "
        "size); fp16 is meant for CUDA: the CPU provider runs it through inserted casts, seldom faster than fp32. "
        "ov-int8 and ov-fp32 are OpenVINO IR (needs the nncf extra): int8 weights and activations "
        "calibrated on the gate rows, a second CPU engine. Every passed variant is then timed on this CPU, "
        "and --backend auto runs the fastest.",
    ),
    max_accuracy_drop: float = typer.Option(
        1.0,
        "--max-accuracy-drop",
        metavar="PTS",
        help="Accuracy points a variant may lose against eager PyTorch on the gate rows before it is "
        "refused. Lower is safer; 0 refuses any loss, which on a few hundred rows can refuse a variant "
        "over one row.",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        metavar="",
        help="Export again over an earlier export: the variants --precision names replace the bundle's "
        "(the gate judges every one, as the first time).",
    ),
    keep_refused: bool = typer.Option(
        False,
        "--keep-refused",
        metavar="",
        help="Keep (and mark usable) variants the gate refuses on accuracy; the report still records the "
        "refusal, and predict runs them only when --precision names them. A variant that could not be built "
        "is never kept.",
    ),
    eval_data: Path | None = typer.Option(
        None,
        "--eval-data",
        exists=True,
        dir_okay=False,
        metavar="FILE",
        help="Labelled rows (CSV/TSV/JSONL/Parquet; columns text and label, or --text-col/--label-col) for the "
        "gate instead of the bundle's validation rows. More rows: a steadier verdict and a slower export.",
    ),
    per_channel: bool = typer.Option(
        True,
        "--per-channel/--per-tensor",
        metavar="",
        help="int8 weight scales per output channel (default) or one per tensor. Per-channel stays closer "
        "to fp32 at the same speed.",
    ),
    weight_type: str = typer.Option(
        "qint8",
        "--weight-type",
        help="int8 weight type: qint8 (signed, what onnxruntime's CPU kernels are tuned for) or quint8.",
    ),
    static_int8: bool | None = typer.Option(
        None,
        "--static-int8/--no-static-int8",
        metavar="",
        help="Also build static QDQ int8 calibrated on gate rows; it replaces dynamic int8 only when it "
        "passes the gate, is faster, and is at most 0.2 points less accurate than dynamic. Default: on for the char-CNN (dynamic int8 convolutions run slower "
        "than fp32 on CPU), off for BERT (slow calibration, dynamic is onnxruntime's recipe).",
        show_default=False,
    ),
    plain_layernorm: bool = typer.Option(
        True,
        "--plain-layernorm/--fused-layernorm",
        metavar="",
        help="In the int8 file, write the fused residual-add + LayerNorm nodes (SkipLayerNormalization) out as "
        "plain ONNX operators (default) or keep them: onnxruntime's CPU kernel for the fused node is slower "
        "than the plain operators (README: the int8 layer-norm comparison). Same arithmetic; the gate checks "
        "it either way.",
    ),
    max_rows: int | None = typer.Option(
        None,
        "--max-rows",
        min=1,
        help="Use at most this many gate rows, drawn from the whole file (faster export, noisier verdict).",
    ),
    text_col: TextCol = TEXT_COL,
    label_col: LabelCol = LABEL_COL,
    quiet: bool = typer.Option(
        False,
        "--quiet",
        "-q",
        help="Print no report (it is in onnx/export_report.json); warnings and errors still go to stderr.",
    ),
) -> None:
    """Export BUNDLE to ONNX (fp32, int8, fp16), fuse BERT graphs, and gate every variant on labelled rows.

    Writes onnx/model.onnx, onnx/model.int8.onnx, onnx/model.fp16.onnx, openvino/model*.xml+.bin and
    onnx/export_report.json inside the bundle. Each variant is scored as clsrun predict runs it (the runtime's runner, threads,
    streams and batches) and printed once. A variant losing more than --max-accuracy-drop points is removed
    and the command exits 4 once the passing ones are in place (unless --keep-refused); an int8 or fp16
    variant that cannot be built is refused the same way (even with --keep-refused) while the others are
    still exported; fp32 failing stops the export (exit 1). An exported bundle is not exported again
    without --force (exit 2). The runtime only uses variants the report marks as passed.
    """
    from clsrun.export import ExportOptions, Int8Options, export_bundle
    from clsrun.runtime.errors import AccuracyGateError, UsageError

    int8 = Int8Options(
        per_channel=per_channel,
        weight_type=weight_type,  # type: ignore[arg-type]
        static=static_int8,
        plain_layernorm=plain_layernorm,
    )
    precisions = tuple(p.strip() for p in precision.split(",") if p.strip())
    if eval_data is None and (text_col, label_col) != (TEXT_COL, LABEL_COL):
        raise UsageError("--text-col and --label-col name the columns of --eval-data FILE; give it too")
    options = ExportOptions(
        precisions,
        max_accuracy_drop,
        force,
        keep_refused,
        eval_data=eval_data,
        eval_columns=(text_col, label_col),
        int8=int8,
        max_rows=max_rows,
    )
    try:
        report = export_bundle(bundle, options)
    except AccuracyGateError as e:  # every variant, the refused ones too; the error line follows
        if e.report is not None and not quiet:
            typer.echo(e.report.to_text())  # type: ignore[attr-defined]
        raise
    if not quiet:
        typer.echo(report.to_text())
