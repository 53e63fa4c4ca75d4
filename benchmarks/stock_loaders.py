"""Do the stock loaders a user reaches for give clsrun's labels on a BERT bundle, or refuse to load it?

Scores the ``--text-col`` of a file with ``clsrun predict --precision fp32`` (a subprocess, as a user runs
it), then loads the bundle ``--loads`` times with each of

- ``transformers.pipeline("text-classification", model=BUNDLE)`` (``truncation=True``, batches of 32),
- ``AutoModelForSequenceClassification.from_pretrained(BUNDLE)`` with ``AutoTokenizer`` (padded batches of
  32, ``truncation=True``), labels through ``config.id2label``,
- ``SentenceTransformer(BUNDLE).encode`` (batches of 32), the argmax named through ``config.json``'s
  ``id2label``,

and reports for each load either the error it raised (its type and first line), or that it returned
something other than one logit per label, or how many of the rows clsrun scored get the same label. A loader that builds a random head shows up as low agreement that
changes from load to load. Prints one JSON object. Usage:

    .venv/bin/python benchmarks/stock_loaders.py --model BUNDLE --data FILE [--text-col text] [--loads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 32


def clsrun_labels(bundle: Path, data: Path, text_col: str, work: Path) -> list[str | None]:
    """``clsrun predict --precision fp32`` labels per row (None where clsrun reports a row error)."""
    import pyarrow.csv as pacsv

    out = work / "clsrun.csv"
    clsrun = Path(sys.executable).parent / "clsrun"
    command = [str(clsrun), "predict", str(data), "--model", str(bundle), "--out", str(out)]
    command += ["--text-col", text_col, "--precision", "fp32", "--quiet"]
    subprocess.run(command, check=True)
    table = pacsv.read_csv(out, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    return [
        label if status == "ok" else None
        for label, status in zip(table["label"].to_pylist(), table["status"].to_pylist(), strict=True)
    ]


def _id2label(bundle: Path) -> list[str]:
    config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    return [config["id2label"][str(i)] for i in range(len(config["id2label"]))]


class NotLogits(ValueError):
    """The loader ran but returned something else than one logit per label (e.g. sentence embeddings)."""


def _named(logits: np.ndarray, labels: list[str]) -> list[str]:
    if logits.ndim != 2 or logits.shape[1] != len(labels):
        raise NotLogits(f"returned vectors of shape {logits.shape}, not logits for {len(labels)} labels")
    return [labels[i] for i in logits.argmax(axis=1)]


def by_pipeline(bundle: Path, texts: list[str]) -> list[str]:
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(bundle), device="cpu")
    return [r["label"] for r in classify(texts, batch_size=BATCH, truncation=True)]


def by_auto_model(bundle: Path, texts: list[str]) -> list[str]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bundle)
    model = AutoModelForSequenceClassification.from_pretrained(bundle).eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    out: list[str] = []
    for i in range(0, len(texts), BATCH):
        batch = tokenizer(texts[i : i + BATCH], padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            out += _named(model(**batch).logits.numpy(), labels)
    return out


def by_sentence_transformers(bundle: Path, texts: list[str]) -> list[str]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(bundle), device="cpu")
    return _named(np.asarray(model.encode(texts, batch_size=BATCH)), _id2label(bundle))


LOADERS: dict[str, Callable[[Path, list[str]], list[str]]] = {
    "pipeline": by_pipeline,
    "AutoModelForSequenceClassification": by_auto_model,
    "SentenceTransformer": by_sentence_transformers,
}


def measure(loader: Callable[[Path, list[str]], list[str]], bundle: Path, texts: list[str],
            reference: list[str | None]) -> dict[str, Any]:  # fmt: skip
    """One load: the error it raised, or its agreement with clsrun on the rows clsrun scored."""
    start = time.perf_counter()
    try:
        labels = loader(bundle, texts)
    except NotLogits as e:
        return {"outcome": "not logits", "error": str(e)}
    except Exception as e:  # any failure to load or run is what is being measured
        first = (str(e).strip().splitlines() or [""])[0]
        return {"outcome": "raised", "error": f"{type(e).__name__}: {first[:300]}"}
    scored = [(ours, theirs) for ours, theirs in zip(reference, labels, strict=True) if ours is not None]
    differ = sum(ours != theirs for ours, theirs in scored)
    return {
        "outcome": "labels",
        "rows": len(scored),
        "differ": differ,
        "agreement": round(1 - differ / max(len(scored), 1), 5),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="a bert bundle")
    parser.add_argument("--data", type=Path, required=True, help="a CSV file with a text column")
    parser.add_argument("--text-col", default="text")
    parser.add_argument(
        "--loads", type=int, default=2, help="loads per loader (a random head differs each time)"
    )
    parser.add_argument("--loaders", default=",".join(LOADERS), help="comma-separated subset of the loaders")
    args = parser.parse_args()

    import pyarrow.csv as pacsv
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the loaders' own load reports are not what is measured here
    texts = [t or "" for t in pacsv.read_csv(args.data).column(args.text_col).to_pylist()]
    with tempfile.TemporaryDirectory(prefix="clsrun-stock-loaders-") as work:
        reference = clsrun_labels(args.model, args.data, args.text_col, Path(work))
    spec = json.loads((args.model / "clsrun.json").read_text(encoding="utf-8"))["model"]
    results = {
        name: [measure(LOADERS[name], args.model, texts, reference) for _ in range(args.loads)]
        for name in args.loaders.split(",")
    }
    report = {
        "bundle": str(args.model),
        "pooling": spec.get("pooling"),
        "truncation": spec.get("truncation"),
        "data": str(args.data),
        "rows": len(texts),
        "load_average_1m": os.getloadavg()[0],
        "loaders": results,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
