"""The TF-IDF + logistic-regression baseline that every ``clsrun train`` report shows next to its model.

A user weighing a clsrun model against what they run today compares it with ten lines of scikit-learn,
so training fits that recipe on the same split and reports both, with one warning when the model does
not beat it (``--no-baseline`` skips it). The recipe is a strong one on purpose, since a weak baseline
would flatter every model:

- text as the model saw it (the bundle's normalisation); the language rule of ``runtime/encode_ngram.py``
  picks the analyzer: character 1-3-grams for CJK text, word 1-2-grams otherwise;
- ``TfidfVectorizer(sublinear_tf=True, min_df=2)``, at most :data:`MAX_FEATURES` terms;
- ``LogisticRegression(C=10)`` (lbfgs), ``class_weight="balanced"`` with ``--class-weights auto``.

C=10 instead of scikit-learn's C=1 scores higher on all three data sets (README, measured by
``benchmarks/baseline_c.py``). The fit runs beside training, in its own process on one thread
(:class:`BaselineRun`), so on two cores it costs little wall time; a small training set is fitted in a
thread instead, where starting a process would cost more than the fit.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import resource
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clsrun.runtime.encode_ngram import detect_script
from clsrun.runtime.textnorm import normalize_many

if TYPE_CHECKING:
    from clsrun.runtime.bundle import Normalization
    from clsrun.runtime.metrics import ClassificationReport
    from clsrun.trainer.config import TrainConfig
    from clsrun.trainer.data import Split

log = logging.getLogger("clsrun.trainer")

C = 10.0  # inverse L2 strength of the baseline's logistic regression (see the module doc)
MAX_FEATURES = 500_000  # TF-IDF terms kept, most frequent first: bounds the fit on long documents
IN_PROCESS_ROWS = 2_000  # fewer training rows: fit in a thread (a process start costs more than the fit)
TITLE = "TF-IDF + logistic regression"


@dataclass(frozen=True)
class BaselineResult:
    """What the baseline scored on the validation rows, and how it was made; ``training.baseline``."""

    recipe: str  # e.g. "TfidfVectorizer(char 1-3, sublinear_tf, min_df=2) + LogisticRegression(C=10)"
    accuracy: float
    macro_f1: float
    features: int  # TF-IDF terms used
    seconds: float  # wall time of vectorising and fitting
    cpu_seconds: float  # CPU time of the same (process CPU; includes nothing of the model's training)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def vectorizer_settings(script: str) -> dict[str, Any]:
    """``TfidfVectorizer`` arguments for text the language rule calls ``script``."""
    analyzer: dict[str, Any] = (
        {"analyzer": "char", "ngram_range": (1, 3)}
        if script == "cjk"
        else {"analyzer": "word", "ngram_range": (1, 2)}
    )
    return {**analyzer, "sublinear_tf": True, "min_df": 2, "max_features": MAX_FEATURES, "dtype": np.float32}


def fit_baseline(
    train_texts: list[str],
    train_targets: np.ndarray,
    val_texts: list[str],
    val_targets: np.ndarray,
    balanced: bool,
) -> BaselineResult:
    """Fit the recipe on normalised texts and score it on the validation rows (one BLAS/OpenMP thread)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from threadpoolctl import threadpool_limits

    start, cpu = time.perf_counter(), _cpu_seconds()
    settings = vectorizer_settings(detect_script(train_texts))
    with threadpool_limits(1):
        try:
            vectorizer = TfidfVectorizer(**settings)
            features = vectorizer.fit_transform(train_texts)
        except ValueError:  # no term in 2 texts (a tiny training set): keep every term
            vectorizer = TfidfVectorizer(**{**settings, "min_df": 1})
            features = vectorizer.fit_transform(train_texts)
        model = LogisticRegression(C=C, max_iter=1000, class_weight="balanced" if balanced else None)
        with without_class_count_note():
            model.fit(features, train_targets)
        predicted = model.predict(vectorizer.transform(val_texts))
    low, high = settings["ngram_range"]
    recipe = (
        f"TfidfVectorizer({settings['analyzer']} {low}-{high}, sublinear_tf, min_df={vectorizer.min_df}) + "
        f"LogisticRegression(C={C:g}{', balanced' if balanced else ''})"
    )
    return BaselineResult(
        recipe=recipe,
        accuracy=float(accuracy_score(val_targets, predicted)),
        macro_f1=float(f1_score(val_targets, predicted, average="macro")),
        features=int(features.shape[1]),
        seconds=round(time.perf_counter() - start, 2),
        cpu_seconds=round(_cpu_seconds() - cpu, 2),
    )


@contextlib.contextmanager
def without_class_count_note() -> Iterator[None]:
    """scikit-learn's fits without its "number of unique classes is greater than 50%" warning: many labels
    over few rows is a shape the trainer's own checks judge (every label on both sides of the split), and
    two raw lines of a library warning on stderr told a user nothing to do."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
        yield


def _cpu_seconds() -> float:
    """CPU seconds of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class BaselineRun:
    """A baseline fit running beside training; :meth:`result` waits for it."""

    def __init__(self, executor: Executor, future: Future[BaselineResult]) -> None:
        self._executor = executor
        self._future = future

    @classmethod
    def start(cls, split: Split, config: TrainConfig, normalization: Normalization) -> BaselineRun:
        """Start fitting the baseline on ``split`` (texts normalised as the model's are)."""
        executor: Executor
        if len(split.train_texts) < IN_PROCESS_ROWS:
            executor = ThreadPoolExecutor(1, thread_name_prefix="clsrun-baseline")
        else:  # spawn, not fork: the parent may already run OpenMP threads (torch), which fork breaks
            executor = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=exit_with_parent,
                initargs=(os.getpid(),),
            )
        future = executor.submit(
            fit_baseline,
            normalize_many(split.train_texts, normalization),
            split.train_targets(),
            normalize_many(split.val_texts, normalization),
            split.val_targets(),
            config.class_weights == "auto",
        )
        return cls(executor, future)

    def result(self) -> BaselineResult | None:
        """The baseline's result, or None (and a warning saying why) when its process failed."""
        try:
            return self._future.result()
        except (BrokenProcessPool, OSError, ValueError, MemoryError) as e:
            log.warning("the %s baseline could not be fitted: %s", TITLE, e)
            return None
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def cancel(self) -> None:
        """Stop the baseline (training failed or was stopped): its process is ended now, not left to finish
        the fit, which the interpreter's exit would wait for (a stopped ``clsrun train`` then took the rest
        of the fit, tens of seconds on a large file, to exit after saying it was interrupted)."""
        self._future.cancel()
        _end_workers(self._executor)
        self._executor.shutdown(wait=False, cancel_futures=True)


def exit_with_parent(parent: int, every: float = 1.0) -> None:
    """Worker initializer: end this process once ``parent`` (the training that started it) is gone.

    A training killed outright (``kill -9``, the OOM killer) cannot end its baseline worker, and an
    orphaned pool worker waits on its task queue forever, holding its memory and the caller's output
    pipes (a scheduler reading them waits too). Polled from a daemon thread rather than Linux's
    ``PR_SET_PDEATHSIG``, which fires when the *thread* that started the worker ends, not the process."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="clsrun-baseline-parent", daemon=True).start()


def _end_workers(executor: Executor) -> None:
    """Kill a process pool's workers (a thread pool's cannot be ended: its fits are small).

    Killed, not terminated: a worker holds nothing but the fit in memory, and it inherits an ignored
    SIGTERM from a parent that ignores it (``stopping.finish`` does, as its last act).
    ``ProcessPoolExecutor.kill_workers`` exists from Python 3.14; before it, the pool's processes are
    reachable only as its ``_processes`` mapping, which every version since 3.2 has.
    """
    if not isinstance(executor, ProcessPoolExecutor):
        return
    kill = getattr(executor, "kill_workers", None)
    if kill is not None:
        kill()
        return
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        process.kill()


def comparison(report: ClassificationReport, baseline: BaselineResult, kind: str) -> str:
    """The model and the baseline side by side, as ``clsrun train`` prints them."""
    width = max(len(TITLE), len(kind) + 11)
    return "\n".join(
        [
            f"{'validation (' + str(report.rows) + ' rows)':<{width}}  accuracy  macro-F1",
            f"{'model (' + kind + ')':<{width}}  {report.accuracy:8.4f}  {report.macro_f1:8.4f}",
            f"{TITLE:<{width}}  {baseline.accuracy:8.4f}  {baseline.macro_f1:8.4f}   "
            f"(baseline: {baseline.recipe}; {baseline.seconds:.1f} s)",
        ]
    )


def shortfall(report: ClassificationReport, baseline: BaselineResult, metric: str) -> str | None:
    """The one-line warning when the model does not beat the baseline on ``metric``; None when it does, or
    when it scores every validation row right (nothing can beat that: a tie at 1.0 is no shortfall)."""
    mine, theirs = getattr(report, metric), getattr(baseline, metric)
    if mine > theirs or mine >= 1.0:
        return None
    name = "macro-F1" if metric == "macro_f1" else "accuracy"
    return (
        f"the model does not beat the {TITLE} baseline on validation {name} ({mine:.4f} vs {theirs:.4f}): "
        "plain TF-IDF would serve as well"
    )


def record(
    out: Path, baseline: BaselineResult, report: ClassificationReport, config: TrainConfig, kind: str
) -> None:
    """Add the baseline to the bundle (``training.baseline`` in ``clsrun.json``, rehashed) and to its
    TensorBoard logs, and warn in one line when the model does not beat it."""
    from clsrun.runtime.bundle import Bundle, write_spec
    from clsrun.trainer.reporting import headline_metric, tensorboard_writer

    metric = headline_metric(config)
    warning = shortfall(report, baseline, metric)
    bundle = Bundle.load(out, verify=False)
    bundle.spec.training["baseline"] = {
        **baseline.to_json(),
        "compared_on": metric,
        "beaten": warning is None,
    }
    write_spec(out, bundle.spec)
    writer = tensorboard_writer(out, config, run="baseline")  # its own run: one events file per run
    if writer is not None:
        # TensorBoard renders text as markdown: indent by four spaces to keep the columns.
        writer.add_text(
            "baseline", "\n".join("    " + line for line in comparison(report, baseline, kind).split("\n"))
        )
        writer.close()
    if warning is not None:
        log.warning(warning)
