"""Peak memory of `clsrun predict` does not grow with the input: 100k rows vs 1M rows.

    python benchmarks/memory_flat.py --model BUNDLE [--small 100000] [--large 1000000]

Each run is a fresh ``clsrun predict`` process; its peak resident set size comes from ``os.wait4``
(the kernel's ``ru_maxrss`` of that child alone). The child is started from a tiny launcher process that
imports nothing heavy: a forked child's ``ru_maxrss`` includes what it inherited before ``exec``, so
starting it from this script (which held the generated input in memory) would overstate it. The target is a ratio of at most 1.2: the pipeline holds
a bounded number of windows and batches whatever the file's length, and the output is assembled part by
part, never as a whole.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench_predict_throughput import input_parser, make_input  # type: ignore[import-not-found]

LAUNCHER = """
import json, os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss,
                  "wall_s": time.perf_counter() - t0}))
"""


def peak_rss_mib(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` from a tiny launcher; return (peak RSS of ``cmd`` in MiB, wall seconds)."""
    done = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *cmd], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["code"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {report['code']}")
    return report["maxrss_kib"] / 1024, report["wall_s"]  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = input_parser(__doc__)
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--large", type=int, default=1_000_000)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, float] = {}
    for rows in (args.small, args.large):
        src = make_input(args.source, rows, args.workdir / f"{args.source.stem}_{rows}.csv")
        cmd = [sys.executable, "-c", "from clsrun.runtime.cli import main; main()", "predict", str(src)]
        cmd += ["--out", str(args.workdir / f"mem_{rows}.csv"), "--overwrite", "--quiet"]
        cmd += ["--model", args.model] if args.model else []
        rss, wall = peak_rss_mib(cmd)
        result[f"peak_rss_mib_{rows}"] = round(rss, 1)
        result[f"wall_s_{rows}"] = round(wall, 1)
        print(f"{rows} rows: peak RSS {rss:.0f} MiB, {wall:.1f}s", file=sys.stderr)
    result["ratio"] = round(result[f"peak_rss_mib_{args.large}"] / result[f"peak_rss_mib_{args.small}"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
