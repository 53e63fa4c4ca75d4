"""The threads of one local scoring run: a bounded three-stage pipeline that stops cleanly at any moment.

    reader thread:  read chunk -> regroup into windows -> hand each window's texts to the encoders
    encoding:       normalise, tokenize (``encode_pool.py``): in the reader thread, or on CUDA in
                    ``classifier.preparers`` worker processes, a window each, so that the host's cores
                    keep the GPU fed (most of encoding holds the GIL); for an n-gram bundle on CPU in
                    two threads (its encoding is numpy, which releases the GIL)
                        | the reader takes encoded windows back in input order, plans and pads their batches
                        | queue of at most ``max(PREFETCH_BATCHES, streams)`` padded batches
    inference:      ``classifier.streams`` threads, each adding the next batch to its window's logits
                    (onnxruntime releases the GIL; the torch runner on CUDA only queues the batch on the
                    GPU); the stream that adds a window's last batch closes the window (a GPU starts
                    copying its logits back) and passes it on
                        | queue of at most ``PENDING_WINDOWS`` finished windows
    writer thread:  windows back in input order (waiting for each one's logits) -> softmax, output
                    table -> fsynced part + journal line (``partial.py``), and on into the output file
                    being written (``score.py``)

The queues are what keep memory flat: the reader can never be more than a couple of batches ahead of the
model, and at most ``preparers + streams + PENDING_WINDOWS - 1`` windows are between being read and being
written (the reader waits for a slot before it starts a window; the writer frees it), so the windows that
finish before an earlier one, and wait for it in the writer, are bounded too.

Stopping. The calling (main) thread runs no stage: it only watches, so a signal is always noticed within
``POLL_S`` even while every stage is inside a long model call. Every stage polls the same two things at
each safe point (between batches and windows, while waiting on a queue): the run's stop event, set when a
stage fails, and the :class:`~clsrun.runtime.stopping.StopRequest` a signal sets. A part is journaled
only once it is durable, so wherever the stages stop, the checkpoint is consistent. Once stopping, each
stage gets ``STOP_GRACE_S`` to return; one that does not (stuck in a read from a hung network disk, say)
is left behind as a daemon thread and the run ends with an error rather than a hang.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Future
from typing import Any, Protocol

import pyarrow as pa

from clsrun.runtime.batching import windows
from clsrun.runtime.classifier import Classifier, Prepared
from clsrun.runtime.encode_pool import Encoded
from clsrun.runtime.errors import InternalError
from clsrun.runtime.partial import PartialOutput
from clsrun.runtime.readers import RecordChunk, RecordStream
from clsrun.runtime.row_errors import reason_kind
from clsrun.runtime.stopping import StopRequest

PREFETCH_BATCHES = 2  # padded batches waiting for the model: enough to hide reading and tokenizing
PENDING_WINDOWS = 2  # finished windows waiting for the writer
POLL_S = 0.1  # how often a waiting thread looks at the stop event and the stop request
BROKEN_POOL_GRACE_S = 2.0  # how long a broken encoding pool waits for the stop request that explains it
STOP_GRACE_S = 30.0  # once stopping, how long the stages have to return before the run gives up on them


class Progress(Protocol):
    """Told how scoring advances (a progress bar); passed to ``score.score_file`` as an argument."""

    def resumed(self, rows: int) -> None:
        """Once, before scoring: rows a ``--resume`` run found already done (not part of this run's rate)."""
        ...

    def update(self, rows: int) -> None:
        """``rows`` more rows written."""
        ...


class _Countdown:
    """Things not yet done (a window's batches, the streams still running), shared by several threads."""

    def __init__(self, n: int) -> None:
        self.left = n
        self._lock = threading.Lock()

    def finish_one(self) -> bool:
        """Count one as done; True for the last one."""
        with self._lock:
            self.left -= 1
            return self.left == 0


class Pipeline:
    """The threads of one run. :meth:`run` returns when every row is written, or raises.

    After a stop request :meth:`run` returns normally with :attr:`stopped` true (the caller says what was
    saved); a stage's exception is re-raised once the other stages have returned.
    """

    def __init__(
        self,
        classifier: Classifier,
        partial: PartialOutput,
        probs: bool,
        progress: Progress | None,
        request: StopRequest,
        sink: Callable[[pa.Table], None] | None = None,
    ) -> None:
        self.clf = classifier
        self.partial = partial
        self.sink = sink  # also given each window's table once it is durable (the output being written)
        self.probs = probs
        self.progress = progress
        self.request = request
        self.streams = max(1, classifier.streams)
        self.batches: queue.Queue[Any] = queue.Queue(maxsize=max(PREFETCH_BATCHES, self.streams))
        self.finished: queue.Queue[Any] = queue.Queue(maxsize=PENDING_WINDOWS)
        self.preparers = max(1, classifier.preparers)
        # Slots for the windows being prepared (the reader holds `preparers` before it pads the oldest),
        # the ones in inference and the finished ones waiting for the writer.
        self.window_slots = threading.Semaphore(self.preparers + self.streams + PENDING_WINDOWS - 1)
        self.streams_left = _Countdown(self.streams)
        self.stop = threading.Event()  # set when a stage fails or a stop is requested: all stages return
        self.failure: BaseException | None = None
        self.stuck: list[str] = []  # threads still running STOP_GRACE_S after the run stopped (left behind)

    @property
    def stopped(self) -> bool:
        """The run ended because a stop was requested (a signal), not because it was done."""
        return self.request.is_set()

    def _halted(self) -> bool:
        if self.request.is_set():
            self.stop.set()
        return self.stop.is_set()

    def _put(self, q: queue.Queue[Any], item: Any) -> bool:
        while not self._halted():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue[Any]) -> Any:
        while not self._halted():
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue
        return None

    def _slot(self) -> bool:
        """Wait for room for one more window in flight; False when the run stops."""
        while not self._halted():
            if self.window_slots.acquire(timeout=POLL_S):
                return True
        return False

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as e:
                self.failure = self.failure or e
                self.stop.set()

        return run

    # -- the stages --------------------------------------------------------------------------------
    def _read(self, stream: RecordStream, skip: int) -> None:
        """Read windows, have them encoded ``preparers`` at a time, and queue their batches in order.

        This thread alone reads the input file, and closes it however the stage ends (issue 17).
        """
        with stream, self.clf.encode_pool(self.preparers) as pool:
            ahead: deque[tuple[RecordChunk, Future[Encoded]]] = deque()  # being encoded, oldest first
            for window in windows(stream.chunks(skip), self.clf.batching.window):
                if not self._slot():
                    return
                ahead.append((window, pool.submit(self.clf.scorable(window)[1])))
                if len(ahead) == self.preparers and not self._queue(self._prepare(*ahead.popleft())):
                    return
            while ahead:
                if not self._queue(self._prepare(*ahead.popleft())):
                    return
        self._put(self.batches, None)

    def _prepare(self, window: RecordChunk, encoded: Future[Encoded]) -> Prepared | None:
        """The window prepared from its encoding; None when the run stops meanwhile.

        A signal sent to the whole process group (``kill -TERM -PGID``) ends the encoding workers as well
        as asking this process to stop; the pool then breaks just before (or after) the stop request is
        noted, so a broken pool is a stop when a request arrives within ``BROKEN_POOL_GRACE_S``.
        """
        try:
            return self.clf.prepare(window, encoded.result())
        except BrokenExecutor:  # a broken process pool (concurrent.futures.process, imported only for CUDA)
            deadline = time.monotonic() + BROKEN_POOL_GRACE_S
            while time.monotonic() < deadline:
                if self._halted():
                    return None
                time.sleep(POLL_S / 10)
            raise

    def _queue(self, prepared: Prepared | None) -> bool:
        """Pad and queue a prepared window's batches (a window without any still passes through); False
        when the run stops."""
        if prepared is None:
            return False
        countdown = _Countdown(max(1, len(prepared.batches)))
        if not prepared.batches:
            return self._put(self.batches, (prepared, None, countdown))
        for batch in prepared.batches:
            if not self._put(
                self.batches, (prepared, (batch, self.clf.inputs(prepared.tokens, batch)), countdown)
            ):
                return False
        return True

    def _infer(self) -> None:
        """One stream: score batches until the reader's end mark, which it leaves for the other streams;
        the last stream to see it tells the writer that nothing more is coming."""
        while True:
            item = self._get(self.batches)
            if item is None:
                if self._halted():
                    return
                self._put(self.batches, None)
                if self.streams_left.finish_one():
                    self._put(self.finished, None)
                return
            prepared, work, countdown = item
            if work is not None:
                batch, inputs = work
                prepared.window.add(batch, inputs)  # streams add disjoint rows
            if countdown.finish_one():
                prepared.window.close()
                if not self._put(self.finished, prepared):
                    return

    def _write(self, skip: int) -> None:
        """Write windows in input order: with several streams a later window can finish first."""
        expected = skip  # the first window starts where the reader started
        held: dict[int, Prepared] = {}
        while True:
            prepared: Prepared | None = self._get(self.finished)
            if prepared is None:
                if held and not self._halted():
                    raise InternalError(f"windows at rows {sorted(held)} finished, row {expected} never did")
                return
            held[prepared.start] = prepared
            while expected in held:
                ready = held.pop(expected)
                expected += len(ready)
                self._write_window(ready)
                self.window_slots.release()
                if self._halted():
                    return

    def _write_window(self, prepared: Prepared) -> None:
        table = self.clf.finish(prepared, with_probs=self.probs)
        errors = prepared.errors
        reasons = Counter(reason_kind(e) for e in errors if e) if any(errors) else Counter()
        n_error = sum(reasons.values())
        self.partial.add(
            table, prepared.start, len(prepared) - n_error, n_error, prepared.truncated, dict(reasons)
        )
        if self.sink is not None:
            self.sink(table)
        if self.progress is not None:
            self.progress.update(len(prepared))

    # -- running them ------------------------------------------------------------------------------
    def _warm_up(self) -> None:
        """Two made-up rows through the stages' code, here in the calling thread, before any stage starts.

        Whatever that code imports on first use (a text codec, a library's lazily loaded part) is then
        imported before the worker threads exist: no first import runs in a stage (the stream's
        constructor already parsed the input's first chunk in this thread, for the same reason). The
        model itself is not run: onnxruntime's ``run`` imports nothing, and a made-up batch would count
        in a runner's own statistics. The sample's window is closed with no batch in it (a device runner
        sets up its copies back here, in this thread), so the writer's step runs on its zero logits.
        """
        sample = self.clf.prepare(RecordChunk(0, None, ["warm-up row", None], ["", "null text"]))
        for batch in sample.batches:
            self.clf.inputs(sample.tokens, batch)
        sample.window.close()
        self.clf.finish(sample, with_probs=self.probs)
        Counter(reason_kind(e) for e in sample.errors if e)

    def run(self, stream: RecordStream, skip: int) -> None:
        """Start the stages, watch them until the writer is done or the run stops, then join them all.

        Every thread is started inside the ``try`` whose ``finally`` stops and joins it, so no exit path
        (a failed start, a ``KeyboardInterrupt`` in an API caller's main thread) leaves one running.
        """
        stages = [
            ("clsrun-read", lambda: self._read(stream, skip)),
            *((f"clsrun-infer-{i}", self._infer) for i in range(self.streams)),
            ("clsrun-write", lambda: self._write(skip)),
        ]
        self._warm_up()
        threads: list[threading.Thread] = []
        try:
            for name, target in stages:
                thread = threading.Thread(target=self._guard(target), name=name, daemon=True)
                threads.append(thread)
                thread.start()
            writer = threads[-1]
            while writer.is_alive() and not self._halted():
                writer.join(POLL_S)
        finally:
            self.stop.set()  # done, failed or asked to stop: whatever is still running returns now
            self.stuck = _join_all(threads, STOP_GRACE_S)
        if self.failure is not None:
            raise self.failure


def _join_all(threads: list[threading.Thread], grace: float) -> list[str]:
    """Join every thread within ``grace`` seconds in all; the names of those still running after it."""
    deadline = time.monotonic() + grace
    for thread in threads:
        if thread.ident is None:  # its start failed (no threads left): nothing to join
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in threads if t.is_alive()]
