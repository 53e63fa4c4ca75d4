"""`clsrun train DATA --model {ngram|charcnn|minilm|PATH} --out BUNDLE`: train a classifier and write its bundle.

Maps flags to the arguments of :func:`clsrun.trainer.train` and makes that one call (imported inside the
command, so ``--help`` is instant and a scoring-only install without torch still runs every other command).
Flags left unset are not passed: the model kind's defaults apply (``clsrun.trainer.options``), and the
kind's options check their own flags. The flags other commands take too (``--text-col``, ``--label-col``,
``--device``, ``--quiet``) are the shared aliases of ``options.py``: one meaning and one default everywhere.
Under ``torchrun --nproc-per-node N`` every process runs this command; only rank 0 writes the bundle and
prints the report.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clsrun.runtime.cli.app import app, reports_errors
from clsrun.runtime.cli.options import (
    AUTO,
    LABEL_COL,
    TEXT_COL,
    DeviceOpt,
    LabelCol,
    Quiet,
    TextCol,
    flag,
    int_list,
)

if TYPE_CHECKING:
    from clsrun.runtime.metrics import ClassificationReport


def _set(**values: Any) -> dict[str, Any]:
    """The flags the user set (typer gives None for the others)."""
    return {name: value for name, value in values.items() if value is not None}


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
        help="ngram: hashed character/word n-grams with TF-IDF weights and a linear head (any language, "
        "the fastest to train on CPU and to score; at least as accurate as TF-IDF + logistic regression); "
        "charcnn: a small character CNN; minilm: all-MiniLM-L6-v2 (English, slower, more accurate); or a "
        "local Hugging Face checkpoint folder (e.g. a copy of bert-base-chinese). Nothing is downloaded.",
    ),
    out: Path = typer.Option(..., "--out", help="Bundle folder to create (must be absent or empty)."),
    force: Annotated[bool, flag("--force", help="Replace an existing bundle in --out.")] = False,
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
    text_col: TextCol = TEXT_COL,
    label_col: LabelCol = LABEL_COL,
    lr: float | None = typer.Option(
        None, "--lr", help="Peak learning rate (n-gram 2e-2, char-CNN 5e-3, BERT 1e-4)."
    ),
    epochs: int | None = typer.Option(
        None,
        "--epochs",
        help="Maximum epochs; early stopping may end sooner (n-gram 10, char-CNN 6, BERT 2; a char-CNN on "
        "few rows gets up to 40 epochs, for 1000 optimizer steps).",
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        help="Rows per step per process: larger is faster per row, needs more memory (n-gram 64, char-CNN 64, "
        "BERT 16, --freeze-encoder 32).",
    ),
    eval_batch_size: int | None = typer.Option(
        None,
        "--eval-batch-size",
        help="Rows per validation forward (n-gram 512, char-CNN 256, BERT 64).",
    ),
    max_length: int | None = typer.Option(
        None,
        "--max-length",
        help="Cut texts to this many characters (n-gram 20000; char-CNN: the training texts' 90th-percentile "
        "length within 256-1024) or tokens (BERT 256, or the checkpoint's positions when fewer): longer sees more of long texts, costs time linearly "
        "(n-gram, char-CNN) or worse (BERT) at training and scoring.",
    ),
    warmup: float | None = typer.Option(
        None,
        "--warmup",
        help="Learning-rate warmup: a fraction of all steps if < 1, else a step count (n-gram 0, char-CNN "
        "0.05, BERT 0.1).",
    ),
    weight_decay: float | None = typer.Option(
        None,
        "--weight-decay",
        help="AdamW weight decay (never on biases/LayerNorm); more regularises harder (n-gram 0, else 0.01).",
    ),
    schedule: str | None = typer.Option(
        None,
        "--schedule",
        help="Learning-rate decay: linear (default), cosine, cosine_with_restarts or constant.",
    ),
    restarts: int | None = typer.Option(
        None, "--restarts", help="Cosine cycles for cosine_with_restarts (default 2)."
    ),
    grad_accum: int | None = typer.Option(
        None,
        "--grad-accum",
        help="Accumulate N batches per optimizer step: a larger effective batch in the "
        "same memory, fewer updates (default 1).",
    ),
    early_stopping_patience: int | None = typer.Option(
        None,
        "--early-stopping-patience",
        help="Stop after N epochs without a lower validation loss (0: train all epochs); the best epoch is "
        "always the one kept (default 2, --freeze-encoder 20).",
    ),
    class_weights: str | None = typer.Option(
        None,
        "--class-weights",
        help="none, or auto: weight the loss by inverse class frequency, which helps rare classes' recall "
        "(the run is then judged by macro-F1). Default: auto when, among the training rows (after the "
        "validation split), the most common label has 4x the rows of the rarest or more, else none.",
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Seed for initialisation, shuffling and the split (default 42)."
    ),
    device: DeviceOpt = AUTO,
    precision: str | None = typer.Option(
        None,
        "--precision",
        help="Mixed precision of training on CUDA: auto (bf16 if supported, else fp16), bf16, fp16, fp32; "
        "CPU trains in fp32. (Not predict's --precision, which picks an exported variant.)",
    ),
    num_workers: int | None = typer.Option(
        None, "--num-workers", help="Data-loader worker processes (default 0: load in the training process)."
    ),
    no_logs: Annotated[
        bool, flag("--no-logs", help="Do not write TensorBoard logs into BUNDLE/logs.")
    ] = False,
    no_baseline: Annotated[
        bool,
        flag(
            "--no-baseline",
            help="Do not fit the TF-IDF + logistic regression baseline that the report compares the model "
            "with (it runs beside training in its own process; skipping it saves that CPU time).",
        ),
    ] = False,
    quiet: Quiet = False,
    embed_dim: int | None = typer.Option(
        None, "--embed-dim", help="char-CNN: character embedding width (48)."
    ),
    channels: str | None = typer.Option(
        None,
        "--channels",
        help="char-CNN: channels per convolution, e.g. 64,64,64; wider is slower to score.",
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
        "(adds the average over the text; helps long documents).",
    ),
    truncation: str | None = typer.Option(
        None,
        "--truncation",
        help="BERT: head keeps the first tokens of a long text; head-tail keeps the first and the last (an "
        "ending often carries the verdict). Default auto: head-tail when a fifth or more of the training "
        "texts are longer than --max-length, else head; the choice is recorded and scoring cuts the same way.",
    ),
    char_ngrams: str | None = typer.Option(
        None,
        "--char-ngrams",
        help="ngram: shortest,longest character n-gram, e.g. 1,3 (default by script: 1,3 for CJK text, "
        "2,4 otherwise); longer n-grams add features, not always accuracy.",
    ),
    word_ngrams: int | None = typer.Option(
        None,
        "--word-ngrams",
        help="ngram: 0 no words, 1 words, 2 words and word pairs (default by script: 0 for CJK text, 2 "
        "otherwise).",
    ),
    bucket_bits: int | None = typer.Option(
        None,
        "--bucket-bits",
        help="ngram: hash n-grams into 2**N buckets (default 20, 22 for long texts as --tf auto decides); fewer "
        "buckets share more n-grams per bucket.",
    ),
    min_df: int | None = typer.Option(
        None, "--min-df", help="ngram: keep n-grams found in at least N training texts (2); 1 keeps noise."
    ),
    max_features: int | None = typer.Option(
        None,
        "--max-features",
        help="ngram: keep at most N n-gram buckets, most frequent first (500000): a smaller bundle and a "
        "faster fit, usually a little less accurate.",
    ),
    tf: str | None = typer.Option(
        None,
        "--tf",
        help="ngram: term frequency: raw (each occurrence counts), sublinear (1 + ln count: repeats in long "
        "texts weigh less) or auto (default: sublinear when training texts average 500+ characters). "
        "Recorded in the bundle; scoring weighs the same way.",
    ),
    fit: str | None = typer.Option(
        None,
        "--fit",
        help="ngram: best (fit logistic regression and AdamW on the same features, keep the better on "
        "validation), logreg or torch (only that one: faster).",
    ),
    logreg_c: float | None = typer.Option(
        None, "--logreg-c", help="ngram: inverse L2 strength of the logistic-regression fit (10)."
    ),
    freeze_encoder: Annotated[
        bool,
        flag(
            "--freeze-encoder",
            help="BERT: train only the classification head on features computed once (faster to train, "
            "usually a little less accurate).",
        ),
    ] = False,
    allow_unreadable: Annotated[
        bool,
        flag(
            "--allow-unreadable",
            help="BERT: train even when half the data's tokens or more are [UNK] (the checkpoint's vocabulary "
            "does not cover the text's language); refused otherwise, as such a model cannot read its input.",
        ),
    ] = False,
) -> None:
    """Train a text classifier and write a model bundle (validation metrics included)."""
    from clsrun.trainer import DataOptions
    from clsrun.trainer import train as train_bundle
    from clsrun.trainer.baseline import comparison

    config = _set(
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        max_length=max_length,
        warmup=warmup,
        weight_decay=weight_decay,
        schedule=schedule,
        restarts=restarts,
        grad_accum=grad_accum,
        class_weights=class_weights,
        seed=seed,
        device=None if device == AUTO else device,  # the default: not a setting the user made
        precision=precision,
        num_workers=num_workers,
        logs=not no_logs,
        quiet=quiet,
    )
    if early_stopping_patience is not None:
        config["early_stopping_patience"] = early_stopping_patience or None  # 0 turns it off
    options = _set(
        embed_dim=embed_dim,
        channels=None if channels is None else int_list(channels, "--channels", "64,64,64"),
        kernel_sizes=None if kernel_sizes is None else int_list(kernel_sizes, "--kernel-sizes", "1,3,5"),
        dropout=dropout,
        vocab_size=vocab_size,
        pooling=pooling,
        truncation=truncation,
        freeze_encoder=freeze_encoder or None,
        allow_unreadable=allow_unreadable or None,
        char_ngrams=None if char_ngrams is None else int_list(char_ngrams, "--char-ngrams", "1,3"),
        word_ngrams=word_ngrams,
        bucket_bits=bucket_bits,
        min_df=min_df,
        max_features=max_features,
        tf=tf,
        fit=fit,
        logreg_c=logreg_c,
    )
    where = DataOptions(val_data=val_data, val_split=val_split, text_col=text_col, label_col=label_col)
    result = train_bundle(
        data,
        out,
        model=model,
        config=config,
        options=options,
        data_options=where,
        force=force,
        baseline=not no_baseline,
    )
    if result.report is not None:
        versus = "" if result.baseline is None else comparison(result.report, result.baseline, result.kind)
        _say(result.report, versus, out, quiet)


def _say(report: ClassificationReport, versus: str, out: Path, quiet: bool) -> None:
    """Where the bundle went (stderr), then the validation report and its comparison with the baseline."""
    if not quiet:
        typer.echo(f"bundle written to {out}", err=True)
    _print(report.to_text() + (f"\n\n{versus}" if versus else ""))


def _print(text: str) -> None:
    """``text`` on stdout. A reader that stops early (``clsrun train ... | head -1``) is no failure: the
    bundle is written. stdout then points at /dev/null, or Python would fail again flushing it at exit."""
    try:
        typer.echo(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
