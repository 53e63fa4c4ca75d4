"""clsrun against the other CPU engines on a lent machine whose CPU has VNNI/AMX (issue 15), prepared here.

Issue 15 asks that ``--backend auto`` run OpenVINO where it measures faster, which it does on CPUs with
int8 dot-product instructions (AVX-512 VNNI, AMX), and this project's own VM has neither. The GPU machine
lent now and then has a Xeon with AMX but no OpenVINO and no network, and at most 64 MiB travels with the
tree: so ``--prepare`` packs what the check needs into under 58 MiB, and the run on that machine unpacks it
and runs ``bench_vs_engines.py`` there.

``--prepare DIR --model BUNDLE --short CSV --long CSV --wheel OPENVINO_WHEEL`` writes into DIR:

- ``bundle.tar.xz``: the exported BERT bundle without its fp32 ONNX file, safetensors weights and plots
  (too big to travel); ``export_report.json`` and ``clsrun.json`` are rewritten without them, so ``auto``
  chooses among the int8 variants (ONNX dynamic int8 and OpenVINO NNCF int8) by measuring them there;
- ``openvino.tar.xz``: the ``openvino`` package from a wheel for that machine's Python (3.12) with only
  the CPU plugin and the IR reader (GPU/NPU plugins, the other frontends and the headers left out);
- ``short.csv`` / ``long.csv``: the first ``--short-rows`` / ``--long-rows`` texts, and
  ``reference_short.json`` / ``reference_long.json``: the fp32 ONNX file's labels of them, scored here;
- ``gate_reference.json``: eager PyTorch's logits on the bundle's gate rows, for the ``bf16`` part.

``--data DIR --out OUT`` (on the lent machine, from the repository root, ``python3`` with onnxruntime,
tokenizers, pyarrow, typer, numpy) unpacks into a temporary folder, makes the tree importable through
``gpu_check.py``'s shim, and writes ``cpu_engines_check.json``/``.md`` into OUT after each of the
``--parts`` asked for, in this order:

- ``machine``: the CPU: model name, its int8/bf16 flags, OpenVINO's capabilities;
- ``bf16``: what export does on a bf16 CPU: the OpenVINO int8 variant gated again with its float parts in
  bf16 against eager PyTorch's logits on the gate rows (``gate_reference.json``, computed by ``--prepare``
  where the weights are), the verdict written into the unpacked bundle's report, so the parts after it run
  the variant as predict would there;
- ``shapes``: ``ov_shapes.py`` on both files: what a fresh ``clsrun predict`` pays the first time OpenVINO
  meets each batch shape (``--shape-configs``), and model load from OpenVINO's model cache;
- ``bench``: ``bench_vs_engines.py`` on the short and the long texts with ``--threads 2`` pinned to two
  cores (the issue's machine had two), engines alternating, median of 3 repeats; what ``--backend auto``
  chose and the speeds it measured at first use on that CPU (``$CLSRUN_CACHE_DIR``);
- ``eval``: ``clsrun eval`` of the bundle's validation rows with the OpenVINO and the ONNX int8 variants;
- ``cores``: the short texts again with every core, when the ``--budget-s`` allows.

Usage:
    .venv/bin/python benchmarks/cpu_engines_check.py --prepare .cpu-check --model B --short short.csv \\
        --long long.csv --wheel openvino-2026.4.1-...-cp312-cp312-manylinux_2_28_x86_64.whl
    run(command="CUDA_VISIBLE_DEVICES= PYTHONUNBUFFERED=1 python3 benchmarks/cpu_engines_check.py "
                "--data .cpu-check --out $OUT --parts machine,bf16,bench", carry=[".cpu-check"], timeout_s=400)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LEFT_BEHIND = ("onnx/model.onnx", "model.safetensors", "confusion_matrix.png")
# Of the wheel's openvino/ folder: what a CPU run of an IR file does not load.
OV_LEFT_OUT = (
    "libs/libopenvino_intel_gpu_plugin.so",
    "libs/libopenvino_intel_npu_plugin.so",
    "libs/cache.json",  # the GPU plugin's kernel tuning cache
    "include/",
    "cmake/",
    *(f"libs/libopenvino_{f}_frontend" for f in ("onnx", "tensorflow", "pytorch", "paddle", "gguf", "jax")),
    *(f"frontend/{f}/" for f in ("onnx", "tensorflow", "pytorch", "paddle", "jax")),
)
PREPARED_LIMIT = 58 << 20  # the tree (about 5 MiB) plus this must travel in 64 MiB
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def _xz(dest: Path, members: dict[str, Path]) -> None:
    with tarfile.open(dest, "w:xz", preset=6) as tar:
        for name, path in sorted(members.items()):
            tar.add(path, arcname=name, recursive=False)


def pack_bundle(bundle: Path, dest: Path) -> None:
    """The bundle without the files in :data:`LEFT_BEHIND`, its two JSON files rewritten to match."""
    import hashlib

    spec = json.loads((bundle / "clsrun.json").read_text(encoding="utf-8"))
    report = json.loads((bundle / "onnx/export_report.json").read_text(encoding="utf-8"))
    report["variants"] = {k: v for k, v in report["variants"].items() if v.get("file") not in LEFT_BEHIND}
    rates = report.get("speeds", {}).get("rows_per_s", {})
    for key in [k for k in rates if k.endswith("fp32")]:
        del rates[key]
    with tempfile.TemporaryDirectory() as tmp:
        rewritten = Path(tmp) / "export_report.json"
        rewritten.write_text(json.dumps(report, indent=2), encoding="utf-8")
        files = {k: v for k, v in spec["files"].items() if k not in LEFT_BEHIND}
        files["onnx/export_report.json"] = hashlib.sha256(rewritten.read_bytes()).hexdigest()
        (Path(tmp) / "clsrun.json").write_text(
            json.dumps({**spec, "files": files}, indent=1), encoding="utf-8"
        )
        members = {name: bundle / name for name in files}
        members |= {"clsrun.json": Path(tmp) / "clsrun.json", "onnx/export_report.json": rewritten}
        _xz(dest, members)


def pack_openvino(wheel: Path, dest: Path) -> None:
    """The wheel's ``openvino`` package less :data:`OV_LEFT_OUT`."""
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as z:
        names = [
            n for n in z.namelist()
            if n.startswith("openvino/") and not n.endswith("/")
            and not any(n.removeprefix("openvino/").startswith(p) for p in OV_LEFT_OUT)
        ]  # fmt: skip
        z.extractall(tmp, names)
        for n in names:  # the wheel's mode bits (shared libraries must stay readable; nothing runs them)
            (Path(tmp) / n).chmod(0o644)
        _xz(dest, {n: Path(tmp) / n for n in names})


def prepare(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE))
    from bench_vs_engines import onnx_fp32_labels, read_texts

    from clsrun.runtime.bundle import Bundle

    dest: Path = args.prepare
    dest.mkdir(parents=True, exist_ok=True)
    pack_bundle(args.model, dest / "bundle.tar.xz")
    pack_openvino(args.wheel, dest / "openvino.tar.xz")
    bundle = Bundle.load(args.model)
    for name, source, rows in (("short", args.short, args.short_rows), ("long", args.long, args.long_rows)):
        texts = read_texts(source)[:rows]
        with open(dest / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([["text"], *([t] for t in texts)])
        labels = onnx_fp32_labels(bundle, texts).tolist()
        (dest / f"reference_{name}.json").write_text(json.dumps(labels), encoding="utf-8")
    (dest / "gate_reference.json").write_text(json.dumps(gate_reference(bundle).tolist()), encoding="utf-8")
    size = sum(p.stat().st_size for p in dest.iterdir())
    print(f"{dest}: {size / 2**20:.1f} MiB")
    if size > PREPARED_LIMIT:
        raise SystemExit(f"{dest} holds {size / 2**20:.1f} MiB, over {PREPARED_LIMIT >> 20} MiB")


def gate_reference(bundle: Any) -> Any:
    """Eager PyTorch's logits on the bundle's gate rows, as export computes them (the weights stay here)."""
    from clsrun.export.gate import eager_logits, load_eval_set
    from clsrun.trainer.models import load_model

    return eager_logits(load_model(bundle).eval(), load_eval_set(bundle))


# ----------------------------------------------------------------------------------- on the lent machine


def gate_bf16(bundle_path: Path, data: Path) -> dict[str, Any]:
    """What ``clsrun export`` does on a bf16 CPU after gating ``ov-int8``: score it again with its float
    parts in bf16 against the same eager reference (``export.openvino.with_bf16``), and record the
    verdict in the bundle's export report, rehashed, so predict runs bf16 there if it passed."""
    import numpy as np

    from clsrun.export.gate import Gate, load_eval_set
    from clsrun.export.openvino import with_bf16
    from clsrun.runtime.bundle import Bundle, BundleSpec, write_spec

    bundle = Bundle.load(bundle_path)
    report = bundle.export_report() or {}
    entry = report["variants"]["ov-int8"]
    reference = np.array(json.loads((data / "gate_reference.json").read_text(encoding="utf-8")))
    drop = float(report.get("max_accuracy_drop_pts", 1.0))
    gate = Gate(bundle, load_eval_set(bundle), reference, drop, False)
    result = with_bf16(
        gate, "ov-int8", bundle.root / entry["file"], gate.score("ov-int8", bundle.root / entry["file"])
    )
    f32 = {
        k: getattr(result, k) for k in ("gate_passed", "accuracy", "label_agreement", "max_abs_logit_diff")
    }
    bf16 = result.details.get("bf16")
    if bf16 is not None:
        report["variants"]["ov-int8"]["bf16"] = bf16
        (bundle.root / "onnx/export_report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        spec = json.loads((bundle.root / "clsrun.json").read_text(encoding="utf-8"))
        write_spec(bundle.root, BundleSpec.from_json(spec, bundle.root))
    return {"f32": f32, "bf16": bf16, "max_accuracy_drop_pts": drop}


class Run:
    """The report, rewritten after every part, and the environment the parts run in."""

    def __init__(self, out: Path, work: Path, budget_s: float) -> None:
        self.out, self.work, self.budget_s, self.start = out, work, budget_s, time.monotonic()
        self.body: dict[str, Any] = {"parts": {}, "failed": []}
        self.env = dict(os.environ, CLSRUN_CACHE_DIR=str(work / "cache"))

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def command(self, name: str, args: list[str], timeout: float) -> str:
        """Run ``args``; its stdout, or '' when it failed (listed in the report with its stderr's tail)."""
        print(f"[{self.elapsed():6.1f}s] {name}: {' '.join(args)}", flush=True)
        try:
            done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.body["failed"].append(f"{name}: over {timeout:.0f} s")
            return ""
        if done.returncode:
            self.body["failed"].append(f"{name}: exit {done.returncode}: {done.stderr[-1500:]}")
            return ""
        return done.stdout

    def save(self) -> None:
        self.body["elapsed_s"] = round(self.elapsed(), 1)
        (self.out / "cpu_engines_check.json").write_text(json.dumps(self.body, indent=1), encoding="utf-8")
        (self.out / "cpu_engines_check.md").write_text(markdown(self.body), encoding="utf-8")


def unpack(data: Path, work: Path) -> tuple[Path, Path, Path]:
    """(bundle, site folder holding ``openvino``, shim root)."""
    from gpu_check import build_shim

    for name, into in (("bundle.tar.xz", work / "bundle"), ("openvino.tar.xz", work / "site")):
        with tarfile.open(data / name) as tar:
            tar.extractall(into, filter="data")
    return work / "bundle", work / "site", build_shim(work / "shim")


def machine(run: Run) -> dict[str, Any]:
    text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "")
    probe = "import openvino as ov; c = ov.Core(); print(ov.__version__, c.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "flags": [f for f in FLAGS if f in flags],
        "openvino": run.command("openvino", [sys.executable, "-c", probe], 60).strip(),
        "python": sys.version.split()[0],
    }


def bench(run: Run, bundle: Path, data: Path, name: str, threads: int, pin: bool) -> dict[str, Any] | None:
    args = [sys.executable, str(HERE / "bench_vs_engines.py"), "--model", str(bundle)]
    args += ["--data", str(data / f"{name}.csv"), "--reference", str(data / f"reference_{name}.json")]
    args += ["--threads", str(threads), "--repeats", "3", "--no-torch", "--workdir", str(run.work / name)]
    if pin and shutil.which("taskset"):
        args = ["taskset", "-c", ",".join(str(i) for i in range(threads)), *args]
    out = run.command(f"bench {name} x{threads}", args, 300)
    return json.loads(out) if out else None


def clsrun_eval(run: Run, bundle: Path, backend: str) -> dict[str, Any] | None:
    args = ["clsrun", "eval", str(bundle), str(bundle / "validation.jsonl.gz"), "--json"]
    out = run.command(f"eval {backend}", [*args, "--backend", backend, "--precision", "int8"], 120)
    if not out:
        return None
    report = json.loads(out)
    keep = ("rows", "accuracy", "macro_f1", "rows_per_s")
    return {"providers": report["model"]["providers"], **{k: report[k] for k in keep}}


def shapes(run: Run, bundle: Path, data: Path, configs: str) -> dict[str, Any] | None:
    """``ov_shapes.py`` on both files, 2 pinned threads: what a fresh process pays per new batch shape."""
    args = [sys.executable, str(HERE / "ov_shapes.py"), "--model", str(bundle), "--pin", "--repeats", "3"]
    args += ["--data", str(data / "short.csv"), "--data", str(data / "long.csv"), "--configs", configs]
    out = run.command("shapes", args, 240)
    return json.loads(out) if out else None


def bf16_part(run: Run, bundle: Path, data: Path) -> dict[str, Any] | None:
    args = [sys.executable, str(Path(__file__).resolve()), "--gate-bf16", str(bundle), "--data", str(data)]
    out = run.command("bf16 gate", args, 120)
    return json.loads(out.strip().splitlines()[-1]) if out else None


PARTS = ("machine", "bf16", "bench", "eval", "cores", "shapes")


def run_check(data: Path, out: Path, budget_s: float, parts_wanted: set[str], configs: str) -> int:
    sys.path.insert(0, str(HERE))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clsrun-cpu-check-") as tmp:
        run = Run(out, Path(tmp), budget_s)
        bundle, site, shim = unpack(data, run.work)
        run.env["PYTHONPATH"] = os.pathsep.join([str(shim), str(site), run.env.get("PYTHONPATH", "")])
        run.env["PATH"] = os.pathsep.join([str(shim / "bin"), run.env.get("PATH", "")])
        parts = run.body["parts"]
        parts["machine"] = machine(run)
        run.save()
        if "bf16" in parts_wanted:  # first: what follows then runs the variant as its verdict says
            parts["bf16 gate"] = bf16_part(run, bundle, data)
            run.save()
        if "shapes" in parts_wanted:
            parts["shapes"] = shapes(run, bundle, data, configs)
            run.save()
        for name in ("short", "long") if "bench" in parts_wanted else ():
            parts[f"{name} x2"] = bench(run, bundle, data, name, 2, pin=True)
            run.save()
        cache = run.work / "cache" / "speeds.json"
        parts["first_use_speeds"] = json.loads(cache.read_text(encoding="utf-8")) if cache.exists() else None
        for backend in ("openvino", "onnx") if "eval" in parts_wanted else ():
            parts[f"eval {backend}-int8"] = clsrun_eval(run, bundle, backend)
            run.save()
        if "cores" in parts_wanted and run.elapsed() < run.budget_s:
            cores = os.cpu_count() or 2
            parts[f"short x{cores}"] = bench(run, bundle, data, "short", cores, pin=False)
        run.save()
    print(markdown(run.body))
    return 1 if run.body["failed"] else 0


def markdown(body: dict[str, Any]) -> str:
    parts = body["parts"]
    lines = ["# clsrun CPU engines check", "", f"machine: `{json.dumps(parts.get('machine'))}`", ""]
    lines += [f"**failed**: {f}" for f in body["failed"]]
    for name, part in parts.items():
        if not isinstance(part, dict) or "results" not in part or name == "shapes":
            continue
        lines += ["", f"## {name} ({part['rows']} texts, {part['threads']} threads)", ""]
        lines += [
            "| engine | rows/s (median) | runs | first pass | agreement with fp32 |",
            "|---|---|---|---|---|",
        ]
        ranked = sorted(part["results"].items(), key=lambda kv: -kv[1]["rows_per_s_median"])
        lines += [
            f"| {k} | {v['rows_per_s_median']} | {v['runs']} | {v.get('first_pass', '')} | {v['agreement_with_fp32']} |"
            for k, v in ranked
        ]
        lines += [f"| {k} | skipped: {v} | | | |" for k, v in part["skipped"].items()]
        lines += ["", f"auto (API): {part['api_auto_choice']}", f"predict: {part['predict_choice']}"]
    lines += shapes_markdown(parts.get("shapes"))
    for name in ("bf16 gate", "first_use_speeds", "eval openvino-int8", "eval onnx-int8"):
        if parts.get(name) is not None:
            lines += ["", f"{name}: `{json.dumps(parts[name])[:600]}`"]
    return "\n".join(lines) + "\n"


def shapes_markdown(part: dict[str, Any] | None) -> list[str]:
    if not part:
        return []
    lines = [
        "",
        "## fresh processes: first pass (a `clsrun predict`) vs second, OpenVINO int8, 2 threads",
        "",
    ]
    lines += [
        "| file | config | first pass rows/s | second | first-shape cost s | shapes | padded tokens | load s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for data, configs in part["results"].items():
        lines += [
            f"| {data} | {c} | {v['first_pass_rows_per_s']} | {v['second_pass_rows_per_s']} "
            f"| {v['first_shape_cost_s']} | {v['shapes']} | {v['padded_tokens']} | {v['load_s']} |"
            for c, v in configs.items()
        ]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepare", type=Path, help="write what the check needs into this folder")
    ap.add_argument("--model", type=Path, help="an exported BERT bundle with int8 and ov-int8 (--prepare)")
    ap.add_argument("--short", type=Path, help="CSV of short texts, column text (--prepare)")
    ap.add_argument("--long", type=Path, help="CSV of long texts (--prepare)")
    ap.add_argument("--short-rows", type=int, default=512)
    ap.add_argument("--long-rows", type=int, default=96)
    ap.add_argument("--wheel", type=Path, help="an openvino wheel for the lent machine's Python (--prepare)")
    ap.add_argument("--data", type=Path, help="the folder --prepare wrote (run)")
    ap.add_argument("--gate-bf16", type=Path, help=argparse.SUPPRESS)  # the bf16 part's child process
    ap.add_argument("--out", type=Path, help="where the report goes (run)")
    ap.add_argument("--budget-s", type=float, default=200.0, help="the all-cores part is skipped past this")
    ap.add_argument(
        "--parts", default="machine,bench,eval,cores",
        help=f"what to run, of {','.join(PARTS)} (shapes: ov_shapes.py, first-shape costs)",
    )  # fmt: skip
    ap.add_argument(
        "--shape-configs", default="pad8-oldplan,pad8,pad16,pad8-cache", help="ov_shapes.py --configs"
    )
    args = ap.parse_args()
    if args.prepare:
        prepare(args)
        return 0
    if args.gate_bf16:
        print(json.dumps(gate_bf16(args.gate_bf16, args.data)))
        return 0
    if not (args.data and args.out):
        ap.error("give --prepare DIR ... or --data DIR --out OUT")
    wanted = set(args.parts.split(","))
    if wanted - set(PARTS):
        ap.error(f"--parts: {', '.join(sorted(wanted - set(PARTS)))}: not one of {', '.join(PARTS)}")
    return run_check(args.data, args.out, args.budget_s, wanted, args.shape_configs)


if __name__ == "__main__":
    sys.exit(main())
