"""Where a BERT bundle's onnxruntime time goes, and whether padding batch widths to a multiple helps.

Two measurements on one ONNX variant of a bundle (``onnx/model.int8.onnx`` by default) and the texts of a CSV:

1. **Operators**: one pass over the texts with onnxruntime's profiler on, one thread; the share of kernel
   time per operator type (what a faster kernel, a fusion or a rewrite could win at most).
2. **Pad multiples**: the texts tokenized once, sorted by length, cut into batches of at most
   ``--batch-tokens`` padded tokens with widths rounded up to each multiple in ``--pad``; two threads each
   running one batch at a time on one shared single-thread session (clsrun's streams), rounds alternating
   between the multiples, median rows/s of inference (tokenization excluded).

Prints one JSON object. Usage (B: an exported BERT bundle)::

    .venv/bin/python benchmarks/ort_op_profile.py --model B --data short.csv --rows 512 --pad 1,4,8,16
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow.csv as pacsv
from tokenizers import Tokenizer

from clsrun.runtime.bundle import TOKENIZER_FILE, Bundle

Batch = tuple[np.ndarray, np.ndarray]


def token_ids(bundle: Bundle, texts: list[str]) -> list[np.ndarray]:
    """Each text's token ids, cut to the bundle's max length (the bundle's own tokenizer file)."""
    tokenizer = Tokenizer.from_file(str(bundle.file(TOKENIZER_FILE)))
    tokenizer.enable_truncation(bundle.spec.max_length)
    tokenizer.no_padding()
    return [np.asarray(e.ids, dtype=np.int64) for e in tokenizer.encode_batch(texts)]


def batches(ids: list[np.ndarray], budget: int, multiple: int) -> list[Batch]:
    """Sorted by length, at most ``budget`` padded tokens each, widths rounded up to ``multiple``."""
    lengths = np.array([len(i) for i in ids])
    order = np.argsort(lengths, kind="stable")
    out, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order):
            width = -(-int(lengths[order[end]]) // multiple) * multiple
            if width * (end - start + 1) > budget:
                break
            end += 1
        rows = order[start:end]
        width = -(-int(lengths[rows].max()) // multiple) * multiple
        input_ids = np.zeros((len(rows), width), np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        for k, r in enumerate(rows):
            input_ids[k, : lengths[r]] = ids[r]
            mask[k, : lengths[r]] = 1
        out.append((input_ids, mask))
        start = end
    return out


def session(path: Path, threads: int, profile_prefix: str | None = None) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def operator_shares(path: Path, work: list[Batch]) -> dict[str, float]:
    """Percent of kernel time per operator type over one profiled pass (one thread)."""
    with tempfile.TemporaryDirectory() as tmp:
        s = session(path, 1, str(Path(tmp) / "ort"))
        for input_ids, mask in work:
            s.run(None, {"input_ids": input_ids, "attention_mask": mask})
        events = json.loads(Path(s.end_profiling()).read_text(encoding="utf-8"))
    spent: Counter[str] = Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            spent[e["args"]["op_name"]] += e["dur"]
    total = sum(spent.values()) or 1
    return {op: round(100 * us / total, 1) for op, us in spent.most_common() if us / total >= 0.005}


def pad_rates(path: Path, by_multiple: dict[int, list[Batch]], rows: int, rounds: int) -> dict[int, float]:
    """Median rows/s per multiple, two streams on one single-thread session, rounds alternating."""
    s = session(path, 1)
    pool = ThreadPoolExecutor(2)

    def run(work: list[Batch]) -> None:
        list(pool.map(lambda b: s.run(None, {"input_ids": b[0], "attention_mask": b[1]}), work))

    for work in by_multiple.values():
        run(work)  # warm-up, not timed
    rates: dict[int, list[float]] = {m: [] for m in by_multiple}
    for r in range(rounds):
        for m in list(by_multiple)[:: 1 if r % 2 == 0 else -1]:
            start = time.perf_counter()
            run(by_multiple[m])
            rates[m].append(rows / (time.perf_counter() - start))
    return {m: round(statistics.median(v), 1) for m, v in rates.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="an exported BERT bundle")
    ap.add_argument("--data", type=Path, required=True, help="CSV with a text column")
    ap.add_argument("--variant", default="onnx/model.int8.onnx", help="the bundle's ONNX file to run")
    ap.add_argument("--rows", type=int, default=512, help="the first N texts (0: all)")
    ap.add_argument(
        "--batch-tokens", type=int, default=1024, help="padded tokens per batch (clsrun's default)"
    )
    ap.add_argument("--pad", default="1,4,8,16", help="width multiples to compare")
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    bundle = Bundle.load(args.model)
    if bundle.spec.kind != "bert":
        raise SystemExit(f"{args.model}: a {bundle.spec.kind} bundle; this profiles BERT graphs")
    texts = [str(t) for t in pacsv.read_csv(args.data).column("text").to_pylist() if t is not None]
    texts = texts[: args.rows] if args.rows else texts
    ids = token_ids(bundle, texts)
    path = bundle.file(args.variant)
    multiples = [int(m) for m in args.pad.split(",")]
    by_multiple = {m: batches(ids, args.batch_tokens, m) for m in multiples}
    result = {
        "model": str(args.model),
        "variant": args.variant,
        "data": str(args.data),
        "rows": len(texts),
        "tokens_mean": round(float(np.mean([len(i) for i in ids])), 1),
        "operator_percent": operator_shares(path, by_multiple[multiples[0]]),
        "rows_per_s_by_pad_multiple": pad_rates(path, by_multiple, len(texts), args.rounds),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
