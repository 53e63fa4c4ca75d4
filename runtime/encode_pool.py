"""Normalising and tokenizing windows, in this thread or in worker processes that feed a GPU.

:func:`encode_texts` is the one step from a window's raw texts to ids: normalise, drop what normalising
leaves empty, tokenize. :class:`EncodePool` runs it for whole windows, ``processes`` at a time.

Why processes: on a GPU the model no longer bounds the rate, the host does, and most of a window's
encoding holds the GIL. ``tokenizers`` encodes a window on every core with the GIL released, but turning
its output into ids (one Python list per text) and normalising are Python, so threads would take turns;
processes do not. Each worker receives the encoder (a ``tokenizers.Tokenizer`` pickles as its JSON) and
the normalisation once, then windows of texts, and sends back numpy arrays (:class:`Encoded`). Workers
are started with ``spawn`` (the parent may hold CUDA and several threads) and ignore Ctrl-C (a Ctrl-C
reaches the whole foreground process group; the parent stops at its next safe point, keeps its resumable
exit and closes the pool). Other signals keep their default, so a ``kill`` of the process group still
ends them; the parent then stops as it was asked to (``pipeline.py``). They leave when the pool closes.
With ``processes=1`` the work runs in the calling thread, as it does on CPU where the cores run the
model. With ``in_threads`` the workers are threads of this process: for an encoder that is numpy from end
to end (the n-gram one on CPU), which releases the GIL, so nothing needs pickling across processes.

``threads``: the tokenizer threads of each worker (``tokenizers``' Rayon pool, sized by
``RAYON_NUM_THREADS`` when it first starts, which happens in the worker after its initializer has set it);
0 keeps the tokenizer's default, one per core. ``benchmarks/gpu_host_sweep.py`` measures the choice.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import ParamSpec, TypeVar

import numpy as np

from clsrun.runtime import charmaps
from clsrun.runtime.bundle import Normalization
from clsrun.runtime.encode import CodepointEncoder, Encoder, Tokens
from clsrun.runtime.textnorm import normalize_many, readable


@dataclass
class Encoded:
    """A window's texts normalised and tokenized; texts left empty by normalising are not in ``tokens``."""

    kept: np.ndarray  # (m,) int64 positions, among the texts given, of the m texts tokenized
    tokens: Tokens  # those m texts


def encode_texts(encoder: Encoder, norm: Normalization, texts: Sequence[str]) -> Encoded:
    """Normalise ``texts`` as the bundle says and tokenize the ones with readable text afterwards (not
    empty, not only spaces, controls or format characters: ``textnorm.readable``).

    ``texts``: a list, or the Arrow column they were read from (``ArrowTexts``), which a code-point encoder
    takes straight to code points and any other one as Python strings."""
    if isinstance(encoder, CodepointEncoder):  # no strings in between (charmaps.py)
        c, lengths = charmaps.normalize(texts, norm)
        shown = charmaps.readable_rows(c, lengths)  # (n,) bool
        rows = np.flatnonzero(shown)
        if len(rows) < len(lengths):  # the code points of the texts left out go too
            c = c[np.repeat(shown, lengths)]
        return Encoded(rows, encoder.tokenize_codepoints(c, lengths[rows]))
    texts = list(texts)
    normalised = normalize_many(texts, norm)  # pyarrow when it gives normalize's strings (textnorm.py)
    kept = [i for i, t in enumerate(normalised) if readable(t)]
    tokens = encoder.tokenize(normalised if len(kept) == len(texts) else [normalised[i] for i in kept])
    return Encoded(np.asarray(kept, dtype=np.int64), tokens)


P = ParamSpec("P")
T = TypeVar("T")
_worker: tuple[Encoder, Normalization] | None = None  # set once in each worker process


def _start_worker(encoder: Encoder, norm: Normalization, threads: int) -> None:
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent's to handle (module docstring)
    if threads > 0:  # before the first encoding starts the tokenizer's thread pool (module docstring)
        os.environ["RAYON_NUM_THREADS"] = str(threads)
    _worker = (encoder, norm)


def _encode_in_worker(texts: Sequence[str]) -> Encoded:
    assert _worker is not None, "a worker encodes only after its initializer ran"
    return encode_texts(*_worker, texts)


class _Inline(Executor):
    """Runs each call at once in the calling thread; its future is already done."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:
            future.set_exception(e)
        return future


class EncodePool:
    """Encodes windows of texts, ``processes`` at a time (1: in the calling thread). A context manager.

    ``threads``: tokenizer threads in each worker process (0: one per core); unused with one process.
    ``in_threads``: the ``processes`` workers are threads of this process instead (module docstring).
    """

    def __init__(
        self,
        encoder: Encoder,
        norm: Normalization,
        processes: int = 1,
        threads: int = 0,
        in_threads: bool = False,
    ) -> None:
        self.processes = max(1, processes)
        # What a worker runs on a window's texts: here (this thread or a thread of ours), with this
        # process's encoder; in a worker process, with the one its initializer received.
        self.encode: Callable[[Sequence[str]], Encoded] = functools.partial(encode_texts, encoder, norm)
        self.executor: Executor = _Inline()
        if self.processes > 1 and in_threads:
            self.executor = ThreadPoolExecutor(self.processes, thread_name_prefix="clsrun-encode")
        elif self.processes > 1:
            # Imported here: worker processes serve CUDA runs only, and multiprocessing is a hundredth of
            # a second of every CPU run's start-up.
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.encode = _encode_in_worker
            self.executor = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(encoder, norm, threads),
            )

    def submit(self, texts: Sequence[str]) -> Future[Encoded]:
        """Start encoding one window's texts; the future's result is its :class:`Encoded`."""
        return self.executor.submit(self.encode, texts)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> EncodePool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
