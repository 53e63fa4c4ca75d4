"""End-to-end `clsrun predict` throughput, and what length-sorted batching saves in padding.

    python benchmarks/bench_predict_throughput.py --model BUNDLE [--rows 200000] [--repeats 3]

1. Builds the input once: ``--rows`` rows made by repeating the texts of ``--source`` (default the
   review training set), cached in ``--workdir``.
2. Padding: tokenizes the texts with the bundle's encoder and reports padded tokens per real token for
   random batches of 32 (unsorted) and for the runtime's length-sorted, token-budget batches per window.
3. Throughput: runs the real ``clsrun predict`` command ``--repeats`` times (a fresh process each time,
   file in and file out) and reports the median of the manifest's rows/s and of the whole process's
   wall time (start-up and model load included); then the same in-process with sorting off, to show
   what sorting buys end to end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from clsrun.runtime.batching import BatchOptions, padding_ratio
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.score import OutputOptions, score_file
from clsrun.runtime.tables import read_table
from clsrun.runtime.textnorm import normalize
from clsrun.runtime.variant import Variant

DEFAULT_SOURCE = Path("/work/shared/datasets/reviews_zh_train.csv")


def make_input(source: Path, rows: int, out: Path) -> Path:
    """``rows`` rows of ``source``'s text column, repeated in order (cached: made once per size)."""
    if out.is_file():
        return out
    texts = read_table(source).column("text").to_pylist()
    repeated = [texts[i % len(texts)] for i in range(rows)]
    pacsv.write_csv(pa.table({"text": pa.array(repeated, type=pa.string())}), out)
    return out


def padding_report(clf: Classifier, path: Path, window: int) -> dict[str, float | str]:
    if not clf.batching.padded:
        return {"not_padded": "the model's graph takes its rows as a sparse matrix"}
    texts = [normalize(t, clf.bundle.spec.normalization) for t in read_table(path).column("text").to_pylist()]
    lengths = clf.encoder.tokenize([t for t in texts if t]).lengths  # (n,)
    rng = np.random.default_rng(0)
    shuffled = lengths[rng.permutation(len(lengths))]
    random32 = padding_ratio(
        shuffled, [np.arange(i, min(i + 32, len(shuffled))) for i in range(0, len(shuffled), 32)]
    )
    padded = real = 0
    for start in range(0, len(lengths), window):
        part = lengths[start : start + window]
        for b in clf.batching.plan(part):
            padded += int(part[b].max()) * len(b)
        real += int(part.sum())
    return {"random_batches_of_32": round(random32, 3), "sorted_token_budget": round(padded / real, 3)}


def run_cli(model: str | None, src: Path, out: Path, threads: int | None) -> tuple[float, dict[str, object]]:
    cmd = [sys.executable, "-m", "clsrun", "predict", str(src)]  # what the `clsrun` command runs
    cmd += ["--out", str(out), "--overwrite", "--quiet"] + (["--model", model] if model else [])
    cmd += ["--threads", str(threads)] if threads else []
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text(encoding="utf-8"))
    return wall, manifest


def input_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options of every benchmark that scores a file made from ``--source``: the model, the source and
    the folder the inputs and outputs go to."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="bundle folder (default: the shipped default model)")
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/clsrun-bench"))
    return ap


def main() -> None:
    ap = input_parser(__doc__)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    src = make_input(args.source, args.rows, args.workdir / f"{args.source.stem}_{args.rows}.csv")
    # In process: one stream with every thread, the setup the README's sorting figure was measured with.
    variant = Variant(threads=args.threads, streams=1)
    clf = Classifier.load(args.model, variant)
    result: dict[str, object] = {"rows": args.rows, "model": clf.describe()}
    result["padded_per_real_token"] = padding_report(clf, src, clf.batching.window)
    print(f"padding (padded/real tokens): {result['padded_per_real_token']}", file=sys.stderr)

    walls, rates = [], []
    for i in range(args.repeats):
        wall, manifest = run_cli(args.model, src, args.workdir / "out.csv", args.threads)
        walls.append(wall)
        rates.append(float(manifest["rows_per_s"]))  # type: ignore[arg-type]
        print(f"run {i + 1}: {manifest['rows_per_s']:.0f} rows/s in the pipeline, process {wall:.1f}s "
              f"({args.rows / wall:.0f} rows/s incl. start-up)", file=sys.stderr)  # fmt: skip
    result["cli_rows_per_s_median"] = statistics.median(rates)
    result["cli_process_rows_per_s_median"] = round(args.rows / statistics.median(walls), 1)

    for sort in (True, False):  # in-process, same model and threads: what sorting buys end to end
        sorting = Classifier.load(args.model, variant, BatchOptions(sort=sort))
        t0 = time.perf_counter()
        score_file(src, args.workdir / "inproc.csv", sorting, options=OutputOptions(overwrite=True))
        rate = args.rows / (time.perf_counter() - t0)
        result[f"in_process_rows_per_s_{'sorted' if sort else 'unsorted'}"] = round(rate, 1)
        print(f"in-process, sort={sort}: {rate:.0f} rows/s", file=sys.stderr)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
