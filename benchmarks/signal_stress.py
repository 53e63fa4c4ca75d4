"""Signals at random moments: SIGINT/SIGTERM a `clsrun predict` run, check its exit, resume, compare.

    python benchmarks/signal_stress.py [--signals 100] [--rows 30000] [--model BUNDLE] [--seed 0]

1. An uninterrupted run gives the reference output and the run's duration (start-up included).
2. ``--signals`` times: start a fresh run (``--overwrite``), send SIGINT or SIGTERM (alternating) after a
   random delay between 0 and 1.2x that duration (so some land during start-up imports, some mid-run,
   some after the output is published), and wait at most ``--timeout`` seconds.
   - exit 130 (SIGINT) or 143 (SIGTERM): stderr must be one line, and the output of the previous case
     untouched; then ``--resume`` must exit 0 with an output byte-identical to the reference;
   - exit 0 (the run finished first, or the signal came once the output was complete): the output must
     be byte-identical to the reference;
   - death by the signal itself (or SIGINT's "Fatal Python error" in the interpreter's own site import):
     the signal came while the interpreter was still starting, before any of clsrun's code (and so its
     handlers) existed; no program can catch that. Counted apart, and only accepted when nothing was
     written (no ``.OUT.partial/``, no lock, the old output untouched) and ``--resume`` then gives the
     reference output;
   - anything else, or no exit within the timeout (a hang), is a failure.
   After each case nothing may be left beside the output (no ``.OUT.partial/``, no lock file).
3. A summary: counts per outcome. Exit status 0 only with zero failures.
"""

from __future__ import annotations

import argparse
import collections
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench_predict_throughput import DEFAULT_SOURCE, make_input  # type: ignore[import-not-found]

EXPECTED = {signal.SIGINT: 130, signal.SIGTERM: 143}


def command(src: Path, out: Path, model: str | None, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "clsrun", "predict", str(src), "--out", str(out), "--quiet", *extra]
    return [*cmd, *(["--model", model] if model else [])]


def leftovers(out: Path) -> list[str]:
    """Files clsrun made beside ``out`` that should be gone once it is published."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}"))


def _stamp(path: Path) -> tuple[int, int] | None:
    """(inode, mtime) of ``path``, None when absent: tells whether a run replaced it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _before_clsrun(signum: int, code: int, err: str) -> bool:
    """The process died of the signal itself (no handler of clsrun's existed yet: it was still starting
    the interpreter), or SIGINT cut the interpreter's own start-up (its site import) short."""
    return code == -signum or (signum == signal.SIGINT and code == 1 and "Fatal Python error" in err)


def one_case(
    src: Path, out: Path, model: str | None, signum: int, delay: float, ref: bytes, timeout: float
) -> tuple[str, str]:
    """Run, signal, judge; returns (outcome, detail). Outcomes starting with "FAIL" are failures."""
    before = _stamp(out)
    proc = subprocess.Popen(
        command(src, out, model, "--overwrite"), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    time.sleep(delay)
    sent = proc.poll() is None
    if sent:
        proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return "FAIL hang", f"no exit {timeout:.0f}s after {signal.Signals(signum).name} at {delay:.2f}s"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    name = signal.Signals(signum).name
    if proc.returncode == 0:
        if not out.is_file() or out.read_bytes() != ref:
            return "FAIL wrong output", f"exit 0 after a signal at {delay:.2f}s"
        # Named by signal: a run that ignored its signal (started with it ignored) shows up as a skew here.
        first = f"finished first ({name} {'sent while running' if sent else 'not sent'})"
        return (first, "") if not leftovers(out) else ("FAIL left files", ", ".join(leftovers(out)))
    early = _before_clsrun(signum, proc.returncode, err)
    if early and (leftovers(out) or _stamp(out) != before):
        return "FAIL start-up kill wrote files", f"{name} at {delay:.2f}s: {leftovers(out)}"
    if not early and proc.returncode != EXPECTED[signum]:
        return "FAIL exit code", f"{proc.returncode} for {name} at {delay:.2f}s: {lines}"
    if not early and len(lines) != 1:
        return "FAIL message", f"{len(lines)} lines on stderr: {lines[:4]}"
    if _stamp(out) != before:
        return "FAIL published", "an interrupted run replaced the output under its final name"
    resumed = subprocess.run(
        command(src, out, model, "--resume"), capture_output=True, text=True, timeout=timeout
    )
    if resumed.returncode != 0 or not out.is_file() or out.read_bytes() != ref:
        return "FAIL resume", f"exit {resumed.returncode}: {resumed.stderr.strip()[:300]}"
    if leftovers(out):
        return "FAIL left files", ", ".join(leftovers(out))
    if early:
        return f"{name} during interpreter start-up (killed by it, nothing written), resumed identical", ""
    return f"interrupted {name}, one line, resumed identical", ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="bundle folder (default: the shipped default model)")
    ap.add_argument("--rows", type=int, default=30_000)
    ap.add_argument("--signals", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds after which a run counts as hung")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/clsrun-bench/signals"))
    args = ap.parse_args()
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started as a shell's background job: SIGINT is ignored here, and every run would inherit that
        # (clsrun keeps an inherited SIG_IGN, as `nohup` users expect), so none would be interrupted by it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("SIGINT was ignored (a background job): restored for the runs", flush=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    src = make_input(args.source, args.rows, args.workdir / f"{args.source.stem}_{args.rows}.csv")
    ref_out, out = args.workdir / "ref.csv", args.workdir / "out.csv"
    started = time.perf_counter()
    subprocess.run(command(src, ref_out, args.model, "--overwrite"), check=True)
    duration = time.perf_counter() - started
    ref = ref_out.read_bytes()
    print(f"reference run: {duration:.2f}s for {args.rows} rows", flush=True)
    counts: collections.Counter[str] = collections.Counter()
    delays: collections.defaultdict[str, list[float]] = collections.defaultdict(list)
    for i in range(args.signals):
        signum = (signal.SIGINT, signal.SIGTERM)[i % 2]
        delay = rng.uniform(0, 1.2 * duration)
        outcome, detail = one_case(src, out, args.model, signum, delay, ref, args.timeout)
        counts[outcome] += 1
        delays[outcome].append(delay)
        if outcome.startswith("FAIL"):
            print(f"  #{i}: {outcome}: {detail}", flush=True)
    for outcome, n in sorted(counts.items()):
        span = f"signal sent {min(delays[outcome]):.2f}-{max(delays[outcome]):.2f}s after start"
        print(f"{n:5d}  {outcome} ({span})")
    failures = sum(n for o, n in counts.items() if o.startswith("FAIL"))
    print(f"{args.signals} signals, {failures} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
