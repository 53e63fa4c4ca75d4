"""An n-gram bundle's graphs on the same texts, encoding included: padded ids and weights (the dense graph
``torch.onnx`` writes), the weights as a sparse matrix (a weighing graph), and raw counts as a sparse matrix
that the graph weighs itself (a counting graph, what export writes for raw tf).

    .venv/bin/python benchmarks/bench_ngram_graphs.py [--model BUNDLE] [--rows 100000] [--repeats 5]

Texts are read once. Then, alternating ``--repeats`` times, each graph scores every window on one thread
of this process and one onnxruntime thread: the window encoded by that graph's encoder (``encode_texts``,
as ``clsrun predict`` encodes a window: with weights for the dense and weighing graphs, counts only for the
counting one), then batch by batch as predict plans them (the dense one length-sorted under the token
budget, padding included; the sparse ones in consecutive rows, building each batch's CSR matrix included).
Prints the median seconds of each, the ratios, and the largest logit difference from the dense graph (same
labels?). Needs the train extra (torch) to write the dense and weighing graphs; a raw-tf bundle only.
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

from clsrun.export.ngram_graph import write_sparse_graph
from clsrun.export.onnx_export import OUTPUT_NAME, export_onnx
from clsrun.runtime.batching import BatchOptions
from clsrun.runtime.bundle import Bundle, default_model_path
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.encode_ngram import COUNTS_INPUT, NgramEncoder
from clsrun.runtime.encode_pool import encode_texts
from clsrun.runtime.readers import RecordStream
from clsrun.runtime.variant import staged_candidate
from clsrun.trainer.models import load_model


def score(clf: Classifier, windows: list[list[str]]) -> tuple[float, np.ndarray]:
    """Seconds to encode and score every window with ``clf`` on its own batch plan; logits in row order."""
    norm = clf.bundle.spec.normalization
    out = []
    start = time.perf_counter()
    for texts in windows:
        tokens = encode_texts(clf.encoder, norm, texts).tokens
        logits = np.empty((len(tokens), len(clf.labels)), np.float32)
        for batch in clf.batching.plan(tokens.lengths):
            logits[batch] = clf.run(clf.inputs(tokens, batch))
        out.append(logits)
    return time.perf_counter() - start, np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", type=Path, default=None, help="a raw-tf ngram bundle (default: the shipped model)"
    )
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/clsrun-bench"))
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    src = make_input(args.source, args.rows, args.workdir / f"{args.source.stem}_{args.rows}.csv")
    bundle = Bundle.load(args.model or default_model_path())
    if bundle.spec.kind != "ngram" or NgramEncoder.from_bundle(bundle).scheme.tf != "raw":
        raise SystemExit(f"{bundle.root} is not a raw-tf ngram bundle")
    texts = [t for chunk in RecordStream(str(src)).chunks() for t in chunk.texts if t is not None]
    window = BatchOptions().window
    windows = [texts[i : i + window] for i in range(0, len(texts), window)]

    with tempfile.TemporaryDirectory() as tmp:  # a copy of the bundle holds the three graphs
        copy = Bundle.load(shutil.copytree(bundle.root, Path(tmp) / "bundle"))
        model = load_model(copy).eval()
        weighing = NgramEncoder.from_bundle(copy)
        first = weighing.tokenize(windows[0][:8])
        sample = {k: torch.from_numpy(v) for k, v in weighing.pad(first, np.arange(len(first))).items()}
        export_onnx(model, sample, copy.root / "onnx" / "model.dense.onnx")
        write_sparse_graph(model, copy.root / "onnx" / "model.weighed.onnx", OUTPUT_NAME)
        write_sparse_graph(
            model, copy.root / "onnx" / "model.counted.onnx", OUTPUT_NAME, weighing.vocabulary.idf
        )
        graphs = {}
        for name, file in (
            ("dense (padded)", "dense"),
            ("weighed (CSR)", "weighed"),
            ("counted (CSR)", "counted"),
        ):
            staged, choice = staged_candidate(copy, f"onnx/model.{file}.onnx", "fp32", "cpu")
            graphs[name] = Classifier.open(staged, choice, threads=1, streams=1)
        assert graphs["dense (padded)"].batching.padded, "the torch.onnx graph takes padded inputs"
        assert COUNTS_INPUT in graphs["counted (CSR)"].runner.sparse_inputs  # type: ignore[attr-defined]
        times: dict[str, list[float]] = {name: [] for name in graphs}
        logits: dict[str, np.ndarray] = {}
        for _ in range(args.repeats):
            for name, clf in graphs.items():
                seconds, logits[name] = score(clf, windows)
                times[name].append(seconds)
    medians = {name: statistics.median(values) for name, values in times.items()}
    dense = logits["dense (padded)"]
    for name, values in times.items():
        diff = np.abs(logits[name] - dense).max()
        same = float((logits[name].argmax(1) == dense.argmax(1)).mean())
        print(
            f"{name:15s} median {medians[name]:.3f} s  ({', '.join(f'{v:.3f}' for v in values)}); "
            f"vs dense: |logit diff| {diff:.2e}, same label on {same:.2%}"
        )
    base = medians["dense (padded)"]
    print(
        f"over {len(texts):,} texts: dense / weighed {base / medians['weighed (CSR)']:.2f}x, "
        f"weighed / counted {medians['weighed (CSR)'] / medians['counted (CSR)']:.2f}x"
    )


if __name__ == "__main__":
    main()
