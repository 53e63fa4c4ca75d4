"""`clsrun predict` on one file under several settings, alternating, to compare them in the same run.

Each ``--run "NAME=BUNDLE [predict options...]"`` is one setting: a bundle and extra `clsrun predict`
options (``--batch-tokens 1024 --streams 1``, ...). Every repeat runs each setting once, in turn, so load
drift on a shared machine hits all of them alike. Reports, per setting, the median and all values of
rows/s end to end (process start, model load, file in and out) and in the run (the manifest's own).

    .venv/bin/python benchmarks/predict_variants.py --repeats 3 \\
        --run "fused-ln-8192=B_FUSED --batch-tokens 8192 --streams 1" --run "default=B"

Without ``--data``, scores the short BBC texts of ``bench_vs_pipeline.py`` (pairs of sentences, about 55
WordPiece tokens), written to ``--work``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_vs_pipeline import short_texts  # type: ignore[import-not-found]


def parse_run(spec: str) -> tuple[str, list[str]]:
    """``"NAME=BUNDLE --opt v"`` -> (NAME, ["--model", BUNDLE, "--opt", "v"])."""
    name, sep, rest = spec.partition("=")
    words = shlex.split(rest)
    if not sep or not name or not words:
        raise SystemExit(f'--run {spec!r}: expected "NAME=BUNDLE [predict options]"')
    return name, ["--model", words[0], *words[1:]]


def one_run(data: Path, out: Path, args: list[str]) -> tuple[float, float, int]:
    clsrun = Path(sys.executable).parent / "clsrun"
    start = time.perf_counter()
    subprocess.run(
        [str(clsrun), "predict", str(data), "--out", str(out), "--overwrite", "--quiet", *args], check=True
    )
    wall = time.perf_counter() - start
    manifest = json.loads(Path(f"{out}.manifest.json").read_text(encoding="utf-8"))
    rows = int(manifest["rows_read"])
    return rows / wall, float(manifest["rows_per_s"]), rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", action="append", required=True, help='"NAME=BUNDLE [options]"')
    parser.add_argument("--data", type=Path, help="file to score (default: short BBC texts)")
    parser.add_argument("--source", type=Path, default=Path("../shared/datasets/bbc_en_train.csv"))
    parser.add_argument("--rows", type=int, default=4000, help="short texts to build without --data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/clsrun-predict-variants"))
    args = parser.parse_args()

    runs = dict(parse_run(spec) for spec in args.run)
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        data = args.work / "short_texts.csv"
        with open(data, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text"])
            writer.writerows([t] for t in short_texts(args.source, args.rows))
    results: dict[str, dict[str, list[float]]] = {n: {"end_to_end": [], "in_run": []} for n in runs}
    rows = 0
    for _ in range(args.repeats):
        for name, extra in runs.items():
            end_to_end, in_run, rows = one_run(data, args.work / "scores.csv", extra)
            results[name]["end_to_end"].append(round(end_to_end, 1))
            results[name]["in_run"].append(round(in_run, 1))
    report = {
        "data": str(data),
        "rows": rows,
        "load_average_1m": os.getloadavg()[0],
        "runs": {name: " ".join(extra) for name, extra in runs.items()},
        "rows_per_s": {
            name: {kind: {"median": statistics.median(v), "all": v} for kind, v in r.items()}
            for name, r in results.items()
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
