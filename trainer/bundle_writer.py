"""Writing the parts of a bundle every model kind shares, and ``clsrun.json`` last.

A trainer writes its own model files (char-CNN: ``vocab.json`` + ``model.safetensors``; BERT: a Hugging
Face folder), then calls :func:`finish_bundle`, which adds the held-out rows (``validation.jsonl.gz``), the
validation report (confusion matrix CSV/PNG), records data, hyper-parameters and metrics under
``training`` and hashes everything into ``clsrun.json`` (written last, so a crash leaves no valid bundle).
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from clsrun import __version__
from clsrun.runtime.bundle import VALIDATION_FILE, WEIGHTS_FILE, Bundle, BundleSpec, write_spec
from clsrun.runtime.errors import TrainingError, file_errors_of
from clsrun.runtime.metrics import ClassificationReport
from clsrun.runtime.overlap import training_sample
from clsrun.trainer.config import TrainConfig
from clsrun.trainer.data import Split
from clsrun.trainer.report import validation_report, write_report_files


def save_weights(state: Mapping[str, Any], out: Path) -> Path:
    """Write a state dict as ``out/model.safetensors``, readable by all (a bundle is meant to be shared)."""
    import torch
    from safetensors.torch import save_file

    broken = [name for name, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise TrainingError(
            f"training diverged: {len(broken)} weight tensor(s) hold NaN or inf ({broken[0]}, ...); nothing "
            f"was saved: lower --lr (or check the data), then train again"
        )
    path = out / WEIGHTS_FILE
    with file_errors_of(path):  # a full disk is a storage error naming the file, not "SafetensorError"
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt"}
        )
    path.chmod(0o644)  # safetensors creates it owner-only
    return path


class Outcome(Protocol):
    """What a training run reports (``engine.FitResult`` and the BERT trainer's result both fit)."""

    val_logits: np.ndarray  # (N_val, C) logits of the kept model, validation-set order
    val_targets: np.ndarray  # (N_val,) int64

    @property
    def history(self) -> Sequence[Any]: ...  # per-epoch records (dataclasses or dicts)

    best_epoch: int
    train_seconds: float
    device: str
    precision: str


def write_validation_rows(out: Path, texts: Sequence[str], labels: Sequence[str]) -> Path:
    """``validation.jsonl.gz``: one ``{"label", "text"}`` line per held-out row (raw text), reproducible bytes."""
    path = out / VALIDATION_FILE
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for text, label in zip(texts, labels, strict=True):
            gz.write((json.dumps({"label": label, "text": text}, ensure_ascii=False) + "\n").encode("utf-8"))
    return path


def _plain(record: Any) -> dict[str, Any]:
    return asdict(record) if is_dataclass(record) and not isinstance(record, type) else dict(record)


def finish_bundle(
    out: Path,
    spec: BundleSpec,
    split: Split,
    outcome: Outcome,
    config: TrainConfig,
    extra: dict[str, Any] | None = None,
) -> ClassificationReport:
    """Write the shared bundle files into ``out`` (model files already there), then ``clsrun.json``.

    ``spec.training`` is extended with the data files and their sha256, a hash sample of the training texts
    (``runtime/overlap.py``: ``clsrun eval`` warns on data that overlaps them), hyper-parameters (``config`` plus
    ``extra``), the per-epoch history, the best epoch and the validation metrics. Returns the report.
    """
    labels = spec.labels
    write_validation_rows(out, split.val_texts, split.val_labels)
    report = validation_report(outcome.val_logits, outcome.val_targets, labels)
    write_report_files(out, report)
    spec.training = {
        **spec.training,
        **split.to_json(),
        "train_text_sample": training_sample(split.train_texts, spec.normalization),  # clsrun eval's check
        "hyperparameters": {**config.to_json(), **(extra or {})},
        "history": [_plain(r) for r in outcome.history],
        "best_epoch": outcome.best_epoch,
        "train_seconds": round(outcome.train_seconds, 2),
        "device": outcome.device,
        "precision": outcome.precision,
        "metrics": {**report.summary(), "per_class": {k: asdict(v) for k, v in report.per_class.items()}},
        "clsrun_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_spec(out, spec)
    Bundle.load(out)  # what we wrote must load: fail here, not at the user's first predict
    return report
