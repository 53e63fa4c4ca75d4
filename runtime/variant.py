"""Which model variant runs: what the user asked for (:class:`Variant`) and what that resolves to (:class:`Choice`).

:func:`choose` reads the bundle's export report and only ever picks an ONNX variant whose ``passed`` is
true: with ``precision="auto"``, int8 on CPU (fastest on this class of machine) else fp32; fp16 on CUDA
else fp32. A bundle that was never exported runs on the torch backend when it is installed (a runner
plugin, ``plugins.runner_plugin``), and so does any bundle with ``backend="auto"`` on a machine whose
GPU only torch can use (onnxruntime without its CUDA provider). :func:`resolve_device` is the one place
``device="auto"`` is decided (the trainer uses it too). :func:`onnx_candidate` names an ONNX file the gate
has not passed yet (export scores its candidates with the runtime's own runner before installing any).

Three things are called "precision" in clsrun; this module owns the first:
- scoring precisions (:data:`SCORING_PRECISIONS`): which variant ``predict``/``eval``/``bench`` run;
- export precisions (``clsrun.export.EXPORT_PRECISIONS``): which ONNX variants ``export`` builds;
- training precisions (``clsrun.trainer.config.TRAINING_PRECISIONS``): mixed precision of the training loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, get_args

from clsrun.runtime.bundle import ONNX_FILES, Bundle
from clsrun.runtime.errors import BundleError, DependencyError, UsageError
from clsrun.runtime.machine import nvidia_gpu_present, ort_providers
from clsrun.runtime.plugins import runner_plugin

log = logging.getLogger(__name__)

Backend = Literal["auto", "onnx", "torch"]
Precision = Literal["auto", "fp32", "fp16", "int8", "bf16"]
Device = Literal["auto", "cpu", "cuda"]
BACKENDS: tuple[str, ...] = get_args(Backend)
SCORING_PRECISIONS: tuple[str, ...] = get_args(Precision)
DEVICES: tuple[str, ...] = get_args(Device)
# Preference when --precision auto picks an exported variant: int8 is the fastest on CPU, fp16 on a GPU.
_ONNX_PREFERENCE = {"cpu": ("int8", "fp32", "fp16"), "cuda": ("fp16", "fp32", "int8")}


@dataclass(frozen=True)
class Variant:
    """What the user asked to run; built once from the command line (or by a Python caller).

    ``choose(bundle, variant)`` resolves the ``auto`` fields against the bundle and this machine.
    """

    backend: Backend = "auto"  # --backend: auto runs the exported ONNX model, torch the eager model
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
        if self.compile and self.backend == "onnx":
            problems.append("--compile compiles the eager PyTorch model: it needs --backend torch or auto")
        if problems:
            raise UsageError("; ".join(problems))


@dataclass(frozen=True)
class Choice:
    """What will run: recorded in the manifest and in ``Classifier.describe()``."""

    backend: str  # "onnx" | "torch"
    precision: str  # "fp32" | "fp16" | "int8" | "bf16"
    device: str  # "cpu" | "cuda"
    file: str | None  # bundle-relative ONNX file, None for torch
    compile: bool = False  # the torch model runs through torch.compile


def default_streams(choice: Choice, threads: int) -> int:
    """How many batches run at once when ``--streams`` is not given: one per thread for ONNX on CPU.

    Why: each stream runs its batch on one core with no hand-offs between threads, where one session with
    several intra-op threads splits every operator across them and waits for all at each of its (hundreds
    of) nodes. The streams share one session (onnxruntime's ``run`` is thread-safe), so the weights are in
    memory once; each holds one batch of activations. On CUDA and for the torch backend: one stream with
    all the threads.
    """
    return max(1, threads) if choice.backend == "onnx" and choice.device == "cpu" else 1


def default_preparers(choice: Choice, threads: int) -> int:
    """How many windows are encoded at once while a file is scored (``score.py``, ``encode_pool.py``).

    On CPU one, in the reader thread: the cores run the model, and ``tokenizers`` already spreads a
    window over them. On CUDA the host's encoding bounds the rate, and most of it holds the GIL, so a
    quarter of the cores (at most 4) encode windows in worker processes, each also running
    ``tokenizers`` on every core.
    """
    return max(1, min(4, threads // 4)) if choice.device == "cuda" else 1


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
        fix = "onnxruntime has no CUDA provider here; pip install 'clsrun[gpu]'"
    else:
        has_cuda = runner_plugin(backend).cuda_available()
        fix = f"the {backend} backend sees no CUDA device"
    if device == "cuda" and not has_cuda:
        raise UsageError(f"--device cuda: {fix}")
    return "cuda" if has_cuda else "cpu"


def passed_variants(bundle: Bundle) -> dict[str, str]:
    """``{precision: file}`` of the exported variants that passed the export gate and are in the bundle."""
    report = bundle.export_report()
    if not report:
        return {}
    variants = report.get("variants") or {}
    return {
        name: str(v["file"])
        for name, v in variants.items()
        if isinstance(v, dict) and v.get("passed") is True and v.get("file") and bundle.has(str(v["file"]))
    }


def choose(bundle: Bundle, variant: Variant = Variant()) -> Choice:
    """Pick backend, precision, device and file as ``variant`` asks; refuse what the bundle cannot do."""
    passed = passed_variants(bundle)
    backend: str = variant.backend
    if backend == "auto" and not passed:
        _check_torch_installed(bundle)  # a bundle never exported runs only on torch
        backend = "torch"
    elif backend == "auto":
        backend = "torch" if _torch_takes_the_gpu(variant) else "onnx"
    if backend == "onnx":
        if variant.compile:
            raise UsageError("--compile: this bundle runs on onnxruntime here; use --backend torch")
        return _choose_onnx(bundle, variant, passed)
    device = resolve_device(variant.device, backend)
    allowed = runner_plugin(backend).precisions(device)  # the first is what auto picks
    precision = allowed[0] if variant.precision == "auto" else variant.precision
    if precision not in allowed:
        raise UsageError(
            f"--precision {precision} is not available with --backend {backend} on {device}; "
            f"available: {', '.join(allowed)}"
        )
    return Choice(backend, precision, device, None, variant.compile)


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


def _check_torch_installed(bundle: Bundle) -> None:
    """A bundle that was never exported runs only on the torch backend: refuse when it is not installed."""
    try:
        runner_plugin("torch")
    except DependencyError:
        raise BundleError(
            f"{bundle.root}: no exported ONNX model that passed the export gate, and torch is not "
            f"installed for the torch backend; run `clsrun export {bundle.root}` first"
        ) from None
    log.warning(
        "note: %s was never exported: it runs as eager PyTorch, much slower than an exported ONNX variant; "
        "run `clsrun export %s` once first",
        bundle.root,
        bundle.root,
    )


def _choose_onnx(bundle: Bundle, variant: Variant, passed: dict[str, str]) -> Choice:
    if not passed:
        raise BundleError(
            f"{bundle.root}: no exported ONNX model that passed the export gate; "
            f"run `clsrun export {bundle.root}` first, or use --backend torch"
        )
    device = resolve_device(variant.device, "onnx")
    precision: str = variant.precision
    if precision == "auto":
        precision = next((p for p in _ONNX_PREFERENCE[device] if p in passed), "fp32")
    if precision not in passed:
        raise UsageError(
            f"--precision {precision}: this bundle has no {precision} variant that passed the export "
            f"gate; available: {', '.join(sorted(passed))}"
        )
    return Choice("onnx", precision, device, passed[precision])


def onnx_candidate(bundle: Bundle, file: str, precision: str, device: str = "auto") -> Choice:
    """What runs a bundle-relative ONNX file that is not (yet) a variant that passed the export gate.

    Export's gate scores the files it builds in a staging folder inside the bundle before installing any
    (``clsrun.export.gate``); with this choice they open through ``Classifier.open`` and ``OrtRunner``
    exactly as a passed variant opens for ``clsrun predict``. Nothing is loosened: the file must lie inside
    the bundle (``bundle.path`` refuses absolute names, ``..`` and links leading out), and the runner opens
    it through ``bundle.file`` and checks its external data as for every variant, so ``bundle`` must list
    it (``Bundle.with_staged``). ``precision`` is one of the exported variants (``ONNX_FILES``).
    """
    if precision not in ONNX_FILES:
        raise UsageError(f"precision {precision!r}: an ONNX variant is one of {', '.join(ONNX_FILES)}")
    path = bundle.path(file)
    if not path.is_file():
        raise BundleError(f"{path}: no such ONNX file in the bundle")
    return Choice("onnx", precision, resolve_device(device, "onnx"), file)
