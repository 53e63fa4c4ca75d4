"""An n-gram bundle's two graphs on the same encoded windows: padded ids and weights (the dense graph
``torch.onnx`` writes) against the features as a sparse matrix (the fp32 variant export keeps).

    .venv/bin/python benchmarks/bench_ngram_graphs.py [--model BUNDLE] [--rows 100000] [--repeats 5]

Texts are read, normalised and encoded once (as ``clsrun predict`` encodes a window); then, alternating
``--repeats`` times, each graph scores every window on one onnxruntime thread: the dense one batch by batch
as predict plans padded batches (length-sorted, the token budget), padding included in its time; the sparse
one in consecutive-row batches under the same budget, building each batch's CSR matrix included. Prints the
median seconds of each, their ratio, and the largest logit difference between the two (same labels?).
Needs the train extra (torch) to write the dense graph.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_predict_throughput import DEFAULT_SOURCE, make_input  # type: ignore[import-not-found]

from clsrun.export.onnx_export import export_onnx
from clsrun.runtime.batching import BatchOptions
from clsrun.runtime.bundle import Bundle, default_model_path
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.encode import Tokens
from clsrun.runtime.encode_pool import encode_texts
from clsrun.runtime.readers import RecordStream
from clsrun.runtime.variant import Variant, staged_candidate
from clsrun.trainer.models import load_model


def score(clf: Classifier, windows: list[Tokens]) -> tuple[float, np.ndarray]:
    """Seconds to score every window with ``clf``'s runner on its own batch plan, and the logits in row order."""
    out = []
    start = time.perf_counter()
    for tokens in windows:
        logits = np.empty((len(tokens), len(clf.labels)), np.float32)
        for batch in clf.batching.plan(tokens.lengths):
            logits[batch] = clf.run(clf.inputs(tokens, batch))
        out.append(logits)
    return time.perf_counter() - start, np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="an ngram bundle (default: the shipped model)")
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/clsrun-bench"))
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    src = make_input(args.source, args.rows, args.workdir / f"{args.source.stem}_{args.rows}.csv")
    bundle = Bundle.load(args.model or default_model_path())
    if bundle.spec.kind != "ngram":
        raise SystemExit(f"{bundle.root} is a {bundle.spec.kind} bundle, not an ngram one")

    one_thread = Variant(backend="onnx", precision="fp32", threads=1, streams=1)
    sparse = Classifier.load(bundle, one_thread)
    if sparse.batching.padded:
        raise SystemExit(f"{bundle.root}'s fp32 variant is not the sparse graph: export it again")
    texts = [t for chunk in RecordStream(str(src)).chunks() for t in chunk.texts if t is not None]
    window = BatchOptions().window
    norm = bundle.spec.normalization
    windows = [
        encode_texts(sparse.encoder, norm, texts[i : i + window]).tokens for i in range(0, len(texts), window)
    ]

    with tempfile.TemporaryDirectory() as tmp:  # a copy of the bundle holds the dense graph beside its own
        copy = Bundle.load(shutil.copytree(bundle.root, Path(tmp) / "bundle"))
        first = windows[0]
        rows = np.arange(min(8, len(first)))
        sample = {k: torch.from_numpy(v) for k, v in sparse.encoder.pad(first, rows).items()}
        export_onnx(load_model(copy).eval(), sample, copy.root / "onnx" / "model.dense.onnx")
        staged, choice = staged_candidate(copy, "onnx/model.dense.onnx", "fp32", "cpu")
        dense = Classifier.open(staged, choice, threads=1, streams=1)
        assert dense.batching.padded, "the torch.onnx graph takes padded inputs"
        times: dict[str, list[float]] = {"dense (padded)": [], "sparse (CSR)": []}
        for _ in range(args.repeats):
            seconds, dense_logits = score(dense, windows)
            times["dense (padded)"].append(seconds)
            seconds, sparse_logits = score(sparse, windows)
            times["sparse (CSR)"].append(seconds)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:15s} median {medians[name]:.3f} s  ({', '.join(f'{v:.3f}' for v in values)})")
    print(
        f"dense / sparse: {medians['dense (padded)'] / medians['sparse (CSR)']:.2f}x over {len(texts):,} texts"
    )
    same = float((dense_logits.argmax(1) == sparse_logits.argmax(1)).mean())
    print(
        f"largest |logit difference| {np.abs(dense_logits - sparse_logits).max():.2e}, same label on {same:.2%}"
    )


if __name__ == "__main__":
    main()
