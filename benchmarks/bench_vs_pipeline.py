"""`clsrun predict` end to end against `transformers.pipeline` on short English texts (issue 5's acceptance).

Builds a file of short texts from bbc_en_train (pairs of consecutive sentences, about 65 WordPiece tokens
on average, like single paragraphs), then, alternating, ``--repeats`` times:

- the ``transformers`` pipeline ("text-classification", batch_size=32, the bundle's own weights, torch
  threads = ``--threads``; for a mean-pooling bundle, which that pipeline refuses, the same encoder under
  ``BertForSequenceClassification``: ``clsrun.bench.backends.timing_pipeline``), timed on ``--pipeline-rows``
  rows after a warm-up batch;
- ``clsrun predict FILE --model BUNDLE --threads N`` as a subprocess: file in, file out, process start-up
  and model load included (``end_to_end``), and the manifest's own rows/s (``in_run``).

Prints one JSON object with every run, the medians and the ratios. Usage:

    .venv/bin/python benchmarks/bench_vs_pipeline.py --model BUNDLE [--rows 4000] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def short_texts(source: Path, limit: int) -> list[str]:
    """Pairs of consecutive sentences from each article, in file order, at most ``limit``."""
    from clsrun.runtime.labelled import read_labelled

    out: list[str] = []
    for article in read_labelled(source).texts:
        sentences = SENTENCE_END.split(article)
        for i in range(0, len(sentences) - 1, 2):
            out.append(f"{sentences[i]} {sentences[i + 1]}")
            if len(out) == limit:
                return out
    return out


def pipeline_rows_per_s(bundle: Path, texts: list[str], threads: int) -> float:
    import torch

    from clsrun.bench.backends import timing_pipeline
    from clsrun.runtime.bundle import Bundle

    torch.set_num_threads(threads)
    classify, _ = timing_pipeline(Bundle.load(bundle), "cpu")  # mean pooling: timed, labels not clsrun's
    classify(texts[:32], batch_size=32, truncation=True)  # warm-up
    start = time.perf_counter()
    classify(texts, batch_size=32, truncation=True)
    return len(texts) / (time.perf_counter() - start)


def predict_rows_per_s(bundle: Path, data: Path, out: Path, threads: int, n: int) -> tuple[float, float]:
    clsrun = Path(sys.executable).parent / "clsrun"
    command = [str(clsrun), "predict", str(data), "--model", str(bundle), "--out", str(out)]
    command += ["--threads", str(threads), "--overwrite", "--quiet"]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    manifest = json.loads(Path(f"{out}.manifest.json").read_text(encoding="utf-8"))
    return n / wall, float(manifest["rows_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="an exported BERT bundle")
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/bbc_en_train.csv"))
    parser.add_argument("--rows", type=int, default=4000, help="rows in the file clsrun predict scores")
    parser.add_argument("--pipeline-rows", type=int, default=640, help="rows the pipeline is timed on")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/clsrun-bench-vs-pipeline"))
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    texts = short_texts(args.data, args.rows)
    data = args.work / "short_texts.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)

    from clsrun.runtime.bundle import Bundle
    from clsrun.runtime.encode_bert import BertEncoder

    tokens = BertEncoder(Bundle.load(args.model)).tokenize(texts)
    mean_tokens = float(tokens.lengths.mean())

    runs = []
    for _ in range(args.repeats):
        hf = pipeline_rows_per_s(args.model, texts[: args.pipeline_rows], args.threads)
        end_to_end, in_run = predict_rows_per_s(
            args.model, data, args.work / "scores.csv", args.threads, len(texts)
        )
        runs.append({"pipeline": hf, "predict_end_to_end": end_to_end, "predict_in_run": in_run})
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        json.dumps(
            {
                "rows": len(texts),
                "mean_tokens": round(mean_tokens, 1),
                "threads": args.threads,
                "load_average_1m": os.getloadavg()[0],
                "runs": runs,
                "median": med,
                "ratio_end_to_end": med["predict_end_to_end"] / med["pipeline"],
                "ratio_in_run": med["predict_in_run"] / med["pipeline"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
