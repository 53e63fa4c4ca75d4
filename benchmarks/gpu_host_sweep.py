"""What feeds the GPU fastest: the host-side settings of a CUDA ``predict``, compared in one process.

The GPU check (``gpu_check.py``) found MiniLM's short texts scored with the GPU mostly idle. This script
measures why and what helps, on a MiniLM-shaped model of random weights (speed does not depend on the
weights) with MiniLM's WordPiece vocabulary, all from the folder ``gpu_check.py --prepare`` writes:

1. ``launch``: the host time to queue one forward of 1,000 x 64 tokens (``score_into``) on an idle host, with
   16 and with 1 torch CPU thread;
2. ``zeros``: the host alone, the model replaced by zeros: how fast reading, encoding and writing can go;
3. ``sweep``: ``score_file`` of the short texts under each setting of encoding processes, tokenizer threads
   per process, torch CPU threads and batch budget (:data:`SETTINGS`), one after the other, with the time
   each pipeline stage spent (window.add: queueing batches on the GPU; _prepare: waiting for encoded
   windows; put/get: waiting on the queues);
4. the best setting and the first (the defaults before this measurement) on twice as many short texts and
   on the long texts.

Writes ``gpu_host_sweep.json`` into ``--out`` after each part. Usage, on the GPU machine (the device tool's
``run``, from the repository root, with ``.gpu-check`` carried; about 90 s on one H200)::

    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_host_sweep.py --data .gpu-check --out $OUT

``--device cpu --short 1000 --long 100`` runs the same code on a CPU (slowly: the model runs there too).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_check  # the shim, the texts and the random BERT bundle come from there

# (encoding processes, tokenizer threads per process (0: one per core), torch CPU threads, batch tokens,
# max batch rows, name). The first is what predict did before this measurement.
SETTINGS = [
    (4, 0, 16, 65536, 4096, "old defaults"),
    (4, 3, 16, 65536, 4096, "3 tokenizer threads"),
    (4, 3, 1, 65536, 4096, "3 tokenizer threads, torch 1"),
    (4, 3, 1, 262144, 8192, "3 tokenizer threads, torch 1, 256k"),
    (4, 0, 1, 262144, 8192, "torch 1, 256k (new defaults)"),
    (2, 7, 1, 262144, 8192, "2 processes x 7, torch 1, 256k"),
    (3, 4, 1, 262144, 8192, "3 processes x 4, torch 1, 256k"),
    (1, 0, 1, 262144, 8192, "encoding in the reader thread, torch 1, 256k"),
]
MINILM_SHAPE = {
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
}


class Zeros:
    """A runner that returns zero logits at once: what the host alone can do."""

    def __init__(self, classes: int) -> None:
        self.classes = classes
        self.providers = ["zeros"]

    def run(self, inputs: dict[str, Any]) -> Any:
        import numpy as np

        return np.zeros((len(next(iter(inputs.values()))), self.classes), np.float32)


class StageTimes:
    """Seconds spent per (thread, step), by wrapping the pipeline's steps in place."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def wrap(self, owner: Any, name: str) -> None:
        fn = getattr(owner, name)
        seconds = self.seconds

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                thread = threading.current_thread().name.rstrip("-0123456789")
                seconds[f"{thread}:{name.lstrip('_')}"] += time.perf_counter() - start

        setattr(owner, name, timed)

    def take(self) -> dict[str, float]:
        taken = {k: round(v, 2) for k, v in sorted(self.seconds.items())}
        self.seconds.clear()
        return taken


def launch_cost(bundle: Any, device: str, classes: int) -> dict[str, Any]:
    """Host milliseconds to queue one 1,000 x 64 forward (16 rows on a CPU), with 16 and 1 torch threads."""
    import numpy as np
    import torch

    from clsrun.runtime.classifier import Classifier
    from clsrun.runtime.variant import Variant

    runner: Any = Classifier.load(bundle, Variant("torch", "auto", device)).runner
    rows = 1000 if device == "cuda" else 16  # on a CPU the forward itself runs here: keep it short
    ids = np.random.default_rng(0).integers(1000, 5000, size=(rows, 64))
    inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    window = runner.open_window(30 * rows, classes)
    result = {}
    for threads in (16, 1):
        torch.set_num_threads(threads)
        for i in range(5):  # warm-up
            runner.score_into(window.logits, np.arange(rows) + rows * i, inputs)
        if device == "cuda":
            torch.cuda.synchronize()
        queued = []
        for i in range(20):
            start = time.perf_counter()
            runner.score_into(window.logits, np.arange(rows) + rows * (i % 30), inputs)
            queued.append(time.perf_counter() - start)
        result[f"torch_threads_{threads}"] = {"queue_ms_median": round(statistics.median(queued) * 1e3, 2)}
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data", type=Path, default=gpu_check.DEFAULT_DATA, help="what gpu_check.py --prepare wrote"
    )
    ap.add_argument("--out", type=Path, default=Path("gpu-host-sweep"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--short", type=int, default=100_000, help="short texts per sweep run")
    ap.add_argument("--long", type=int, default=20_000)
    args = ap.parse_args()
    shim = gpu_check.build_shim(Path(tempfile.mkdtemp(prefix="clsrun-shim-")))
    sys.path.insert(0, str(shim))  # spawned encoding processes inherit sys.path
    work = Path(tempfile.mkdtemp(prefix="clsrun-sweep-"))
    report: dict[str, Any] = {"device": args.device, "cores": os.cpu_count()}
    started = time.monotonic()

    def save(part: str, value: Any) -> None:
        report[part] = value
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_host_sweep.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        print(f"[{time.monotonic() - started:6.1f}s] {part}: {json.dumps(value)[:600]}", flush=True)

    articles, labels = gpu_check.read_articles(args.data / "bbc_en_train.csv.gz")
    short, long = gpu_check.make_texts(articles, 2 * args.short, args.long)
    files = {
        "short": gpu_check.write_texts(work / "short.csv", short[: args.short]),
        "short x2": gpu_check.write_texts(work / "short2.csv", short),
        "long": gpu_check.write_texts(work / "long.csv", long),
    }
    shape = dataclasses.replace(gpu_check.GPU, big=MINILM_SHAPE, big_max_length=256)
    classes = sorted(set(labels))
    gpu_check.random_bert_bundle(work / "minilm_shaped", args.data / "minilm", classes, shape)

    import torch

    import clsrun.runtime.pipeline as pipeline
    import clsrun.trainer.torch_runner as torch_runner
    from clsrun.runtime.batching import BatchOptions
    from clsrun.runtime.bundle import Bundle
    from clsrun.runtime.classifier import Classifier
    from clsrun.runtime.partial import PartialOutput
    from clsrun.runtime.score import OutputOptions, score_file
    from clsrun.runtime.variant import Variant

    bundle = Bundle.load(work / "minilm_shaped")
    save("launch", launch_cost(bundle, args.device, len(classes)))
    stages = StageTimes()
    for owner, name in (
        (PartialOutput, "add"),
        (torch_runner.TorchWindow, "add"),
        (pipeline.Pipeline, "_prepare"),
        (pipeline.Pipeline, "_put"),
        (pipeline.Pipeline, "_get"),
    ):
        stages.wrap(owner, name)

    def score(
        kind: str, setting: tuple[Any, ...], change: Callable[[Any], Any] = lambda c: c
    ) -> dict[str, Any]:
        processes, tokenizer_threads, torch_threads, tokens, rows, name = setting
        batching = BatchOptions(batch_tokens=tokens, max_batch_rows=rows)
        clf = Classifier.load(bundle, Variant("torch", "auto", args.device), batching)
        clf = dataclasses.replace(
            clf, preparers=processes, encode_threads=tokenizer_threads, encode_in_threads=False
        )
        clf = change(clf)
        torch.set_num_threads(torch_threads)
        stages.take()
        start = time.perf_counter()
        out = work / f"out.{kind}.csv"
        score_file(files[kind], out, clf, options=OutputOptions(overwrite=True))
        seconds = time.perf_counter() - start
        n = len(short) if kind == "short x2" else args.short if kind == "short" else len(long)
        return {"setting": name, "texts": kind, "rows_per_s": round(n / seconds), "stages_s": stages.take()}

    save("zeros", score("short", SETTINGS[0], lambda c: dataclasses.replace(c, runner=Zeros(len(classes)))))
    sweep = []
    for setting in SETTINGS:
        sweep.append(score("short", setting))
        save("sweep", sweep)
    best = max(range(len(SETTINGS)), key=lambda i: sweep[i]["rows_per_s"])
    for kind in ("short x2", "long"):
        save(f"{kind}: best", score(kind, SETTINGS[best]))
        save(f"{kind}: old defaults", score(kind, SETTINGS[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
