"""Which model variant runs: what the user asked for (:class:`Variant`) and what that resolves to (:class:`Choice`).

:func:`choose` reads the bundle's export report and only ever picks an exported variant (ONNX, or
OpenVINO IR with ``clsrun[openvino]``) whose ``passed`` is true: with ``auto`` on CPU, the fastest of them
as measured on this CPU (``speeds.py``: at export, else once at first use, cached per CPU model and flags);
on CUDA fp16, else fp32. A bundle that was never exported runs on the torch backend when it is installed
(a runner plugin, ``plugins.runner_plugin``). :func:`resolve_device` is the one place ``device="auto"``
is decided (the trainer uses it too). :func:`onnx_candidate` names a variant file the gate has not passed
yet (export scores its candidates with the runtime's own runner before installing any).

Three things are called "precision" in clsrun; this module owns the first:
- scoring precisions (:data:`SCORING_PRECISIONS`): which variant ``predict``/``eval``/``bench`` run;
- export precisions (``clsrun.export.EXPORT_PRECISIONS``): which ONNX variants ``export`` builds;
- training precisions (``clsrun.trainer.config.TRAINING_PRECISIONS``): mixed precision of the training loop.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Literal, get_args

from clsrun.runtime.bundle import ONNX_FILES, OPENVINO_FILES, Bundle, default_model_path, openvino_weights
from clsrun.runtime.errors import BundleError, DependencyError, UsageError, install_hint
from clsrun.runtime.machine import nvidia_gpu_present, ort_providers
from clsrun.runtime.plugins import runner_plugin

log = logging.getLogger(__name__)

Backend = Literal["auto", "onnx", "openvino", "torch"]
Precision = Literal["auto", "fp32", "fp16", "int8", "bf16"]
Device = Literal["auto", "cpu", "cuda"]
BACKENDS: tuple[str, ...] = get_args(Backend)
SCORING_PRECISIONS: tuple[str, ...] = get_args(Precision)
DEVICES: tuple[str, ...] = get_args(Device)
# --threads / --streams above this are a typo, not a machine: each stream is a thread with its own batch
MAX_PARALLEL = 1024
# Backends that run variants built by `clsrun export` (files listed in its report), in report order.
EXPORTED_BACKENDS = ("onnx", "openvino")
# The order exported variants are tried in when they cannot be told apart by a measurement: on CUDA (only
# onnxruntime runs there: fp16 is what the GPU variant is for), and on CPU for a bundle without the
# labelled rows a measurement needs (``speeds.py``). Anywhere else ``auto`` picks by measured speed.
_UNMEASURED_ORDER = {"cpu": ("int8", "fp32", "fp16"), "cuda": ("fp16", "fp32", "int8")}


@dataclass(frozen=True)
class Variant:
    """What the user asked to run; built once from the command line (or by a Python caller).

    ``choose(bundle, variant)`` resolves the ``auto`` fields against the bundle and this machine.
    """

    backend: Backend = "auto"  # --backend: auto runs the fastest exported variant, torch the eager model
    precision: Precision = "auto"  # --precision: auto picks the fastest variant that passed the gate
    device: Device = "auto"  # --device: auto is CUDA when the backend can use a GPU here
    threads: int | None = None  # --threads: inference threads; None: the cores this process may use
    streams: int | None = None  # --streams: batches run at once; None: by backend and device
    compile: bool = False  # --compile: torch backend only: torch.compile the model (dynamic shapes)

    def __post_init__(self) -> None:
        problems = []
        for flag, value, allowed in (
            ("--backend", self.backend, BACKENDS),
            ("--precision", self.precision, SCORING_PRECISIONS),
            ("--device", self.device, DEVICES),
        ):
            if value not in allowed:
                problems.append(f"{flag} {value!r}: choose one of {', '.join(allowed)}")
        for flag, count in (("--threads", self.threads), ("--streams", self.streams)):
            if count is not None and count < 1:
                problems.append(f"{flag} {count}: must be at least 1")
            elif count is not None and count > MAX_PARALLEL:
                cores = os.cpu_count() or 1
                problems.append(f"{flag} {count}: at most {MAX_PARALLEL} (this machine has {cores} cores)")
        if self.compile and self.backend in EXPORTED_BACKENDS:
            problems.append("--compile compiles the eager PyTorch model: it needs --backend torch or auto")
        if problems:
            raise UsageError("; ".join(problems))


@dataclass(frozen=True)
class Choice:
    """What will run: recorded in the manifest and in ``Classifier.describe()``."""

    backend: str  # "onnx" | "openvino" | "torch"
    precision: str  # "fp32" | "fp16" | "int8" | "bf16"
    device: str  # "cpu" | "cuda"
    file: str | None  # bundle-relative variant file (ONNX, or OpenVINO IR .xml), None for torch
    reason: str = ""  # why this one ran (auto: the measured speeds it won on); recorded in the manifest
    compile: bool = False  # the torch model runs through torch.compile
    # OpenVINO: the precision of what int8 left float, "bf16" or "f32"; None: bf16 where this CPU has it and
    # the export gate passed the variant in bf16 (``ov_runner.float_precision``), else f32
    inference_precision: str | None = None

    @property
    def key(self) -> str:
        """``backend-precision`` (``onnx-int8``, ``openvino-int8``): how speeds are recorded per variant."""
        return f"{self.backend}-{self.precision}"


def default_streams(choice: Choice, threads: int) -> int:
    """How many batches run at once when ``--streams`` is not given: one per thread for ONNX and OpenVINO
    on CPU.

    Why: each stream runs its batch on one core with no hand-offs between threads, where one session with
    several intra-op threads splits every operator across them and waits for all at each of its (hundreds
    of) nodes. The streams share one session (onnxruntime's ``run`` is thread-safe), so the weights are in
    memory once; each holds one batch of activations. OpenVINO's THROUGHPUT hint is the same idea (one CPU
    stream per core). On CUDA and for the torch backend: one stream with all the threads.
    """
    return max(1, threads) if choice.backend in EXPORTED_BACKENDS and choice.device == "cpu" else 1


def default_preparers(choice: Choice, threads: int, kind: str = "") -> int:
    """How many windows are encoded at once while a file is scored (``score.py``, ``encode_pool.py``).

    On CUDA the host's encoding bounds the rate, and most of it holds the GIL, so a quarter of the cores
    (at most 4) encode windows in worker processes, each also running ``tokenizers`` on every core. On
    CPU an n-gram bundle's encoding, not its model, bounds the rate (README: the n-gram section), and it
    is numpy, which releases the GIL: two threads. Other kinds on CPU: one, in the reader thread (the
    cores run the model, and ``tokenizers`` already spreads a window over them).
    """
    if choice.device == "cuda":
        return max(1, min(4, threads // 4))
    return 2 if kind == "ngram" and threads >= 2 else 1


def resolve_device(device: str, backend: str) -> str:
    """``cpu`` or ``cuda`` for ``--device`` on ``backend`` (``onnx`` or ``torch``); refuse a GPU not present.

    ``auto`` is CUDA when the backend can use a GPU here: onnxruntime with its CUDA provider, or the torch
    runner plugin seeing a CUDA device.
    """
    if device not in DEVICES:
        raise UsageError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    if backend == "onnx":
        has_cuda = "CUDAExecutionProvider" in ort_providers()
        fix = (
            f"onnxruntime has no CUDA provider here; {_gpu_install_hint()}"
            if nvidia_gpu_present()
            else "this machine has no NVIDIA GPU (no /dev/nvidia* device)"
        )
    else:
        has_cuda = runner_plugin(backend).cuda_available()
        fix = f"the {backend} backend sees no CUDA device"
    if device == "cuda" and not has_cuda:
        raise UsageError(f"--device cuda: {fix}")
    return "cuda" if has_cuda else "cpu"


def _gpu_install_hint() -> str:
    """How to get onnxruntime's CUDA provider. onnxruntime and onnxruntime-gpu install into one
    ``onnxruntime`` folder, so with both installed (the ``gpu`` extra adds the second beside the first)
    whichever came last wins, often the CPU one: then only reinstalling the GPU package alone helps."""
    from importlib import metadata

    def installed(name: str) -> bool:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            return False
        return True

    if installed("onnxruntime") and installed("onnxruntime-gpu"):
        return (
            "both onnxruntime and onnxruntime-gpu are installed and share one folder: "
            "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
        )
    return install_hint("gpu")


def report_name(backend: str, precision: str) -> str:
    """A variant's name in the export report: ``int8`` for ONNX, ``ov-int8`` for OpenVINO."""
    return f"ov-{precision}" if backend == "openvino" else precision


def split_name(name: str) -> tuple[str, str]:
    """``(backend, precision)`` of an export report variant name (the inverse of :func:`report_name`)."""
    return ("openvino", name[3:]) if name.startswith("ov-") else ("onnx", name)


def passed_variants(bundle: Bundle, backend: str = "onnx") -> dict[str, str]:
    """``{precision: file}`` of ``backend``'s exported variants that passed the export gate and are in the
    bundle (``backend``: ``onnx`` or ``openvino``)."""
    report = bundle.export_report()
    if not report:
        return {}
    variants = report.get("variants") or {}
    found = {}
    for name, v in variants.items():
        owner, precision = split_name(name)
        if owner != backend or not isinstance(v, dict) or v.get("passed") is not True:
            continue
        if v.get("file") and bundle.has(str(v["file"])):
            found[precision] = str(v["file"])
    return found


def choose(bundle: Bundle, variant: Variant = Variant()) -> Choice:
    """Pick backend, precision, device and file as ``variant`` asks; refuse what the bundle cannot do.

    ``auto`` backend or precision on CPU: the fastest exported variant that passed the gate, by the speeds
    measured on this CPU (``speeds.py``); the choice's ``reason`` says which figures decided.
    """
    backend: str = variant.backend
    if backend == "auto" and _torch_takes_the_gpu(variant):
        backend = "torch"  # exported or not: on this GPU eager PyTorch is the fast path, no note to export
    elif backend == "auto" and not any(passed_variants(bundle, b) for b in EXPORTED_BACKENDS):
        if variant.precision in EXPORTED_ONLY:  # one line, not a note to export and a refusal of torch
            raise UsageError(
                f"--precision {variant.precision}: {bundle.root} was never exported, and {variant.precision} is "
                f"an exported variant; run `clsrun export {bundle.root}` first"
            )
        backend = _installed_fallback(bundle)
    if backend in ("auto", *EXPORTED_BACKENDS):
        if variant.compile:
            raise UsageError("--compile: this bundle runs on onnxruntime here; use --backend torch")
        return _choose_exported(bundle, variant)
    device = resolve_device(variant.device, backend)
    allowed = runner_plugin(backend).precisions(device)  # the first is what auto picks
    precision = allowed[0] if variant.precision == "auto" else variant.precision
    if precision not in allowed:
        raise UsageError(
            f"--precision {precision} is not available with --backend {backend} on {device}; "
            f"available: {', '.join(allowed)}"
        )
    return Choice(backend, precision, device, None, compile=variant.compile)


# Precisions only an export makes (eager PyTorch runs fp32 and bf16, and fp16 on CUDA).
EXPORTED_ONLY = ("int8",)


def _torch_takes_the_gpu(variant: Variant) -> bool:
    """``--backend auto`` on a GPU only torch can use: CUDA allowed by ``--device``, an NVIDIA GPU here,
    onnxruntime without its CUDA provider, and the torch runner installed, seeing CUDA and running the
    precision asked for (int8 is an ONNX variant only).

    The cheap tests come first: torch (seconds to import) is imported only where a GPU may be.
    """
    if variant.device == "cpu" or variant.precision == "int8" or not nvidia_gpu_present():
        return False
    if "CUDAExecutionProvider" in ort_providers():
        return False
    try:
        plugin = runner_plugin("torch")
    except DependencyError:
        return False
    wanted = variant.precision == "auto" or variant.precision in plugin.precisions("cuda")
    return wanted and plugin.cuda_available()


def _installed_fallback(bundle: Bundle) -> str:
    """``torch`` for a bundle that was never exported, when its runner plugin is installed."""
    try:
        runner_plugin("torch")
    except DependencyError:
        raise BundleError(
            f"{bundle.root}: no exported model that passed the export gate, and torch is not "
            f"installed for the torch backend; run `clsrun export {bundle.root}` first"
        ) from None
    log.warning(
        "note: %s was never exported: it runs as eager PyTorch, much slower than an exported variant; "
        "run `clsrun export %s` once first",
        bundle.root,
        bundle.root,
    )
    return "torch"


def _openvino_runs() -> bool:
    """True when the openvino runner plugin loads here (``clsrun[openvino]`` installed)."""
    try:
        runner_plugin("openvino")
    except DependencyError:
        return False
    return True


def _openvino_installed() -> bool:
    """True when an ``openvino`` package is importable: found, not imported (that takes a few tenths of a
    second, and ``auto`` rarely needs it; :func:`_confirm_openvino`)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def _confirm_openvino(bundle: Bundle, candidates: list[Choice]) -> list[Choice]:
    """``candidates`` without OpenVINO's when its runner does not load here.

    Loading it is asked only when it matters: the speeds recorded on this CPU rank an OpenVINO variant
    first, or there are none yet (they are then measured, which runs every candidate). When an ONNX
    variant measured faster, OpenVINO's stay listed for the choice's reason and are never imported.
    """
    if not any(c.backend == "openvino" for c in candidates):
        return candidates
    from clsrun.runtime.speeds import recorded_speeds

    speeds = recorded_speeds(bundle, {c.key for c in candidates})
    if speeds is not None and max(candidates, key=lambda c: speeds.rows_per_s[c.key]).backend != "openvino":
        return candidates
    return candidates if _openvino_runs() else [c for c in candidates if c.backend != "openvino"]


def exported_candidates(bundle: Bundle, variant: Variant) -> list[Choice]:
    """Every passed exported variant ``variant`` allows on its device, ONNX first.

    ``--backend openvino`` without the extra raises :class:`DependencyError`; under ``auto`` OpenVINO
    variants are left out when the extra is missing, and on CUDA (OpenVINO runs here on the CPU only).
    """
    explicit = variant.backend != "auto"
    device = resolve_device(variant.device, variant.backend if explicit else "onnx")
    backends = (variant.backend,) if explicit else EXPORTED_BACKENDS
    found = []
    for backend in backends:
        passed = passed_variants(bundle, backend)
        # Left out without the package or off the CPU; whether its runner loads is asked at the choice.
        if (
            backend == "openvino"
            and not explicit
            and passed
            and not (device == "cpu" and _openvino_installed())
        ):
            continue
        if not passed:
            if explicit:
                said = (
                    f"--backend {backend}: {bundle.root} has no exported {backend} variant that passed the "
                    f"export gate; {_export_hint(bundle, backend)}, or use another --backend"
                )
                others = [b for b in EXPORTED_BACKENDS if b != backend and passed_variants(bundle, b)]
                # A backend the bundle was not exported for is bad usage, as a --precision not exported
                # (exit 2); a bundle with nothing exported is refused as under --backend auto (exit 3).
                raise UsageError(said) if others else BundleError(said)
            continue
        order = _UNMEASURED_ORDER[device]
        for precision in sorted(passed, key=lambda p: order.index(p) if p in order else len(order)):
            found.append(Choice(backend, precision, device, passed[precision]))
    return found


def _export_hint(bundle: Bundle, backend: str) -> str:
    """The export command that builds ``backend``'s variants: an already exported bundle needs them
    asked for (``export`` builds fp32 and int8 by default) and ``--force``. Never the installed default
    model's own folder (package files, and no torch in a scoring-only install): a copy of it."""
    wanted = {"openvino": "fp32,int8,ov-int8"}.get(backend)
    precision = f" --precision {wanted}" if wanted else ""
    force = " --force" if bundle.export_report() is not None else ""
    if bundle.root.resolve() == default_model_path().resolve():
        return (
            f"the default model ships ONNX variants only; export a copy of it (cp -r {bundle.root} my_model && "
            f"clsrun export my_model{precision}{force}) and score with --model my_model"
        )
    return f"run `clsrun export {bundle.root}{precision}{force}` first"


def _choose_exported(bundle: Bundle, variant: Variant) -> Choice:
    """The exported variant to run: the one asked for, or the fastest measured on this CPU."""
    candidates = exported_candidates(bundle, variant)
    if not candidates:
        raise BundleError(
            f"{bundle.root}: no exported model that passed the export gate; "
            f"run `clsrun export {bundle.root}` first, or use --backend torch"
        )
    if variant.precision != "auto":
        matching = [c for c in candidates if c.precision == variant.precision]
        if not matching:
            available = sorted({c.precision for c in candidates})
            if variant.precision == "bf16":  # no export builds one: re-exporting would not help
                raise UsageError(
                    "--precision bf16 runs on --backend torch (eager PyTorch); exported variants are "
                    f"{', '.join(available)}"
                )
            raise UsageError(
                f"--precision {variant.precision}: this bundle has no {variant.precision} variant that "
                f"passed the export gate; available: {', '.join(available)}"
            )
        candidates = matching
    forced = forced_files(bundle)
    if variant.precision == "auto":
        candidates = _gate_passed_first(candidates, forced)
    if variant.backend == "auto":
        candidates = _confirm_openvino(bundle, candidates)
        if not candidates:
            raise BundleError(
                f"{bundle.root}: its only exported variants that passed the gate run on OpenVINO, whose "
                f"runner does not load here; {install_hint('openvino')}, or export ONNX variants"
            )
    if len(candidates) == 1:
        only = candidates[0]
        if only.file in forced:  # said as it is: no run may claim it passed
            if variant.precision != "auto":
                return replace(only, reason=f"{FORCED_REASON}; run because it was asked for")
            why = f"{FORCED_REASON}; run because no variant the gate passed is left"
            log.warning("%s: %s (--precision names what to run)", bundle.root, why)
            return replace(only, reason=why)
        return replace(only, reason="the only exported variant that passed the gate and was asked for")
    from clsrun.runtime.speeds import fastest

    chosen = fastest(bundle, candidates)
    if chosen.file in forced:  # every candidate was kept so (_gate_passed_first)
        return replace(chosen, reason=f"{FORCED_REASON}; {chosen.reason}")
    return chosen


def _gate_passed_first(candidates: list[Choice], forced: set[str]) -> list[Choice]:
    """``candidates`` less the ``forced`` files (kept only by ``--keep-refused``), unless those are all there
    is: a variant the gate refused runs when asked for by name (``--precision``), never because it measured
    faster."""
    gate_passed = [c for c in candidates if c.file not in forced]
    return gate_passed or candidates


def forced_files(bundle: Bundle) -> set[str]:
    """The variant files the export gate refused and ``--keep-refused`` kept (``"forced": true``)."""
    report = bundle.export_report() or {}
    variants = report.get("variants") or {}
    return {str(v.get("file")) for v in variants.values() if isinstance(v, dict) and v.get("forced") is True}


FORCED_REASON = "refused by the export gate and kept by --keep-refused"


def staged_candidate(
    bundle: Bundle, file: str, precision: str, device: str = "auto"
) -> tuple[Bundle, Choice]:
    """:func:`onnx_candidate`, and the bundle with that file (and an OpenVINO IR's weights) listed and hashed
    now (``Bundle.with_staged``): the pair ``Classifier.open`` needs to run a file export has just built."""
    choice = onnx_candidate(bundle, file, precision, device)
    files = [file, openvino_weights(file)] if choice.backend == "openvino" else [file]
    return bundle.with_staged(*files), choice


def onnx_candidate(bundle: Bundle, file: str, precision: str, device: str = "auto") -> Choice:
    """What runs a bundle-relative variant file that is not (yet) a variant that passed the export gate.

    Export's gate scores the files it builds in a staging folder inside the bundle before installing any
    (``clsrun.export.gate``); with this choice they open through ``Classifier.open`` and the runner of
    their backend exactly as a passed variant opens for ``clsrun predict``. Nothing is loosened: the file
    must lie inside the bundle (``bundle.path`` refuses absolute names, ``..`` and links leading out), and
    the runner checks it as for every variant. ``precision`` is an export report variant name
    (``ONNX_FILES`` and ``OPENVINO_FILES``: ``int8`` runs under onnxruntime, ``ov-int8`` under OpenVINO).
    """
    if precision not in ONNX_FILES and precision not in OPENVINO_FILES:
        known = ", ".join([*ONNX_FILES, *OPENVINO_FILES])
        raise UsageError(f"precision {precision!r}: an exported variant is one of {known}")
    path = bundle.path(file)
    if not path.is_file():
        raise BundleError(f"{path}: no such variant file in the bundle")
    backend, name = split_name(precision)
    return Choice(backend, name, resolve_device(device, backend), file)
