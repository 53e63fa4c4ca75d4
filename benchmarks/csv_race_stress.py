"""Reliability under load: the same valid CSV through `clsrun predict` many times, with CPU hogs alongside.

    python benchmarks/csv_race_stress.py [--runs 500] [--jobs 2] [--hogs 2] [--rows 30000] [--model BUNDLE]
                                         [--read-delay-ms MS] [--in-process]

Issue 17: a valid ``label,text`` file once in a few hundred runs ended with
``unexpected ArrowKeyError: Column 'text' in include_columns does not exist`` on a busy machine. This
script builds such a file (``--rows`` rows of ``--source``, or of made-up reviews without it), starts
``--hogs`` busy-looping processes, and runs ``clsrun predict FILE --out OUT --quiet`` ``--runs`` times,
``--jobs`` at a time (concurrent runs load the machine too). A run counts as good when it exits 0 and its
output has one row per input row; anything else is a failure, grouped by its last stderr line. The
summary gives runs, failures, wall time and the load average; exit status 1 when any run failed.

``--read-delay-ms`` makes the race easy to hit on purpose: each run goes under
``strace -f -e inject=read:delay_enter=...`` restricted to the input file, so every read of it waits that
long after the reading thread has checked that the file is open. With the reader of issue 17 (a header
probe closed while pyarrow's read-ahead thread could still be inside such a read, so that the read took
the next open's bytes) about one open in a hundred failed this way; with one file opened once and read by
one thread, none can. ``--in-process`` repeats only what the CLI does first, ``open_records`` and reading
the file, ``--runs`` times in one process: the same race, far cheaper than whole ``clsrun predict`` runs.
"""

from __future__ import annotations

import argparse
import collections
import csv
import multiprocessing
import multiprocessing.synchronize
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DEFAULT_SOURCE = Path("/work/shared/datasets/reviews_zh_train.csv")

IN_PROCESS = """
import collections, sys
from clsrun.runtime.readers import open_records
seen = collections.Counter()
for _ in range(int(sys.argv[2])):
    try:
        seen[f"ok {sum(len(c) for c in open_records(sys.argv[1]).chunks())} rows"] += 1
    except Exception as e:
        seen[f"{type(e).__name__}: {e}"[:200]] += 1
for outcome, n in seen.items():
    print(n, outcome, sep="\\t")
"""


def make_input(source: Path, rows: int, out: Path) -> Path:
    """``rows`` rows of ``label,text``: the source's rows repeated, or made-up ones without a source."""
    if source.is_file():
        with source.open(encoding="utf-8", newline="") as f:
            pairs = [(r["label"], r["text"]) for r in csv.DictReader(f)]
    else:
        rng = random.Random(0)
        words = ["good", "bad", "film", "story", "great", "plot", "boring", "loved", "acting", "ending"]
        pairs = [
            (rng.choice(["pos", "neg"]), " ".join(rng.choices(words, k=rng.randint(5, 40))))
            for _ in range(997)
        ]
    with out.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["label", "text"])
        w.writerows(pairs[i % len(pairs)] for i in range(rows))
    return out


def hog(stop: multiprocessing.synchronize.Event) -> None:
    """Burn one core until told to stop (the "CPU-heavy work alongside")."""
    x = 0
    while not stop.is_set():
        for i in range(200_000):
            x = (x * 31 + i) % 1_000_003


def delayed(cmd: list[str], src: Path, delay_ms: float) -> list[str]:
    """``cmd`` under strace, each read of ``src`` delayed on entry (after pyarrow checked the file is open)."""
    if delay_ms <= 0:
        return cmd
    inject = f"inject=read:delay_enter={int(delay_ms * 1000)}"
    return ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=read", "-e", inject, "-P", str(src), *cmd]


def in_process(src: Path, runs: int, rows: int, delay_ms: float) -> collections.Counter[str]:
    """Outcomes of ``runs`` opens and reads of ``src`` in one Python process."""
    cmd = delayed([sys.executable, "-c", IN_PROCESS, str(src), str(runs)], src, delay_ms)
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    outcomes: collections.Counter[str] = collections.Counter()
    for line in done.stdout.splitlines():
        n, outcome = line.split("\t", 1)
        outcomes["ok" if outcome == f"ok {rows} rows" else outcome] += int(n)
    return outcomes


def one_run(src: Path, out: Path, model: str | None, rows: int, delay_ms: float) -> str:
    """``"ok"``, or why the run failed (its exit code and last stderr line)."""
    cmd = [sys.executable, "-c", "from clsrun.runtime.cli import main; main()", "predict", str(src)]
    cmd = delayed([*cmd, "--out", str(out), "--quiet", *(["--model", model] if model else [])], src, delay_ms)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        return f"exit {done.returncode}: {last[:200]}"
    with out.open(encoding="utf-8") as f:
        got = sum(1 for _ in csv.reader(f)) - 1
    out.unlink()
    out.with_name(out.name + ".manifest.json").unlink()
    return "ok" if got == rows else f"exit 0 but {got} output rows, not {rows}"


def cli_runs(src: Path, work: Path, args: argparse.Namespace) -> collections.Counter[str]:
    """Outcomes of ``args.runs`` runs of ``clsrun predict``, ``args.jobs`` at a time."""
    outcomes: collections.Counter[str] = collections.Counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(one_run, src, work / f"out-{i}.csv", args.model, args.rows, args.read_delay_ms)
            for i in range(args.runs)
        ]
        for i, fut in enumerate(futures, 1):
            outcomes[fut.result()] += 1
            if i % 50 == 0:
                print(f"{i} runs, {i - outcomes['ok']} failed", file=sys.stderr, flush=True)
    return outcomes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--jobs", type=int, default=2, help="runs at the same time")
    ap.add_argument("--hogs", type=int, default=2, help="busy-looping processes alongside")
    ap.add_argument("--rows", type=int, default=30_000)
    ap.add_argument("--model", default=None, help="bundle folder (default: the shipped default model)")
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--read-delay-ms", type=float, default=0.0, help="delay each read of the input (strace)")
    ap.add_argument("--in-process", action="store_true", help="open and read the file, not a whole predict")
    args = ap.parse_args()
    if args.read_delay_ms > 0 and shutil.which("strace") is None:
        sys.exit("--read-delay-ms needs strace (apt-get install strace)")
    with tempfile.TemporaryDirectory(prefix="clsrun-race-") as tmp:
        src = make_input(args.source, args.rows, Path(tmp) / "med.csv")
        stop = multiprocessing.Event()
        hogs = [multiprocessing.Process(target=hog, args=(stop,), daemon=True) for _ in range(args.hogs)]
        for p in hogs:
            p.start()
        started = time.perf_counter()
        try:
            if args.in_process:
                outcomes = in_process(src, args.runs, args.rows, args.read_delay_ms)
            else:
                outcomes = cli_runs(src, Path(tmp), args)
        finally:
            stop.set()
            for p in hogs:
                p.join()
        wall = time.perf_counter() - started
    failed = args.runs - outcomes["ok"]
    what = (
        "opens and reads in one process"
        if args.in_process
        else f"runs of clsrun predict, {args.jobs} at a time"
    )
    delay = f", reads delayed {args.read_delay_ms:g} ms" if args.read_delay_ms else ""
    print(
        f"{args.runs} {what} on {args.rows} rows, {args.hogs} CPU hogs: {failed} failed "
        f"({wall:.0f} s, load average {os.getloadavg()[0]:.1f}{delay})"
    )
    for outcome, n in outcomes.most_common():
        if outcome != "ok":
            print(f"  {n} x {outcome}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
