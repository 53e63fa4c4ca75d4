"""The Python API: load a bundle once, score texts or record batches with it.

```python
from clsrun import Classifier, Variant            # also clsrun.runtime.classifier / clsrun.runtime.variant
clf = Classifier.load("my_bundle")                # or Classifier.load() for the shipped default model
clf.predict(["很好用", "太差了"]).labels           # ["pos", "neg"]
clf.score_records(["很好用", None], ids=["a", "b"])  # pyarrow.Table with the columns of `clsrun predict`
Classifier.load("my_bundle", Variant(precision="fp32", threads=4))  # what `--precision fp32 --threads 4` runs
```

Scoring one window of rows is three steps, kept apart so that ``score.py`` can run them in different
threads (and an engine such as Ray can call them on its own record batches):

1. :meth:`Classifier.prepare`: normalise, tokenize once, and plan length-sorted batches (CPU, Python);
2. :meth:`Classifier.inputs` per batch, then ``prepared.window.add(batch, inputs)``: the model (onnxruntime
   releases the GIL; the torch runner on CUDA queues the batch and returns), ``prepared.window.close()``
   after the last batch;
3. :meth:`Classifier.finish`: softmax and the output table, rows back in input order (it waits for the
   window's logits).

:meth:`Classifier.predict` and :meth:`Classifier.score_records` do all three, running the batches of
step 2 on ``streams`` threads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa

from clsrun.runtime.batching import BatchOptions, windows
from clsrun.runtime.bundle import Bundle, default_model_path
from clsrun.runtime.columns import escape_surrogates, valid_unicode
from clsrun.runtime.encode import Encoder, ModelInputs, SparseEncoder, Tokens, make_encoder
from clsrun.runtime.encode_pool import Encoded, EncodePool, encode_texts
from clsrun.runtime.errors import BundleBusyError, BundleError, UsageError
from clsrun.runtime.infer import HostWindow, Runner, WindowLogits, open_runner, softmax
from clsrun.runtime.input_files import DEFAULT_MAX_TEXT_BYTES
from clsrun.runtime.machine import default_threads
from clsrun.runtime.outlock import holder
from clsrun.runtime.readers import RecordChunk
from clsrun.runtime.variant import Choice, Variant, choose, default_preparers, default_streams
from clsrun.runtime.writers import output_schema, result_table


@dataclass
class Prepared:
    """One window of rows, tokenized and planned; ``window`` is filled batch by batch by inference."""

    start: int  # row number of the window's first row
    ids: list[str | None] | None  # --id-col values, or None (row numbers)
    errors: list[str]  # (n,) per row: "" when scored, else the reason
    valid: np.ndarray  # (m,) int64 window positions of the rows that are scored
    tokens: Tokens  # the m scored texts, tokenized
    batches: list[np.ndarray]  # indices into tokens / valid, length-sorted (in order when nothing is padded)
    window: WindowLogits  # the m rows' logits, batch by batch (see infer.WindowLogits)

    def __len__(self) -> int:
        return len(self.errors)

    @property
    def logits(self) -> np.ndarray:
        """(m, C) float32 logits of the scored rows; waits for the device when it still runs them."""
        return self.window.result()

    @property
    def truncated(self) -> int:
        """How many rows were cut to the model's maximum length."""
        return int(self.tokens.truncated.sum())


@dataclass
class Predictions:
    """Result of :meth:`Classifier.predict`: row ``i`` is ``labels[i]`` with probabilities ``probs[i]``.

    A row that could not be scored (empty or null text) has label ``""``, a row of NaN probabilities
    and its reason in ``errors[i]`` (``""`` for scored rows).
    """

    labels: list[str]
    probs: np.ndarray  # (n, C) float32, columns in Classifier.labels order
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> np.ndarray:
        """(n,) bool: the row was scored."""
        return np.array([not e for e in self.errors], dtype=bool)


def as_texts(texts: Any) -> list[Any]:
    """``texts`` given through the API as a list: any iterable of texts (a list, tuple, generator, numpy
    array, pandas Series, pyarrow array). One string is refused: iterating it would score each character."""
    if isinstance(texts, (str, bytes)):
        raise UsageError(
            f"texts is one {type(texts).__name__}, not a list of texts: pass [text] to score it as one row"
        )
    if isinstance(texts, Mapping) or hasattr(texts, "columns"):  # iterating gives keys / column names
        raise UsageError(
            f"texts is a {type(texts).__name__}, whose iteration gives its keys or column names, not its "
            "texts: pass the column (df['text']) or a list"
        )
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        return cast(list[Any], texts.to_pylist())
    try:
        return list(texts)
    except TypeError:
        raise UsageError(f"texts must be a list of strings, not a {type(texts).__name__}") from None


def _missing(value: Any) -> bool:
    """None, or what pandas and numpy use for a missing value (``pd.NA``, NaN)."""
    if value is None or type(value).__name__ == "NAType":
        return True
    return isinstance(value, (float, np.floating)) and value != value  # float32 NaN is no Python float


def check_texts(
    texts: list[Any], max_bytes: int = DEFAULT_MAX_TEXT_BYTES
) -> tuple[list[str | None], list[str]]:
    """Per-row validation of texts given through the API (files get the same checks in ``columns.py``)."""
    out: list[str | None] = []
    errors: list[str] = []
    for t in texts:
        reason = ""
        if _missing(t):
            reason = "null text"
        elif not isinstance(t, str):
            reason = f"text is a {type(t).__name__}, not a string"
        elif not t.strip():
            reason = "empty or whitespace-only text"
        elif len(t) * 4 > max_bytes and len(t.encode("utf-8", "surrogatepass")) > max_bytes:
            reason = f"text over the {max_bytes}-byte size cap"
        elif not valid_unicode(t):  # no UTF-8 file can hold it: an error row there too
            reason = "text is not valid Unicode (a lone surrogate such as \\ud800)"
        out.append(None if reason else t)
        errors.append(reason)
    return out, errors


def check_ids(ids: Any, texts: list[str | None], errors: list[str]) -> list[str | None]:
    """The API's ``ids`` as the ``id`` column's text, one per text, as ``clsrun predict`` writes ids: bytes
    that are not UTF-8 as ``\\xNN`` escapes, other values as ``str()``; an id holding a lone surrogate
    makes its row an error row (in place in ``texts`` and ``errors``), the id written escaped."""
    try:
        values = as_texts(ids) if not isinstance(ids, (str, bytes)) else None
    except UsageError:  # its words are about texts
        raise UsageError(
            f"ids: {type(ids).__name__} given; give a list with one id per text, or none"
        ) from None
    if values is None or len(values) != len(texts):
        given = f"{len(values)} ids" if values is not None else f"one {type(ids).__name__}"
        raise UsageError(f"ids: {given} for {len(texts)} texts; give one id per text, or none")
    out: list[str | None] = []
    for i, v in enumerate(values):
        if _missing(v):
            out.append(None)
            continue
        text = v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v)
        if not valid_unicode(text):
            text = escape_surrogates(text)
            texts[i], errors[i] = None, "id is not valid Unicode (a lone surrogate), written escaped"
        out.append(text)
    return out


@dataclass(frozen=True)
class Classifier:
    """A loaded model: encoder, runner, labels and batching, fixed at :meth:`load` and never changed after.

    Several threads may score with one classifier at once (``score.py`` does): nothing in it changes.
    """

    bundle: Bundle
    encoder: Encoder
    runner: Runner
    choice: Choice  # what runs: backend, precision, device, file
    threads: int  # inference threads in all
    streams: int  # batches run at once, each on threads // streams intra-op threads
    batching: BatchOptions  # resolved: batch_tokens and max_batch_rows are set
    preparers: int = 1  # windows encoded at once while scoring a file (encode_pool.py)
    encode_threads: int = 0  # tokenizer threads in each of those processes (0: one per core)
    encode_in_threads: bool = False  # when > 1, threads of this process (CPU), else processes (CUDA)

    @classmethod
    def load(
        cls,
        bundle: Path | str | Bundle | None = None,
        variant: Variant = Variant(),
        batching: BatchOptions = BatchOptions(),
    ) -> Classifier:
        """Load and verify a bundle (None: the default model shipped with clsrun) and open its runner.

        ``variant``: what to run, as ``clsrun predict``'s options (``auto`` picks the fastest variant that
        passed the export gate, :func:`~clsrun.runtime.variant.choose`); then :meth:`open`.
        """
        # Lazily: each file's sha256 is checked when the runner or encoder opens it (Bundle.load).
        if isinstance(bundle, str) and not bundle.strip():  # an unset variable, say: not the default model
            raise BundleError("the bundle path is empty; pass None (or nothing) for the default model")
        root = bundle.root if isinstance(bundle, Bundle) else Path(bundle or default_model_path())
        try:
            loaded = bundle if isinstance(bundle, Bundle) else Bundle.load(root, lazily=True)
            return cls.open(loaded, choose(loaded, variant), variant.threads, variant.streams, batching)
        except (BundleError, FileNotFoundError) as e:  # a file of a bundle being replaced may vanish mid-read
            busy = holder(root)
            if busy is None and isinstance(e, FileNotFoundError):
                raise BundleError(f"{e.filename}: a file of the bundle went missing while it loaded") from e
            if busy is None:
                raise
            raise BundleBusyError(  # not "damaged": its files are being replaced (export) or written (train)
                f"{root}: another run is writing this bundle ({busy}); run again when it has finished"
            ) from e

    @classmethod
    def open(
        cls,
        bundle: Bundle,
        choice: Choice,
        threads: int | None = None,
        streams: int | None = None,
        batching: BatchOptions = BatchOptions(),
    ) -> Classifier:
        """A classifier that runs ``choice`` on a loaded bundle: what :meth:`load` does once it has chosen.

        ``threads`` default to the cores this process may use, ``streams`` to
        :func:`~clsrun.runtime.variant.default_streams`; ``batching``'s token budget defaults by model kind
        and ``choice.device``. Export's gate opens each file it built this way
        (:func:`~clsrun.runtime.variant.onnx_candidate`), so it scores exactly what predict will run.
        """
        threads = threads or default_threads()
        streams = streams or default_streams(choice, threads)
        if streams > threads:
            raise UsageError(f"--streams {streams}: must be between 1 and the threads ({threads})")
        encoder = make_encoder(bundle)
        runner = open_runner(bundle, choice, threads // streams, streams)
        sparse_inputs: frozenset[str] = getattr(runner, "sparse_inputs", frozenset())
        sparse = bool(sparse_inputs)
        if sparse:
            if not isinstance(encoder, SparseEncoder):
                raise BundleError(
                    f"{bundle.root}: {choice.file} takes a sparse input, which a {bundle.spec.kind} model cannot give"
                )
            encoder = encoder.for_sparse_inputs(sparse_inputs)  # a counting graph's encoder does not weigh
        # a runner that pads batch widths (OpenVINO) says to what multiple: batches are planned on those widths
        width_multiple: int = getattr(runner, "width_multiple", 1)
        resolved = batching.resolved(bundle.spec.kind, choice.device, not sparse, width_multiple)
        preparers = default_preparers(choice, threads, bundle.spec.kind)
        return cls(
            bundle,
            encoder,
            runner,
            choice,
            threads,
            streams,
            resolved,
            preparers,
            encode_in_threads=choice.device != "cuda",
        )

    @property
    def labels(self) -> list[str]:
        """Labels in output (probability column) order."""
        return self.bundle.labels

    def describe(self) -> dict[str, Any]:
        """What runs: backend, precision, device, threads, variant file, providers, bundle path and digest."""
        return {
            **asdict(self.choice),
            "threads": self.threads,
            "streams": self.streams,
            "providers": list(self.runner.providers),
            "bundle": str(self.bundle.root),
            "bundle_digest": self.bundle.digest,
            "kind": self.bundle.spec.kind,
            "labels": list(self.labels),
        }

    def output_schema(self, probs: bool, text_ids: bool) -> pa.Schema:
        """Columns of :meth:`finish`'s tables."""
        return output_schema(self.labels, probs, text_ids)

    # -- the three steps ---------------------------------------------------------------------------
    def scorable(self, chunk: RecordChunk) -> tuple[np.ndarray, Sequence[str]]:
        """(rows, texts) of the rows of ``chunk`` that have a text and no error yet; texts as read (the
        usual window, every row valid, gives its texts as they are: maybe still an Arrow column)."""
        if not any(chunk.errors) and None not in chunk.texts:  # the usual window: every row (C-level checks)
            return np.arange(len(chunk.texts), dtype=np.int64), cast(Sequence[str], chunk.texts)
        rows: list[int] = []
        texts: list[str] = []
        for i, (text, error) in enumerate(zip(chunk.texts, chunk.errors, strict=True)):
            if text is not None and not error:
                rows.append(i)
                texts.append(text)
        return np.asarray(rows, dtype=np.int64), texts

    def encode_pool(self, processes: int) -> EncodePool:
        """Encodes windows' :meth:`scorable` texts for :meth:`prepare`, ``processes`` at a time."""
        return EncodePool(
            self.encoder,
            self.bundle.spec.normalization,
            processes,
            self.encode_threads,
            self.encode_in_threads,
        )

    def prepare(self, chunk: RecordChunk, encoded: Encoded | None = None) -> Prepared:
        """Normalise and tokenize a window's valid texts once, and plan its batches.

        ``encoded``: what :meth:`encode_pool` made of the window's :meth:`scorable` texts (else it is
        done here).
        """
        rows, texts = self.scorable(chunk)
        if encoded is None:
            encoded = encode_texts(self.encoder, self.bundle.spec.normalization, texts)
        errors = list(chunk.errors)
        valid = rows[encoded.kept]  # (m,) window positions of the rows that are scored
        if len(valid) < len(rows):
            for i in np.setdiff1d(rows, valid).tolist():
                errors[i] = "no readable text after normalisation"
        batches = self.batching.plan(encoded.tokens.lengths)
        return Prepared(
            chunk.start, chunk.ids, errors, valid, encoded.tokens, batches, self.open_window(len(valid))
        )

    def open_window(self, rows: int) -> WindowLogits:
        """Where the logits of a window of ``rows`` scored rows go: the runner's own when it has one."""
        opener = getattr(self.runner, "open_window", None)
        if opener is not None:
            window: WindowLogits = opener(rows, len(self.labels))
            return window
        return HostWindow(self.run, rows, len(self.labels))

    def inputs(self, tokens: Tokens, batch: np.ndarray) -> ModelInputs:
        """Model inputs of rows ``batch`` of ``tokens`` (a planned batch): padded ``{name: (B, T) array}``,
        or the rows as a sparse matrix when the runner's graph takes one (``batching.padded`` is then off)."""
        if not self.batching.padded:
            return cast(SparseEncoder, self.encoder).sparse(tokens, batch)
        return self.encoder.pad(tokens, batch)

    def run(self, inputs: ModelInputs) -> np.ndarray:
        """Logits ``(B, C)`` float32 of one batch (:meth:`inputs`)."""
        logits = self.runner.run(inputs)
        expected = (len(next(iter(inputs.values()))), len(self.labels))
        if logits.shape != expected:
            raise BundleError(
                f"{self.bundle.root}: the model gave logits of shape {logits.shape}, expected {expected} "
                f"({len(self.labels)} labels)"
            )
        return logits

    def finish(self, prepared: Prepared, with_probs: bool = False) -> pa.Table:
        """The output table of a window, in input order (see ``writers.result_table``)."""
        probs = np.zeros((len(prepared), len(self.labels)), dtype=np.float32)  # (n, C)
        if len(prepared.valid):
            probs[prepared.valid] = _finite_rows(prepared)
        return result_table(prepared.start, prepared.ids, probs, prepared.errors, self.labels, with_probs)

    # -- one-call APIs -----------------------------------------------------------------------------
    def infer(self, prepared: Prepared) -> Prepared:
        """Run every batch of ``prepared``, ``streams`` at a time, into ``prepared.window`` (then closed)."""
        batches, window = prepared.batches, prepared.window
        if self.streams == 1 or len(batches) < 2:
            for batch in batches:
                window.add(batch, self.inputs(prepared.tokens, batch))
        else:
            with ThreadPoolExecutor(
                min(self.streams, len(batches)), thread_name_prefix="clsrun-infer"
            ) as pool:
                list(pool.map(lambda batch: window.add(batch, self.inputs(prepared.tokens, batch)), batches))
        window.close()
        return prepared

    def score_records(self, texts: Any, ids: Any = None, start: int = 0, probs: bool = True) -> pa.Table:
        """Score a record batch; returns exactly the columns ``clsrun predict`` writes, one row per text.

        ``texts``: a list (or any iterable, see :func:`as_texts`) of texts. ``ids``: one value per text
        for the ``id`` column (as text), else row numbers counted from ``start``. Rows that cannot be
        scored are kept with ``status == "error"`` and the reason; nothing raises per row.
        """
        checked, errors = check_texts(as_texts(texts))
        id_text = None if ids is None else check_ids(ids, checked, errors)
        tables = [
            self.finish(prepared, with_probs=probs)
            for prepared in self._scored(RecordChunk(start, id_text, checked, errors))
        ]
        return (
            pa.concat_tables(tables) if tables else self.output_schema(probs, ids is not None).empty_table()
        )

    def predict(self, texts: Any) -> Predictions:
        """Labels and probabilities ``(n, C)`` of ``texts`` (a list, or any iterable: :func:`as_texts`);
        bad rows are reported in ``errors``, not raised."""
        checked, errors = check_texts(as_texts(texts))
        probs = np.full((len(checked), len(self.labels)), np.nan, dtype=np.float32)  # (n, C)
        for prepared in self._scored(RecordChunk(0, None, checked, errors)):
            if len(prepared.valid):
                probs[prepared.start + prepared.valid] = _finite_rows(prepared)
            errors[prepared.start : prepared.start + len(prepared)] = prepared.errors
        names = np.asarray(self.labels, dtype=object)
        labels = ["" if e else str(names[int(np.nanargmax(p))]) for p, e in zip(probs, errors, strict=True)]
        return Predictions(labels, probs, errors)

    def _scored(self, chunk: RecordChunk) -> Iterator[Prepared]:
        """``chunk``'s rows scored a window at a time (``batching.windows``, as a file is): however many
        texts the API is given, it holds one window's tokens and logits at once."""
        for window in windows([chunk], self.batching.window):
            yield self.infer(self.prepare(window))


NOT_FINITE = "the model gave scores that are not numbers (NaN or inf): its weights are damaged or diverged"


def _finite_rows(prepared: Prepared) -> np.ndarray:
    """Softmax of ``prepared``'s logits; a row whose logits are not all finite is marked an error row
    (:data:`NOT_FINITE`) in ``prepared.errors`` instead of being written as a score of NaN, status ok.
    Returns ``(m, C)`` probabilities of the valid rows (zero for the rows marked)."""
    logits = prepared.logits  # (m, C)
    finite = np.isfinite(logits).all(axis=1)  # (m,)
    if finite.all():
        return softmax(logits)
    for i in prepared.valid[~finite].tolist():
        prepared.errors[i] = NOT_FINITE
    return np.where(finite[:, None], softmax(np.where(finite[:, None], logits, 0.0)), 0.0)
