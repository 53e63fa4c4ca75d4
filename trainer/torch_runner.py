"""The torch scoring backend (``--backend torch``): eager PyTorch on a bundle's safetensors weights.

A runner plugin of the runtime: pyproject registers it in the ``clsrun.runners`` entry point group, and
``clsrun.runtime.plugins.runner_plugin("torch")`` finds it, so the runtime itself never imports torch or
the trainer. It runs the model ``clsrun.trainer.models.load_model`` rebuilds (the reference the export gate
compares the ONNX variants with), in fp32, bf16 (CPU or CUDA) or fp16 (CUDA).

On CUDA it is built so that the GPU never waits for the host:

- weights in fp16 by default (the same tensor-core speed as bf16, and three more mantissa bits keep the
  labels closer to fp32), attention through PyTorch's SDPA (transformers' default for BERT), inference mode;
- the batches are the runtime's, planned against the CUDA token budget (``runtime/batching.py``);
- each batch is staged through a :class:`PinnedRing` of page-locked host buffers reused from batch to batch
  and copied with ``non_blocking=True``, so the host goes on to the next batch while the GPU works;
- a window's logits stay on the GPU (:class:`TorchWindow`: one ``(m, C)`` tensor, each batch copied into
  its rows there) and come back in one asynchronous copy when the window closes; only the writer thread,
  asking for them, waits for that copy;
- ``choice.compile`` runs the model through ``torch.compile`` with dynamic shapes (off by default).

Contract (``clsrun.runtime.infer.Runner``): ``run({input name: (B, T) int64}) -> logits (B, C) float32``,
safe from several threads at once; ``open_window(rows, classes)`` gives the window the runtime fills.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from clsrun.runtime.errors import BundleError
from clsrun.trainer.models import load_model

if TYPE_CHECKING:
    from clsrun.runtime.bundle import Bundle
    from clsrun.runtime.variant import Choice

# Scoring precisions per device; the first is what --precision auto picks. fp16 on CPU is left out:
# PyTorch's CPU kernels emulate it, slower than fp32. int8 is an exported ONNX variant only.
_PRECISIONS = {"cpu": ("fp32", "bf16"), "cuda": ("fp16", "fp32", "bf16")}
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
RING_SLOTS = 4  # batches the host may stage ahead of the GPU
_ROWS = "__rows__"  # staged beside the inputs: the window rows a batch fills


class Event(Protocol):
    """What the ring and windows need of a CUDA event: mark a point in the stream, wait for it."""

    def record(self) -> None: ...

    def synchronize(self) -> None: ...


class NoEvent:
    """The event of a device that works synchronously (CPU): every point is already passed."""

    def record(self) -> None:
        pass

    def synchronize(self) -> None:
        pass


def event_factory(device: torch.device) -> Callable[[], Event]:
    """CUDA events whose waiters sleep instead of spinning (the preparing threads need the cores)."""
    if device.type == "cuda":
        return lambda: torch.cuda.Event(blocking=True)
    return NoEvent


class _Slot:
    """One set of host buffers, one per input name, and the event behind their last copies."""

    def __init__(self, done: Event) -> None:
        self.done = done
        self.buffers: dict[str, torch.Tensor] = {}

    def view(self, name: str, array: np.ndarray, pin: bool) -> torch.Tensor:
        """A tensor of ``array``'s shape and dtype over this slot's buffer for ``name``, grown if too small."""
        dtype = torch.from_numpy(array).dtype  # a view, no copy
        held = self.buffers.get(name)
        if held is None or held.dtype != dtype or held.numel() < array.size:
            size = 1 << max(10, (array.size - 1).bit_length())  # next power of two: few regrowths
            held = self.buffers[name] = torch.empty(size, dtype=dtype, pin_memory=pin)
        return held[: array.size].view(array.shape)


class PinnedRing:
    """Host staging buffers for host-to-device copies, reused round-robin by ``slots`` batches.

    A ``non_blocking`` copy from page-locked memory returns before the GPU has read it, so a slot is
    written again only once the event recorded behind its last copies has passed: the host can stage
    ``slots`` batches ahead of the GPU and never overwrites one still being read. Buffers keep their size
    and grow (to the next power of two) only for a bigger batch. PyTorch's caching host allocator would
    recycle pinned blocks too, but hands out one per call; this keeps a fixed set, and its reuse and
    waiting can be tested without a GPU (``pin=False``, fake events).
    """

    def __init__(
        self,
        device: torch.device,
        slots: int = RING_SLOTS,
        pin: bool = True,
        event: Callable[[], Event] = NoEvent,
    ) -> None:
        self.device = device
        self.pin = pin
        self.slots = [_Slot(event()) for _ in range(slots)]
        self.next = 0
        self.lock = threading.Lock()

    def stage(self, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Copy ``arrays`` into the next slot and start copying them to the device; tensors of the same shapes."""
        with self.lock:
            slot = self.slots[self.next]
            self.next = (self.next + 1) % len(self.slots)
            slot.done.synchronize()  # the GPU has read what this slot held last time
            staged = {}
            for name, array in arrays.items():
                host = slot.view(name, array, self.pin)
                host.copy_(torch.from_numpy(array))
                staged[name] = host.to(self.device, non_blocking=True)
            slot.done.record()
        return staged


class TorchWindow:
    """One window's ``(m, C)`` float32 logits on the runner's device, filled batch by batch.

    ``add`` stages the batch and queues the model on the GPU without waiting; the batch's logits are
    copied into their window rows on the device. ``close`` queues one copy of the whole matrix into
    page-locked host memory; ``result`` (the writer thread) waits for that copy only.
    """

    def __init__(self, runner: TorchRunner, rows: int, classes: int) -> None:
        self.runner = runner
        with torch.inference_mode():
            self.logits = torch.zeros((rows, classes), dtype=torch.float32, device=runner.device)  # (m, C)
        self.host: torch.Tensor | None = None
        self.copied = runner.event()

    def add(self, rows: np.ndarray, inputs: dict[str, np.ndarray]) -> None:
        self.runner.score_into(self.logits, rows, inputs)

    def close(self) -> None:
        """Queue the copy back (on CUDA); in inference mode, as the window's logits were made."""
        with torch.inference_mode():
            if self.logits.device.type == "cpu":
                self.host = self.logits
            else:  # page-locked, so the copy is asynchronous; a window of no rows needs no pinned block
                pin = self.logits.numel() > 0
                self.host = torch.empty(self.logits.shape, dtype=torch.float32, pin_memory=pin)  # (m, C)
                self.host.copy_(self.logits, non_blocking=True)
            self.copied.record()

    def result(self) -> np.ndarray:
        assert self.host is not None, "result() before close(): this is a bug"
        self.copied.synchronize()
        return self.host.numpy()


def host_threads(device: torch.device, threads: int) -> int:
    """torch's CPU threads for a runner on ``device`` given ``threads``.

    On CUDA one: the host's cores belong to the encoding processes and to the one thread that launches
    the kernels; more torch threads would only split each staging copy and then spin in their way
    (README: the GPU check measured the difference).
    """
    return 1 if device.type == "cuda" else threads


class TorchRunner:
    """Eager PyTorch on ``choice.device`` with the weights cast to ``choice.precision``."""

    def __init__(self, bundle: Bundle, choice: Choice, threads: int, streams: int = 1) -> None:
        self.device = torch.device(choice.device)
        torch.set_num_threads(host_threads(self.device, threads))
        model: Any = load_model(bundle).eval().to(self.device, dtype=_DTYPES[choice.precision])
        self.model = model
        self.forward: Callable[..., torch.Tensor] = (
            torch.compile(model, dynamic=True) if choice.compile else model
        )
        self.event = event_factory(self.device)
        cuda = self.device.type == "cuda"
        self.ring = PinnedRing(self.device, pin=cuda, event=self.event) if cuda else None
        # On CUDA batches are queued one after the other on one stream; on CPU they may run concurrently.
        self.queue_lock: AbstractContextManager[Any] = threading.Lock() if cuda else nullcontext()
        compiled = "-compiled" if self.forward is not model else ""
        self.providers = [f"torch-{torch.__version__}-{choice.device}{compiled}"]

    @staticmethod
    def precisions(device: str) -> tuple[str, ...]:
        """Precisions this runner takes on ``device``; the first is the default."""
        return _PRECISIONS[device]

    @staticmethod
    def cuda_available() -> bool:
        return bool(torch.cuda.is_available())

    def _feed(self, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        if self.ring is not None:
            return self.ring.stage(arrays)
        return {k: torch.from_numpy(v) for k, v in arrays.items()}

    def _logits(self, feed: dict[str, torch.Tensor], classes: int | None) -> torch.Tensor:
        """(B, C) float32 logits of one staged batch (inference mode is the caller's)."""
        logits = self.forward(**feed).float()  # (B, C)
        rows = next(iter(feed.values())).shape[0]
        if (
            logits.ndim != 2
            or logits.shape[0] != rows
            or (classes is not None and logits.shape[1] != classes)
        ):
            raise BundleError(
                f"the model gave logits of shape {tuple(logits.shape)} for a batch of {rows} rows"
                + (f" and {classes} labels" if classes is not None else "")
            )
        return logits

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Logits of one batch, back on the host (waits for the device)."""
        with torch.inference_mode():
            logits = self._logits(self._feed(inputs), None)
            return np.asarray(logits.cpu().numpy(), dtype=np.float32)

    def open_window(self, rows: int, classes: int) -> TorchWindow:
        """The logits of a window of ``rows`` scored rows, kept on the device until it closes."""
        return TorchWindow(self, rows, classes)

    def score_into(self, window: torch.Tensor, rows: np.ndarray, inputs: dict[str, np.ndarray]) -> None:
        """Queue one batch whose rows are ``rows`` (B,) of ``window`` (m, C); on CUDA returns at once."""
        with self.queue_lock, torch.inference_mode():
            feed = self._feed({**inputs, _ROWS: np.asarray(rows, dtype=np.int64)})
            index = feed.pop(_ROWS)  # (B,)
            window.index_copy_(0, index, self._logits(feed, window.shape[1]))
