"""Crash safety: SIGKILL a `clsrun predict` run at random moments, resume it, compare with a clean run.

    python benchmarks/crash_resume.py --model BUNDLE [--rows 200000] [--kills 3] [--seed 0]

1. An uninterrupted run gives the reference output and its duration.
2. The same command with ``--resume`` is started and killed with SIGKILL once a random share of the
   remaining rows is checkpointed plus a random extra 0-0.3 s (so the kill lands mid-window),
   ``--kills`` times in a row; each restart resumes the previous one.
3. A final ``--resume`` run completes it; its output must be byte-identical to the reference, and no
   partial folder or temporary file may be left next to it. Exit status 0 only when identical.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench_predict_throughput import input_parser, make_input  # type: ignore[import-not-found]


def command(src: Path, out: Path, model: str | None) -> list[str]:
    cmd = [sys.executable, "-c", "from clsrun.runtime.cli import main; main()", "predict", str(src)]
    return [*cmd, "--out", str(out), "--quiet", *(["--model", model] if model else [])]


def rows_checkpointed(out: Path) -> int:
    journal = out.parent / f".{out.name}.partial" / "journal.jsonl"
    if not journal.is_file():
        return 0
    total = 0
    for line in journal.read_text(encoding="utf-8").splitlines():
        try:
            total += int(json.loads(line)["rows"])
        except (ValueError, KeyError):
            break
    return total


def main() -> None:
    ap = input_parser(__doc__)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    src = make_input(args.source, args.rows, args.workdir / f"{args.source.stem}_{args.rows}.csv")
    ref, out = args.workdir / "crash_ref.csv", args.workdir / "crash_out.csv"
    out.unlink(missing_ok=True)

    t0 = time.perf_counter()
    subprocess.run([*command(src, ref, args.model), "--overwrite"], check=True)
    clean_s = time.perf_counter() - t0
    print(f"uninterrupted run: {clean_s:.1f}s", file=sys.stderr)

    kills: list[dict[str, object]] = []
    attempts = 0
    while len(kills) < args.kills and attempts < 3 * args.kills:
        attempts += 1
        before = rows_checkpointed(out)
        # Kill once a random share of the remaining rows is checkpointed, plus a random extra moment,
        # so the kill lands while a window is being read, scored or written, not just at a checkpoint.
        target = before + rng.uniform(0.1, 0.6) * (args.rows - before)
        proc = subprocess.Popen([*command(src, out, args.model), "--resume"])
        t0 = time.perf_counter()
        while proc.poll() is None and rows_checkpointed(out) < target:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            print(f"attempt {attempts}: the run ended before the kill; trying again", file=sys.stderr)
            out.unlink(missing_ok=True)
            continue
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done = rows_checkpointed(out)
        kills.append(
            {"after_s": round(time.perf_counter() - t0, 2), "from_row": before, "checkpointed": done}
        )
        print(
            f"kill {len(kills)}: SIGKILL after {kills[-1]['after_s']}s, {done} rows checkpointed",
            file=sys.stderr,
        )

    subprocess.run([*command(src, out, args.model), "--resume"], check=True)
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text(encoding="utf-8"))
    identical = len(kills) == args.kills and out.read_bytes() == ref.read_bytes()
    leftovers = [p.name for p in args.workdir.iterdir() if p.name.startswith(f".{out.name}")]
    result = {
        "rows": args.rows,
        "uninterrupted_s": round(clean_s, 1),
        "kills": kills,
        "final_resumed_from_row": manifest["resumed_from_row"],
        "identical": identical,
        "leftover_files": leftovers,
    }
    print(json.dumps(result, indent=2))
    sys.exit(0 if identical and not leftovers else 1)


if __name__ == "__main__":
    main()
