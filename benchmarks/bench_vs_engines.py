"""clsrun against every engine a user could pick instead, on one BERT bundle and one file of texts.

Engines, each timed over the whole file as one pass of tokenize + plan + pad + infer (model load and
compilation excluded), alternating in every repeat, median of repeats; each engine's first pass is a
warm-up outside the median, reported as ``first_pass`` (where a kernel is prepared per input shape, that
pass pays for it, as ``clsrun predict``'s one pass in a fresh process does):

- ``clsrun-api``: ``Classifier.load(bundle).predict(texts)`` with ``--backend auto`` (what it runs is printed);
- ``clsrun-predict``: ``clsrun predict FILE`` as a subprocess: ``in_run`` is its manifest's rows/s,
  ``whole_process`` the rows over the process's wall time (start-up, model load, reading, writing);
- ``ort-int8``: a plain loop over onnxruntime on the bundle's ``onnx/model.int8.onnx``, one session with
  every thread, batches of ``--batch-tokens`` padded tokens sorted by length;
- ``openvino-int8``: a plain loop over OpenVINO on the bundle's ``openvino/model.int8.xml`` (THROUGHPUT
  hint, one stream per thread, an ``AsyncInferQueue`` with one request per stream, widths padded to 8, bf16
  for what int8 leaves float where the CPU computes bf16); where it does, ``openvino-int8-f32`` is the same
  loop in f32, as clsrun runs a variant whose export gate did not pass it in bf16;
- ``ctranslate2-int8``: a CTranslate2 encoder converted beforehand (``--ct2 DIR``, from
  ``ct2-transformers-converter --model BUNDLE --output_dir DIR --quantization int8``) plus the bundle's
  mean pooling and head in numpy (mean-pooling bundles only);
- ``torch-fp32``, ``torch-bf16``: eager PyTorch, batches of 32 rows (what users write first);
- ``transformers-pipeline``: ``transformers.pipeline("text-classification")`` on the bundle's weights,
  ``batch_size=32`` (``clsrun.bench.backends.timing_pipeline``). For a mean-pooling bundle, which that
  pipeline cannot run, it is the same encoder under a newly initialised head: the same cost, not clsrun's
  labels, so its agreement is ``null`` and ``notes`` says why.

An engine that cannot run here (not installed, variant not exported, no converted model) is reported as
skipped with the reason. Labels are compared with the bundle's fp32 ONNX file (``agreement``); where the
bundle was copied without it (``cpu_engines_check.py`` carries int8 files only), with ``--reference``, the
fp32 labels a run with the file saved there. Prints one JSON object, with what ``--backend auto`` chose and
why, and the load average before and after. Usage:

    .venv/bin/python benchmarks/bench_vs_engines.py --model BUNDLE --data short.csv [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from clsrun.runtime.batching import plan_batches
from clsrun.runtime.bundle import Bundle
from clsrun.runtime.encode import make_encoder
from clsrun.runtime.infer import sparse_inputs
from clsrun.runtime.textnorm import normalize_many

Engine = Callable[[], np.ndarray]  # one timed pass over every text: (N, C) logits or probabilities


class Skipped(Exception):
    """This engine cannot run here; the message says why."""


def read_texts(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)]


def batched(bundle: Bundle, texts: list[str], batch_tokens: int, pad_to: int = 1) -> Any:
    """Yield ``(rows, {input: (B, T) int64})`` as clsrun feeds them: normalised, tokenized, sorted token
    budget batches; widths padded with zeros to a multiple of ``pad_to``."""
    encoder = make_encoder(bundle)
    tokens = encoder.tokenize(normalize_many(texts, bundle.spec.normalization))
    for rows in plan_batches(tokens.lengths, batch_tokens, 1024, sort=True):
        feeds = encoder.pad(tokens, rows)
        extra = -next(iter(feeds.values())).shape[1] % pad_to
        yield rows, {k: np.pad(v, ((0, 0), (0, extra))) for k, v in feeds.items()} if extra else feeds


def ort_engine(bundle: Bundle, texts: list[str], file: str, threads: int, batch_tokens: int) -> Engine:
    import onnxruntime as ort

    if not bundle.has(file):
        raise Skipped(f"{file} not exported")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(bundle.file(file)), options, providers=["CPUExecutionProvider"])
    if sparse_inputs(session):
        raise Skipped(
            f"{file} takes a sparse input (the n-gram model's graph); this loop feeds padded batches"
        )
    names = [i.name for i in session.get_inputs()]
    return plain_loop(
        bundle, texts, batch_tokens, lambda feeds: session.run(None, {n: feeds[n] for n in names})[0]
    )


def plain_loop(
    bundle: Bundle, texts: list[str], batch_tokens: int, infer: Callable[[dict[str, np.ndarray]], np.ndarray]
) -> Engine:
    """A pass that runs ``infer`` on every batch in turn and puts its ``(B, C)`` output in row order."""

    def run() -> np.ndarray:
        out = np.zeros((len(texts), len(bundle.labels)), np.float32)
        for rows, feeds in batched(bundle, texts, batch_tokens):
            out[rows] = infer(feeds)
        return out

    return run


def openvino_engine(
    bundle: Bundle, texts: list[str], threads: int, batch_tokens: int, precision: str = "best"
) -> Engine:
    """``precision``: ``best`` (bf16 for what int8 leaves float where the CPU computes it natively, else
    f32) or ``f32`` (only where the CPU has bf16: elsewhere it is ``best`` again, skipped)."""
    try:
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints
    except ImportError as e:
        raise Skipped("openvino not installed (pip install 'clsrun[openvino]')") from e
    if not bundle.has("openvino/model.int8.xml"):
        raise Skipped("openvino/model.int8.xml not exported (clsrun export --precision ...,ov-int8)")
    core = ov.Core()
    bf16 = "BF16" in core.get_property("CPU", props.device.capabilities)
    if precision == "f32" and not bf16:
        raise Skipped("this CPU has no bf16: openvino-int8 runs in f32 already")
    config = {
        hints.performance_mode: hints.PerformanceMode.THROUGHPUT,
        props.num_streams: threads,
        props.inference_num_threads: threads,
        # the best a user would set: bf16 for what int8 leaves float where the CPU computes it natively
        hints.inference_precision: "bf16" if bf16 and precision == "best" else "f32",
    }
    xml, weights = bundle.file("openvino/model.int8.xml"), bundle.file("openvino/model.int8.bin")
    compiled = core.compile_model(core.read_model(str(xml), str(weights)), "CPU", config)
    jobs = ov.AsyncInferQueue(compiled, threads)
    names = [i.any_name for i in compiled.inputs]

    def run() -> np.ndarray:
        out = np.zeros((len(texts), len(bundle.labels)), np.float32)

        def done(request: Any, rows: np.ndarray) -> None:
            out[rows] = request.get_output_tensor(0).data

        jobs.set_callback(done)
        for rows, feeds in batched(bundle, texts, batch_tokens, pad_to=8):
            jobs.start_async({n: feeds[n] for n in names}, rows)
        jobs.wait_all()
        return out

    return run


def ct2_engine(
    bundle: Bundle, texts: list[str], folder: Path | None, threads: int, batch_tokens: int
) -> Engine:
    try:
        import ctranslate2
    except ImportError as e:
        raise Skipped("ctranslate2 not installed") from e
    if folder is None or bundle.spec.model.get("pooling") != "mean":
        raise Skipped("needs --ct2 DIR (a converted encoder) and a mean-pooling bundle")
    from safetensors.numpy import load_file

    encoder = ctranslate2.Encoder(str(folder), device="cpu", compute_type="int8", intra_threads=threads)
    head = load_file(str(bundle.file("model.safetensors")))
    weight, bias = head["classifier.weight"].astype(np.float32).T, head["classifier.bias"]  # (H, C), (C,)

    def infer(feeds: dict[str, np.ndarray]) -> np.ndarray:
        mask = feeds["attention_mask"]  # (B, T)
        ids = [r[:n].tolist() for r, n in zip(feeds["input_ids"], mask.sum(1), strict=True)]
        hidden = np.asarray(encoder.forward_batch(ids).last_hidden_state)  # (B, T, H)
        m = mask[:, : hidden.shape[1], None].astype(np.float32)  # (B, T, 1)
        return (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9) @ weight + bias  # (B, C)

    return plain_loop(bundle, texts, batch_tokens, infer)


def torch_engine(bundle: Bundle, texts: list[str], dtype: str, threads: int) -> Engine:
    try:
        import torch

        from clsrun.trainer.models import load_model
    except ImportError as e:
        raise Skipped("torch not installed (clsrun[train])") from e
    torch.set_num_threads(threads)
    model = load_model(bundle).eval().to(dtype=getattr(torch, dtype))
    encoder = make_encoder(bundle)

    def run() -> np.ndarray:
        tokens = encoder.tokenize(normalize_many(texts, bundle.spec.normalization))
        out = np.zeros((len(texts), len(bundle.labels)), np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), 32):
                rows = np.arange(start, min(start + 32, len(texts)))
                feeds = {k: torch.from_numpy(v) for k, v in encoder.pad(tokens, rows).items()}
                out[rows] = model(**feeds).float().numpy()
        return out

    return run


def pipeline_engine(bundle: Bundle, texts: list[str], threads: int, notes: dict[str, str]) -> Engine:
    """The ``transformers`` pipeline, every class's score in the bundle's label order; a head that is not
    the bundle's (mean pooling) is said in ``notes``."""
    if bundle.spec.kind != "bert":
        raise Skipped(f"a {bundle.spec.kind} bundle is not a Hugging Face model")
    try:
        import torch

        from clsrun.bench.backends import timing_pipeline
    except ImportError as e:
        raise Skipped("torch/transformers not installed (clsrun[train])") from e
    torch.set_num_threads(threads)
    pipe, fresh = timing_pipeline(bundle, "cpu")
    if fresh:
        notes["transformers-pipeline"] = f"not the bundle's head ({len(fresh)} weights newly initialised)"
    column = {name: int(i) for i, name in pipe.model.config.id2label.items()}
    max_length = bundle.spec.max_length

    def run() -> np.ndarray:
        out = np.zeros((len(texts), len(bundle.labels)), np.float32)
        results = pipe(texts, batch_size=32, truncation=True, max_length=max_length, top_k=None)
        for row, scores in enumerate(results):
            for score in scores:
                out[row, column[score["label"]]] = score["score"]
        return out

    return run


def api_engine(bundle: Bundle, texts: list[str], threads: int, chose: dict[str, str]) -> Engine:
    """``Classifier.load`` with ``--backend auto``; what it chose and why go into ``chose``."""
    from clsrun.runtime.classifier import Classifier
    from clsrun.runtime.variant import Variant

    clf = Classifier.load(bundle, Variant(threads=threads))
    chose.update(variant=clf.choice.key, reason=clf.choice.reason)
    print(f"clsrun --backend auto runs {clf.choice.key}: {clf.choice.reason}", file=sys.stderr)
    return lambda: clf.predict(texts).probs


def clsrun_script() -> str:
    """The ``clsrun`` console script of this interpreter's environment, else the first on PATH."""
    beside = Path(sys.executable).parent / "clsrun"
    return str(beside) if beside.exists() else shutil.which("clsrun") or "clsrun"


def predict_process(bundle: Bundle, data: Path, out: Path, threads: int) -> tuple[float, float, np.ndarray]:
    """``clsrun predict`` as a subprocess: (whole-process rows/s, the manifest's in-run rows/s, labels)."""
    command = [clsrun_script(), "predict", str(data), "--model", str(bundle.root)]
    command += ["--out", str(out), "--threads", str(threads), "--overwrite", "--quiet"]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    manifest = json.loads(Path(f"{out}.manifest.json").read_text(encoding="utf-8"))
    with open(out, newline="", encoding="utf-8") as f:
        labels = np.array([bundle.labels.index(r["label"]) for r in csv.DictReader(f)])
    return manifest["rows_read"] / wall, float(manifest["rows_per_s"]), labels


def open_engines(
    args: argparse.Namespace, bundle: Bundle, texts: list[str], chose: dict[str, str], notes: dict[str, str]
) -> tuple[dict[str, Engine], dict[str, str]]:
    """Every engine that can run here, and the reason for each one skipped."""
    t, bt = args.threads, args.batch_tokens
    makers: dict[str, Callable[[], Engine]] = {
        "clsrun-api": lambda: api_engine(bundle, texts, t, chose),
        "ort-int8": lambda: ort_engine(bundle, texts, "onnx/model.int8.onnx", t, bt),
        "openvino-int8": lambda: openvino_engine(bundle, texts, t, bt),
        "openvino-int8-f32": lambda: openvino_engine(bundle, texts, t, bt, "f32"),
        "ctranslate2-int8": lambda: ct2_engine(bundle, texts, args.ct2, t, bt),
        "torch-fp32": lambda: torch_engine(bundle, texts, "float32", t),
        "torch-bf16": lambda: torch_engine(bundle, texts, "bfloat16", t),
        "transformers-pipeline": lambda: pipeline_engine(bundle, texts, t, notes),
    }
    engines, skipped = {}, {}
    for name, make in makers.items():
        if name.startswith(("torch", "transformers")) and args.no_torch:
            skipped[name] = "--no-torch"
            continue
        try:
            engines[name] = make()
        except Skipped as e:
            skipped[name] = str(e)
    return engines, skipped


def timed(engine: Engine, rows: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = engine()
    return rows / (time.perf_counter() - start), out


def onnx_fp32_labels(
    bundle: Bundle, texts: list[str], threads: int = 2, batch_tokens: int = 1024
) -> np.ndarray:
    """The labels the bundle's fp32 ONNX file gives ``texts``: the reference every engine is compared with."""
    return ort_engine(bundle, texts, "onnx/model.onnx", threads, batch_tokens)().argmax(1)


def fp32_labels(args: argparse.Namespace, bundle: Bundle, texts: list[str]) -> np.ndarray:
    """The fp32 ONNX file's labels (saved to ``--reference`` when given), else those a run saved there."""
    if bundle.has("onnx/model.onnx"):
        labels = onnx_fp32_labels(bundle, texts, args.threads, args.batch_tokens)
        if args.reference:
            args.reference.write_text(json.dumps(labels.tolist()), encoding="utf-8")
        return labels
    if args.reference and args.reference.exists():
        labels = np.array(json.loads(args.reference.read_text(encoding="utf-8")))
        if len(labels) == len(texts):
            return labels
        raise SystemExit(f"{args.reference}: {len(labels)} labels for {len(texts)} texts")
    raise SystemExit("onnx/model.onnx is not in the bundle: give --reference, the fp32 labels a run saved")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="an exported BERT bundle")
    ap.add_argument("--data", type=Path, required=True, help="CSV with a text column")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-tokens", type=int, default=1024, help="plain loops' padded tokens per batch")
    ap.add_argument("--ct2", type=Path, default=None, help="a CTranslate2 encoder converted from the bundle")
    ap.add_argument("--rows", type=int, default=0, help="score only the first N texts (0: all)")
    ap.add_argument(
        "--no-torch", action="store_true", help="leave eager PyTorch and the transformers pipeline out"
    )
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/clsrun-bench-engines"))
    ap.add_argument(
        "--reference", type=Path, default=None,
        help="JSON file of the fp32 labels: written when the bundle has onnx/model.onnx, read when not",
    )  # fmt: skip
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    bundle = Bundle.load(args.model)
    texts = read_texts(args.data)
    if args.rows:  # the same first rows for every engine, clsrun predict's input file included
        texts = texts[: args.rows]
        args.data = args.workdir / f"{args.data.stem}_{len(texts)}.csv"
        with open(args.data, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([["text"], *([t] for t in texts)])
    reference = fp32_labels(args, bundle, texts)
    chose: dict[str, str] = {}
    notes: dict[str, str] = {}  # engines whose labels are not comparable with the bundle's
    engines, skipped = open_engines(args, bundle, texts, chose, notes)
    # Warm-up passes, not in the medians; their rate is reported (``first_pass``): a fresh process such as
    # ``clsrun predict``'s meets every batch shape for the first time, as these passes do.
    first = {name: timed(engine, len(texts)) for name, engine in engines.items()}
    labels = {name: out.argmax(1) for name, (_, out) in first.items()}
    loads = [os.getloadavg()]
    rates: dict[str, list[float]] = {
        name: [] for name in [*engines, "clsrun-predict-in-run", "clsrun-predict-whole"]
    }
    for _ in range(args.repeats):
        for name, engine in engines.items():
            rates[name].append(timed(engine, len(texts))[0])
        whole, in_run, labels["clsrun-predict-in-run"] = predict_process(
            bundle, args.data, args.workdir / "out.csv", args.threads
        )
        rates["clsrun-predict-in-run"].append(in_run)
        rates["clsrun-predict-whole"].append(whole)
        loads.append(os.getloadavg())
    labels["clsrun-predict-whole"] = labels["clsrun-predict-in-run"]
    manifest = json.loads((args.workdir / "out.csv.manifest.json").read_text(encoding="utf-8"))
    results = {
        name: {
            "rows_per_s_median": round(statistics.median(r), 1),
            "runs": [round(x, 1) for x in r],
            "agreement_with_fp32": (
                None if name in notes else round(float((labels[name] == reference).mean()), 4)
            ),
            **({"first_pass": round(first[name][0], 1)} if name in first else {}),
        }
        for name, r in rates.items()
    }
    print(json.dumps({
        "data": str(args.data), "rows": len(texts), "threads": args.threads, "repeats": args.repeats,
        "results": results, "skipped": skipped, "notes": notes, "api_auto_choice": chose,
        "predict_choice": {k: manifest.get(k) for k in ("backend", "precision", "providers", "choice_reason")},
        "load_average": [[round(x, 2) for x in la] for la in loads],
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
