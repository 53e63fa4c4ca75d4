"""Options shared by several commands, declared once: a flag means the same thing, with the same default
and the same help, in every command that takes it.

Each alias is an ``Annotated`` type for a command parameter, e.g. ``threads: Threads = None``. Choices are
the library's ``Literal`` types (``variant.Backend`` ...), so ``--help`` lists them and typer refuses
anything else before a command runs. ``None`` means "the library picks" (threads, streams, batch tokens).

The other defaults are written once, below; each is the library's own default (a test checks that they
agree). They are not imported from the modules that own them, because those load pyarrow and numpy and
``--help`` must stay instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final

import typer

from clsrun.runtime.errors import UsageError
from clsrun.runtime.variant import Backend, Device, Precision

AUTO: Final = "auto"  # --backend, --precision, --device (Variant)
TEXT_COL = "text"  # --text-col (ReadOptions, read_labelled)
LABEL_COL = "label"  # --label-col (read_labelled)
WINDOW = 8192  # --window (BatchOptions)


def flag(*names: str, help: str) -> Any:
    """A boolean option given as ``--name`` alone: no value follows it, so ``--help`` shows none."""
    return typer.Option(*names, metavar="", help=help)


def int_list(value: str, flag: str, example: str) -> tuple[int, ...]:
    """``"64,64,64"`` -> ``(64, 64, 64)``: the comma list of positive integers given to ``flag``."""
    try:
        numbers = tuple(int(x) for x in value.split(",") if x.strip())
    except ValueError:
        numbers = ()
    if not numbers or min(numbers) < 1:
        raise UsageError(f"{flag} must be comma-separated integers above 0 such as {example}, got {value!r}")
    return numbers


Model = Annotated[
    Path | None,
    typer.Option("--model", help="Model bundle folder. Default: the model shipped with clsrun."),
]
TextCol = Annotated[str, typer.Option("--text-col", help="Column (or JSON field) holding the text.")]
IdCol = Annotated[
    str | None,
    typer.Option(
        "--id-col", help="Column copied to the output's id column. Default: the 0-based row number."
    ),
]
LabelCol = Annotated[str, typer.Option("--label-col", help="Column holding the true label.")]
Delimiter = Annotated[
    str | None,
    typer.Option(
        "--delimiter",
        help="CSV/TSV field separator: one character, or comma, tab, semicolon, pipe. Default: the "
        "extension's (',' or tab); a header that only another of these splits into the columns asked for "
        "is read with that one, said on stderr.",
    ),
]
TsvQuotes = Annotated[
    bool,
    flag(
        "--tsv-quotes",
        help="Read '\"' in a .tsv file as quoting (cells holding tabs or newlines). Off by default: a cell "
        "that opens a quote and never closes it would swallow the lines after it.",
    ),
]

BackendOpt = Annotated[
    Backend,
    typer.Option(
        "--backend",
        help="auto runs the exported variant measured fastest on this CPU (at export, or once at first "
        "use on another CPU; the manifest says which and why), eager PyTorch for a bundle never exported, "
        "and torch on a GPU that onnxruntime cannot use (no onnxruntime-gpu) but torch can; onnx and "
        "openvino (needs the openvino extra) run that engine's exported variants; torch is the eager model "
        "(needs the train extra; the reference the export gate compares with; on CUDA fp16 weights and "
        "large batches kept on the GPU).",
    ),
]
PrecisionOpt = Annotated[
    Precision,
    typer.Option(
        "--precision",
        help="auto: the fastest variant that passed the gate, measured on this CPU; fp16 on CUDA; fp32 is "
        "the exact reference. ONNX runs only variants that passed the export accuracy gate; bf16 is for "
        "--backend torch.",
    ),
]
DeviceOpt = Annotated[
    Device,
    typer.Option(
        "--device",
        help="auto uses CUDA when it can (onnxruntime-gpu for ONNX; torch with CUDA for the torch backend "
        "and for training); cuda refuses to start without one.",
    ),
]
Threads = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="Inference threads. Default: every core this process may use. Fewer leave cores for other jobs.",
    ),
]
Streams = Annotated[
    int | None,
    typer.Option(
        "--streams",
        min=1,
        help="Batches scored at once, each on threads/streams cores, sharing one copy of the model. "
        "Default: one per thread for ONNX on CPU (no hand-offs between threads inside each batch), one on "
        "CUDA and for the torch backend. Each stream holds one batch of activations in memory.",
    ),
]
Compile = Annotated[
    bool,
    flag(
        "--compile",
        help="--backend torch: run the model through torch.compile (dynamic shapes). The first batches "
        "wait for compilation (tens of seconds), so it can pay off only on long runs; off by default.",
    ),
]
BatchTokens = Annotated[
    int | None,
    typer.Option(
        "--batch-tokens",
        min=1,
        help="Padded tokens per batch (rows x longest row). Bigger batches amortise per-call overhead but "
        "use more memory and, past a point, run slower (a BERT batch's activations fall out of the CPU "
        "caches). An n-gram model's sparse graph pads nothing: its batches are consecutive rows, counted in "
        "features. Default: by model kind and device.",
    ),
]
Window = Annotated[
    int,
    typer.Option(
        "--window",
        min=1,
        help="Rows read ahead and sorted by length before batching; also the unit of a --resume checkpoint. "
        "Bigger windows pad less (similar lengths meet) but hold more rows in memory and redo more "
        "work after a crash; small ones are slow: every window is a fsynced checkpoint part. A window of "
        "long texts ends sooner, at 4 million characters, so memory stays bounded however long they are.",
    ),
]
Quiet = Annotated[
    bool,
    flag(
        "--quiet",
        "-q",
        help="No progress bar, progress lines or closing summary on stderr. Results, warnings and errors still "
        "show (train's per-epoch lines and report, bench's table).",
    ),
]
