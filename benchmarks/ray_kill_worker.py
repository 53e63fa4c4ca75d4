"""Kill one Ray worker process mid-run: the job still completes, and its output equals the local engine's.

    python benchmarks/ray_kill_worker.py [--model BUNDLE] [--rows 200000] [--files 4] [--workers 2]

1. Builds (or reuses) the inputs of ``ray_throughput.py`` and scores them with the local engine.
2. Starts a local Ray, runs ``score_with_ray`` in a thread, waits until the job has written its first
   part file (so it is mid-run), and sends SIGKILL to one model actor's process (``ray::MapWorker...``).
3. Ray restarts the actor and retries its task (Ray Data's defaults for actor pools: ``max_restarts=-1``,
   ``max_task_retries=-1``); the part written by a retried write task replaces the earlier attempt.
4. Checks: the job succeeded; every input row appears exactly once; label, score, status and error of
   every row equal the local engine's; the manifest's counts add up. Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from ray_throughput import add_job_options, compare, make_inputs, run_local

ACTOR_TITLE = "MapWorker"  # Ray titles an actor process "ray::MapWorker(MapBatches(_ScoreActor))..."


def actor_pids() -> list[int]:
    """Processes of this machine that run a Ray Data map actor."""
    pids = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if cmd.startswith("ray::") and ACTOR_TITLE in cmd:
            pids.append(p.info["pid"])
    return sorted(pids)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_job_options(ap)
    args = ap.parse_args()

    import ray

    from clsrun.runtime.ray_engine.engine import MANIFEST, RayOptions, score_with_ray

    folder = args.workdir / f"in-{args.rows}x{args.files}"
    paths = make_inputs(args.source, args.rows, args.files, folder)
    out = args.workdir / "out-kill"
    out.mkdir(parents=True, exist_ok=True)
    _, local = run_local(args.model, paths, out)

    # log_to_driver off: the raylet's notice about the killed worker would land in the JSON on stdout.
    ray.init(num_cpus=args.workers + 1, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    target = out / "ray.parquet"
    shutil.rmtree(target, ignore_errors=True)
    outcome: dict[str, object] = {}

    def job() -> None:
        try:
            options = RayOptions(workers=args.workers, cpus_per_worker=1.0, quiet=True)
            outcome["result"] = score_with_ray(str(folder), target, args.model, options=options)
        except BaseException as e:  # reported below: the point is to see whether the job survives
            outcome["error"] = f"{type(e).__name__}: {e}"

    thread = threading.Thread(target=job)
    t0 = time.perf_counter()
    thread.start()
    killed: dict[str, object] = {}
    seen: set[int] = set()  # every actor process seen: more than --workers means Ray restarted one
    while thread.is_alive():
        pids = actor_pids()
        seen.update(pids)
        staged = list(out.glob("ray.parquet.tmp-*/part-*"))
        if staged and pids and not killed:
            victim = pids[0]
            os.kill(victim, signal.SIGKILL)
            killed = {"pid": victim, "at_s": round(time.perf_counter() - t0, 2), "parts_written": len(staged)}
        time.sleep(0.2)
    thread.join()
    wall = time.perf_counter() - t0
    ray.shutdown()

    report: dict[str, object] = {"rows": sum(t.num_rows for t in local.values()), "killed": killed}
    report["job_error"] = outcome.get("error")
    ok = bool(killed) and "result" in outcome
    if "result" in outcome:
        manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
        parts = pa.concat_tables(pq.read_table(p) for p in sorted(target.glob("part-*.parquet")))
        checks = compare(local, parts)
        report.update(checks)
        report["manifest_rows_read"] = manifest["rows_read"]
        report["manifest_ok_plus_error"] = manifest["ok"] + manifest["error"]
        report["wall_s"] = round(wall, 2)
        report["actor_processes_seen"] = len(seen)
        rows = checks["input_rows"]
        ok = ok and (
            checks["ray_rows"] == checks["ray_distinct_ids"] == checks["rows_identical"] == rows
            and manifest["rows_read"] == manifest["ok"] + manifest["error"] == rows
        )
    report["passed"] = ok
    print(json.dumps(report, indent=2))
    if not killed:
        print("FAILED: the job ended before a worker could be killed; use more --rows", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
