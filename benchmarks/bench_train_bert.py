"""Wall time and validation metrics of one `clsrun train` run, with the machine's load next to them.

Usage (the acceptance runs of the BERT trainer; everything after ``--`` goes to `clsrun train`):

    nice -n 10 .venv/bin/python benchmarks/bench_train_bert.py --out /tmp/bbc_minilm -- \\
        /work/shared/datasets/bbc_en_train.csv --model minilm --truncation head-tail --epochs 2 --lr 1e-4
    nice -n 10 .venv/bin/python benchmarks/bench_train_bert.py --out /tmp/bbc_frozen -- \\
        /work/shared/datasets/bbc_en_train.csv --model minilm --freeze-encoder --truncation head-tail

Prints one JSON object: wall seconds of the whole command (start-up, tokenizing, training, writing the
bundle), the trainer's own training seconds, validation accuracy and macro-F1 from the bundle, and the
1-minute load average at start and end: on a shared machine a run's wall time says as much about the
neighbours as about the code, so the load is part of the result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="bundle folder (replaced with --force)")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- DATA --model ... for clsrun train")
    args = parser.parse_args()
    train_args = [a for a in args.train_args if a != "--"]
    clsrun = Path(sys.executable).parent / "clsrun"
    command = [str(clsrun), "train", *train_args, "--out", str(args.out), "--force", "--quiet"]
    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"clsrun train failed ({done.returncode}):\n{done.stderr[-3000:]}")
    spec = json.loads((args.out / "clsrun.json").read_text(encoding="utf-8"))
    training = spec["training"]
    result = {
        "command": " ".join(command),
        "wall_s": round(wall, 1),
        "train_seconds": training["train_seconds"],
        "accuracy": training["metrics"]["accuracy"],
        "macro_f1": training["metrics"]["macro_f1"],
        "val_rows": training["val_rows"],
        "best_epoch": training["best_epoch"],
        "model": spec["model"],
        "cpus": os.cpu_count(),
        "load_1min_start": round(load_start, 2),
        "load_1min_end": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
