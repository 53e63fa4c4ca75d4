"""Where a fresh ``clsrun predict --backend openvino`` process loses time: new batch shapes, model load.

On a CPU with AMX, ``clsrun predict`` scored under the same OpenVINO model run warm (issue 15; README,
"Measured on a CPU with AMX"); the suspect is what OpenVINO's CPU plugin does the first time it meets an
input shape (it prepares, and JIT-compiles, kernels per shape; a fresh process meets every shape once).
This measures it directly, in fresh processes, for a few ways of shaping batches, alternating:

- each child process loads the OpenVINO int8 variant (load time), then scores the same file twice with
  ``score.score_file`` (the library call under ``clsrun predict``): the first pass is what a fresh
  ``clsrun predict`` pays, the second what it would cost warm; every model call is logged with its shape
  and duration, so a shape's first call can be told from its later ones;
- ``--configs``: ``pad8`` (the runner's default: widths padded to a multiple of 8, batches planned on
  those widths), ``padN`` (a multiple of N), ``...-oldplan`` (batches planned on the rows' own lengths,
  so one padded width comes in several row counts), ``...-rowsM`` (rows padded with empty rows to a
  multiple of M too), ``...-cache`` (OpenVINO's model cache in a temporary folder, filled by a warm-up
  process first: load time from a cached blob).

Usage (the bundle needs ``openvino/model.int8.xml``; ``openvino`` installed)::

    python benchmarks/ov_shapes.py --model BUNDLE --data short.csv --data long.csv --repeats 2 \\
        --configs pad8,pad32,pad32-rows8 --threads 2 [--pin] > shapes.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def _config(name: str) -> tuple[int, int, bool, bool]:
    """``padN[-rowsM][-oldplan][-cache]`` -> (width multiple, row multiple, old plan, model cache)."""
    pad, rows, oldplan, cache = 8, 1, False, False
    for part in name.split("-"):
        if part.startswith("pad"):
            pad = int(part[3:])
        elif part.startswith("rows"):
            rows = int(part[4:])
        elif part in ("oldplan", "cache"):
            oldplan, cache = oldplan or part == "oldplan", cache or part == "cache"
        else:
            raise SystemExit(f"--configs: {name!r}: padN[-rowsM][-oldplan][-cache]")
    return pad, rows, oldplan, cache


def _patch(
    pad: int, rows: int, oldplan: bool, cache_dir: str | None, calls: list[tuple[int, int, float]]
) -> None:
    """Shape batches as the config says and log every model call, by patching the OpenVINO runner."""
    import openvino as ov

    from clsrun.runtime import batching, ov_runner

    ov_runner.OvRunner.width_multiple = pad
    if oldplan:  # batches planned on the rows' own lengths, as before the runner said its multiple
        plan = batching.plan_batches

        def own_lengths(*a: Any, **kw: Any) -> list[np.ndarray]:
            return plan(*a, **{**kw, "width_multiple": 1})

        batching.plan_batches = own_lengths
    if cache_dir:

        class CachedCore(ov.Core):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.set_property({"CACHE_DIR": cache_dir})

        ov_runner.ov = type(
            "ov", (), {"Core": CachedCore, "Tensor": ov.Tensor, "__version__": ov.__version__}
        )
    run = ov_runner.OvRunner.run

    def logged(self: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
        b = len(next(iter(inputs.values())))
        extra = -b % rows
        if extra:
            inputs = {k: np.pad(v, ((0, extra), (0, 0))) for k, v in inputs.items()}
        t0 = time.perf_counter()
        out = run(self, inputs)
        width = next(iter(inputs.values())).shape[1]
        calls.append((b + extra, width + (-width % pad), time.perf_counter() - t0))
        return out[:b]

    ov_runner.OvRunner.run = logged


def child(args: argparse.Namespace) -> None:
    """One fresh process: load, score ``--data`` twice, print what happened as JSON."""
    pad, rows, oldplan, cache = _config(args.child)
    calls: list[tuple[int, int, float]] = []
    _patch(pad, rows, oldplan, args.cache_dir if cache else None, calls)
    from clsrun.runtime.batching import BatchOptions
    from clsrun.runtime.classifier import Classifier
    from clsrun.runtime.score import OutputOptions, score_file
    from clsrun.runtime.variant import Variant

    t0 = time.perf_counter()
    variant = Variant(backend="openvino", precision="int8", threads=args.threads)
    clf = Classifier.load(args.model, variant, BatchOptions(batch_tokens=args.batch_tokens))
    load_s = time.perf_counter() - t0
    passes = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(2):
            calls.clear()
            out = Path(tmp) / f"out{i}.csv"
            result = score_file(args.data[0], out, clf, options=OutputOptions(overwrite=True))
            shapes = Counter((b, t) for b, t, _ in calls)
            passes.append({
                "rows_per_s": result.manifest["rows_per_s"],
                "wall_s": result.manifest["wall_s"],
                "model_s": round(sum(s for _, _, s in calls), 4),
                "calls": len(calls),
                "shapes": len(shapes),
                "padded_tokens": sum(b * t for b, t, _ in calls),
                "calls_log": [[b, t, round(s, 5)] for b, t, s in calls],
            })  # fmt: skip
    print(
        json.dumps({"load_s": round(load_s, 3), "providers": clf.describe()["providers"], "passes": passes})
    )


def first_shape_cost(first: dict[str, Any], second: dict[str, Any]) -> float:
    """Seconds the first pass spent on shapes' first calls beyond what the same shapes cost warm."""
    warm: dict[tuple[int, int], list[float]] = defaultdict(list)
    for b, t, s in second["calls_log"]:
        warm[(b, t)].append(s)
    seen: set[tuple[int, int]] = set()
    extra = 0.0
    for b, t, s in first["calls_log"]:
        if (b, t) not in seen and warm.get((b, t)):
            extra += s - statistics.median(warm[(b, t)])
        seen.add((b, t))
    return round(extra, 4)


def driver(args: argparse.Namespace) -> dict[str, Any]:
    configs = args.configs.split(",")
    for c in configs:
        _config(c)
    out: dict[str, Any] = {"threads": args.threads, "results": {}}
    # OpenVINO's model cache, and clsrun's speeds cache (the children inherit it): both gone afterwards
    with tempfile.TemporaryDirectory() as cache_dir, tempfile.TemporaryDirectory() as speeds:
        os.environ.setdefault("CLSRUN_CACHE_DIR", speeds)
        for data in args.data:
            runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
            if any(_config(c)[3] for c in configs):  # fill the model cache once, outside the timings
                _child_run(args, data, "pad8-cache", cache_dir)
            for _ in range(args.repeats):
                for c in configs:
                    runs[c].append(_child_run(args, data, c, cache_dir))
            out["results"][data.name] = {c: summary(r) for c, r in runs.items()}
    return out


def _child_run(args: argparse.Namespace, data: Path, config: str, cache_dir: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", config, "--model", str(args.model), "--data", str(data)]
    command += ["--threads", str(args.threads), "--cache-dir", cache_dir]
    if args.batch_tokens:
        command += ["--batch-tokens", str(args.batch_tokens)]
    if args.pin and shutil.which("taskset"):
        command = ["taskset", "-c", ",".join(str(i) for i in range(args.threads)), *command]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{config} on {data}: exit {done.returncode}: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - t0
    return result


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs of one config; the first run's call log kept for reading."""

    def med(f: Any) -> float:
        return round(statistics.median(f(r) for r in runs), 4)

    first, second = (lambda r: r["passes"][0]), (lambda r: r["passes"][1])
    return {
        "first_pass_rows_per_s": med(lambda r: first(r)["rows_per_s"]),
        "second_pass_rows_per_s": med(lambda r: second(r)["rows_per_s"]),
        "first_model_s": med(lambda r: first(r)["model_s"]),
        "second_model_s": med(lambda r: second(r)["model_s"]),
        "first_shape_cost_s": med(lambda r: first_shape_cost(first(r), second(r))),
        "load_s": med(lambda r: r["load_s"]),
        "process_s": med(lambda r: r["process_s"]),
        "calls": runs[0]["passes"][0]["calls"],
        "shapes": runs[0]["passes"][0]["shapes"],
        "padded_tokens": runs[0]["passes"][0]["padded_tokens"],
        "providers": runs[0]["providers"],
        "first_calls_log": runs[0]["passes"][0]["calls_log"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, action="append", required=True, help="CSV with a text column")
    ap.add_argument("--configs", default="pad8-oldplan,pad8,pad16,pad8-cache")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--batch-tokens", type=int, default=None, help="padded tokens per batch (default: predict's)"
    )
    ap.add_argument("--pin", action="store_true", help="pin each child to cores 0..threads-1 (taskset)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    print(json.dumps(driver(args), indent=1))


if __name__ == "__main__":
    main()
