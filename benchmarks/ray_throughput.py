"""`--engine ray` against the local engine: the same rows and labels, and rows/s both ways.

    python benchmarks/ray_throughput.py [--model BUNDLE] [--rows 200000] [--files 4] [--workers 2]

1. Builds ``--files`` CSV files holding ``--rows`` rows together, texts repeated in order from
   ``--source`` (default the review training set), cached in ``--workdir``.
2. Local engine: one ``Classifier`` (all cores), ``score_file`` on each file in turn; rows/s = all rows
   over the summed wall time (model load excluded, as in the local manifest).
3. Ray engine: ``score_with_ray`` on the folder with a local Ray of ``--workers`` actors. Two numbers:
   the job (manifest: reading to the last part written) and end to end (Ray start and shutdown included).
4. Checks: Ray wrote exactly one row per input row, and every row's label (and status, error, score)
   equals the local engine's.

Both engines run ``--repeats`` times, alternating, and the medians are reported (the machine is shared,
so single runs are noisy). Prints one JSON object; exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clsrun.runtime.classifier import Classifier
from clsrun.runtime.score import OutputOptions, score_file
from clsrun.runtime.tables import read_table
from clsrun.runtime.variant import Variant

DEFAULT_SOURCE = Path("/work/shared/datasets/reviews_zh_train.csv")


def make_inputs(source: Path, rows: int, files: int, folder: Path) -> list[Path]:
    """``files`` CSV files of ``rows`` rows in all (texts of ``source`` repeated in order); cached."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"in-{i}.csv" for i in range(files)]
    if all(p.is_file() for p in paths):
        return paths
    texts = read_table(source).column("text").to_pylist()
    per = -(-rows // files)
    for i, path in enumerate(paths):
        lo, hi = i * per, min(rows, (i + 1) * per)
        chunk = [texts[j % len(texts)] for j in range(lo, hi)]
        pacsv.write_csv(pa.table({"text": pa.array(chunk, type=pa.string())}), path)
    return paths


def run_local(model: str | None, paths: list[Path], out: Path) -> tuple[float, dict[str, pa.Table]]:
    """Score each file with the local engine; (seconds of scoring, output table per file name)."""
    clf = Classifier.load(model, Variant(streams=1))  # one stream, every thread: as the README figure was run
    seconds = 0.0
    tables = {}
    for path in paths:
        target = out / f"local-{path.stem}.parquet"
        t0 = time.perf_counter()
        score_file(path, target, clf, options=OutputOptions(overwrite=True))
        seconds += time.perf_counter() - t0
        tables[path.name] = pq.read_table(target)
    return seconds, tables


def run_ray(
    model: str | None, folder: Path, out: Path, workers: int, cpus: float
) -> tuple[float, dict, pa.Table]:
    """Score the folder on a local Ray; (end-to-end seconds, manifest, all parts)."""
    from clsrun.runtime.ray_engine.engine import RayOptions, score_with_ray

    target = out / "ray.parquet"
    shutil.rmtree(target, ignore_errors=True)
    t0 = time.perf_counter()
    result = score_with_ray(
        str(folder), target, model, options=RayOptions(workers=workers, cpus_per_worker=cpus, quiet=True)
    )
    seconds = time.perf_counter() - t0
    parts = pa.concat_tables(pq.read_table(p) for p in sorted(target.glob("part-*.parquet")))
    return seconds, result.manifest, parts


def compare(local: dict[str, pa.Table], parts: pa.Table) -> dict[str, float | int]:
    """Row counts, duplicate ids, and per-row agreement of the Ray parts with the local outputs."""
    mine = {r["id"]: r for r in parts.to_pylist()}
    same_label = same_all = missing = 0
    max_diff = 0.0
    for name, table in local.items():
        for row in table.to_pylist():
            other = mine.get(f"{name}:{row['id']}")
            if other is None:
                missing += 1
                continue
            same_label += other["label"] == row["label"]
            keys = ("label", "status", "error", "score")
            same_all += all(other[k] == row[k] for k in keys)
            if row["score"] is not None and other["score"] is not None:
                max_diff = max(max_diff, abs(other["score"] - row["score"]))
    rows = sum(t.num_rows for t in local.values())
    return {
        "input_rows": rows,
        "ray_rows": parts.num_rows,
        "ray_distinct_ids": len(mine),
        "missing_in_ray": missing,
        "labels_identical": same_label,
        "rows_identical": same_all,
        "max_abs_score_diff": max_diff,
    }


def add_job_options(ap: argparse.ArgumentParser) -> None:
    """The options both Ray benchmarks share: model, input size and shape, workers, scratch folder."""
    ap.add_argument("--model", default=None, help="bundle folder (default: the model shipped with clsrun)")
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/clsrun-ray-bench"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_job_options(ap)
    ap.add_argument("--cpus-per-worker", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    folder = args.workdir / f"in-{args.rows}x{args.files}"
    paths = make_inputs(args.source, args.rows, args.files, folder)
    out = args.workdir / "out"
    out.mkdir(parents=True, exist_ok=True)
    local_s, ray_s, ray_job_s = [], [], []
    checks: dict[str, float | int] = {}
    manifest: dict = {}
    for _ in range(args.repeats):
        seconds, local = run_local(args.model, paths, out)
        local_s.append(seconds)
        seconds, manifest, parts = run_ray(args.model, folder, out, args.workers, args.cpus_per_worker)
        ray_s.append(seconds)
        ray_job_s.append(manifest["wall_s"])
        checks = compare(local, parts)
    rows = checks["input_rows"]
    local_rate = rows / statistics.median(local_s)
    job_rate = rows / statistics.median(ray_job_s)
    report = {
        "rows": rows,
        "files": args.files,
        "model": manifest["bundle"],
        "variant": f"{manifest['backend']} {manifest['precision']} {manifest['device']}",
        "workers": args.workers,
        "cpus_per_worker": args.cpus_per_worker,
        "threads_per_worker": manifest["threads"],
        "repeats": args.repeats,
        "local_rows_per_s": round(local_rate, 1),
        "ray_job_rows_per_s": round(job_rate, 1),
        "ray_end_to_end_rows_per_s": round(rows / statistics.median(ray_s), 1),
        "ray_job_rows_per_s_per_worker": round(job_rate / args.workers, 1),
        "ray_job_over_local": round(job_rate / local_rate, 3),
        "local_s": [round(s, 2) for s in local_s],
        "ray_job_s": ray_job_s,
        "ray_end_to_end_s": [round(s, 2) for s in ray_s],
        "parts": len(manifest["parts"]),
        **checks,
    }
    print(json.dumps(report, indent=2))
    ok = checks["ray_rows"] == checks["ray_distinct_ids"] == rows and checks["labels_identical"] == rows
    if not ok:
        print("FAILED: the Ray output differs from the local engine's", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
