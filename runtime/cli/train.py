"""`clsrun train DATA --model {charcnn|minilm|PATH} --out BUNDLE`: train a classifier and write its bundle.

Only parses options; the work is in ``clsrun.trainer`` (imported inside the command, so ``--help`` is
instant and a scoring-only install without torch still runs every other command).
Options left unset take the model kind's defaults (char-CNN: ``TrainConfig``; BERT: ``trainer.bert``).
Under ``torchrun --nproc-per-node N`` every process runs this command; only rank 0 writes the bundle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from clsrun.runtime.cli.app import app, reports_errors
from clsrun.runtime.errors import UsageError, require


def _ints(value: str | None, flag: str) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError as e:
        raise UsageError(f"{flag} must be comma-separated integers such as 64,64,64, got {value!r}") from e


@app.command("train")
@reports_errors
def train(
    data: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        help="Labelled training file: .csv/.tsv/.jsonl/.parquet (optionally .gz).",
    ),
    model: str = typer.Option(
        ...,
        "--model",
        help="charcnn: a small character CNN (fast, any language, trains in minutes on CPU); minilm: "
        "all-MiniLM-L6-v2 (English, slower, more accurate); or a local Hugging Face checkpoint folder "
        "(e.g. a copy of bert-base-chinese). Nothing is downloaded.",
    ),
    out: Path = typer.Option(..., "--out", help="Bundle folder to create (must be absent or empty)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle in --out."),
    val_data: Path | None = typer.Option(
        None,
        "--val-data",
        exists=True,
        dir_okay=False,
        help="Labelled validation file; without it a stratified --val-split of DATA is held out.",
    ),
    val_split: float | None = typer.Option(
        None,
        "--val-split",
        help="Fraction of DATA held out for validation (default 0.1): more = surer "
        "numbers, less training data.",
    ),
    text_col: str = typer.Option("text", "--text-col", help="Column holding the text."),
    label_col: str = typer.Option("label", "--label-col", help="Column holding the label."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (char-CNN 5e-3, BERT 5e-5)."),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Maximum epochs; early stopping may end sooner (char-CNN 6, BERT 3)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Rows per step per process: larger is faster per row, needs more memory."
    ),
    eval_batch_size: int | None = typer.Option(
        None, "--eval-batch-size", help="Rows per validation forward."
    ),
    max_length: int | None = typer.Option(
        None,
        "--max-length",
        help="Cut texts to this many characters (char-CNN) or tokens (BERT): longer sees more of long "
        "texts, costs time linearly (char-CNN) or worse (BERT) at training and scoring.",
    ),
    warmup: float | None = typer.Option(
        None, "--warmup", help="Learning-rate warmup: a fraction of all steps if < 1, else a step count."
    ),
    weight_decay: float | None = typer.Option(
        None,
        "--weight-decay",
        help="AdamW weight decay (never on biases/LayerNorm); more regularises harder.",
    ),
    schedule: str | None = typer.Option(
        None, "--schedule", help="Learning-rate decay: linear, cosine, cosine_with_restarts or constant."
    ),
    restarts: int | None = typer.Option(None, "--restarts", help="Cosine cycles for cosine_with_restarts."),
    grad_accum: int | None = typer.Option(
        None,
        "--grad-accum",
        help="Accumulate N batches per optimizer step: a larger effective batch in the "
        "same memory, fewer updates.",
    ),
    early_stopping_patience: int | None = typer.Option(
        None,
        "--early-stopping-patience",
        help="Stop after N epochs without a lower validation loss (0: train all epochs); the best epoch is "
        "always the one kept.",
    ),
    class_weights: str | None = typer.Option(
        None,
        "--class-weights",
        help="none, or auto: weight the loss by inverse class frequency, which helps rare classes' recall "
        "at some cost to overall accuracy.",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed for initialisation, shuffling and the split."),
    device: str | None = typer.Option(None, "--device", help="auto (CUDA when present), cpu or cuda."),
    precision: str | None = typer.Option(
        None,
        "--precision",
        help="CUDA mixed precision: auto (bf16 if supported, else fp16), bf16, fp16, fp32.",
    ),
    num_workers: int | None = typer.Option(None, "--num-workers", help="Data-loader worker processes."),
    no_logs: bool = typer.Option(False, "--no-logs", help="Do not write TensorBoard logs into BUNDLE/logs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (per-epoch lines remain)."),
    embed_dim: int | None = typer.Option(
        None, "--embed-dim", help="char-CNN: character embedding width (48)."
    ),
    channels: str | None = typer.Option(
        None,
        "--channels",
        help="char-CNN: channels per convolution, e.g. 64,64,64; wider is slower to score (128 channels "
        "scored ~3x slower for no better accuracy).",
    ),
    kernel_sizes: str | None = typer.Option(
        None, "--kernel-sizes", help="char-CNN: odd kernel width per convolution, e.g. 1,3,5."
    ),
    dropout: float | None = typer.Option(
        None, "--dropout", help="char-CNN: dropout on pooled features (0.5)."
    ),
    vocab_size: int | None = typer.Option(
        None, "--vocab-size", help="char-CNN: most frequent characters kept (6000); the rest are 'unknown'."
    ),
    pooling: str | None = typer.Option(
        None,
        "--pooling",
        help="BERT: cls ([CLS] vector, what BERT's own head uses) or mean (what sentence-transformers such "
        "as MiniLM were trained for); default auto picks by checkpoint. char-CNN: max (default) or max+mean "
        "(adds the average over the text; helps long documents, costs nothing measurable).",
    ),
    truncation: str | None = typer.Option(
        None,
        "--truncation",
        help="BERT: head keeps the first tokens of a long text; head-tail keeps the first and the last.",
    ),
    freeze_encoder: bool = typer.Option(
        False,
        "--freeze-encoder",
        help="BERT: train only the classification head on features computed once (minutes instead of tens "
        "of minutes, usually a little less accurate).",
    ),
) -> None:
    """Train a text classifier and write a model bundle (validation metrics included)."""
    require("torch", "train")
    from clsrun.trainer.config import TrainConfig
    from clsrun.trainer.data import load_split
    from clsrun.trainer.train_charcnn import CharCNNOptions, prepare_out_dir, train_charcnn

    given: dict[str, Any] = {
        "lr": lr,
        "epochs": epochs,
        "batch_size": batch_size,
        "eval_batch_size": eval_batch_size,
        "max_length": max_length,
        "warmup": warmup,
        "weight_decay": weight_decay,
        "schedule": schedule,
        "restarts": restarts,
        "grad_accum": grad_accum,
        "class_weights": class_weights,
        "seed": seed,
        "device": device,
        "precision": precision,
        "val_split": val_split,
        "num_workers": num_workers,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if early_stopping_patience is not None:
        given["early_stopping_patience"] = early_stopping_patience or None
    given["logs"] = not no_logs
    given["quiet"] = quiet
    if val_data is not None and val_split is not None:
        raise UsageError("give either --val-data or --val-split, not both")

    if model == "charcnn":
        if truncation is not None or freeze_encoder:
            raise UsageError("--truncation and --freeze-encoder apply to BERT models, not charcnn")
        config = TrainConfig(**given).validate()
        defaults = CharCNNOptions()
        options = CharCNNOptions(
            embed_dim=defaults.embed_dim if embed_dim is None else embed_dim,
            channels=_ints(channels, "--channels") or defaults.channels,
            kernel_sizes=_ints(kernel_sizes, "--kernel-sizes") or defaults.kernel_sizes,
            dropout=defaults.dropout if dropout is None else dropout,
            pooling=defaults.pooling if pooling is None else pooling,
            vocab_size=defaults.vocab_size if vocab_size is None else vocab_size,
        ).validate()
        main = os.environ.get("RANK", "0") == "0"
        if main:
            prepare_out_dir(out, force)
        split = load_split(data, val_data, config.val_split, config.seed, text_col, label_col)
        _, report = train_charcnn(split, out, config, options)
    else:
        if any(v is not None for v in (embed_dim, channels, kernel_sizes, dropout, vocab_size)):
            raise UsageError(
                "--embed-dim, --channels, --kernel-sizes, --dropout and --vocab-size apply to charcnn only"
            )
        report = _train_bert(
            data, model, out, force, val_data, text_col, label_col, given, pooling, truncation, freeze_encoder
        )
    if report is not None:
        typer.echo(f"bundle written to {out}", err=True)
        typer.echo(report.to_text())


def _train_bert(
    data: Path,
    model: str,
    out: Path,
    force: bool,
    val_data: Path | None,
    text_col: str,
    label_col: str,
    given: dict[str, Any],
    pooling: str | None,
    truncation: str | None,
    freeze_encoder: bool,
) -> Any:
    """``--model minilm|PATH``: the BERT trainer (``clsrun.trainer.bert``), then the shared bundle files."""
    require("transformers", "train")
    from clsrun.trainer.bert import BertOptions, defaults_for, train_bert
    from clsrun.trainer.config import TrainConfig
    from clsrun.trainer.data import load_split
    from clsrun.trainer.train_charcnn import prepare_out_dir

    options = BertOptions(
        model=model, pooling=pooling or "auto", truncation=truncation or "head", freeze_encoder=freeze_encoder
    ).validate()
    config = TrainConfig(**{**defaults_for(options), **given}).validate()
    if os.environ.get("RANK", "0") == "0":
        prepare_out_dir(out, force)
    split = load_split(data, val_data, config.val_split, config.seed, text_col, label_col)
    run = train_bert(split, out, config, options)
    return getattr(run, "report", None) if run.is_main_process else None
