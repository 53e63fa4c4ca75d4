"""The n-gram model's fp32 graphs: one sparse-times-dense product, then a bias (and for raw tf, the weights).

A weighing graph (sublinear tf): ``logits = features @ table + bias``, where ``features`` is the batch's
``(B, n_features)`` weight matrix in CSR form (``encode.SparseRows``: each row holds its text's weights at
its feature ids) and ``table`` the model's ``(n_features, n_labels)`` rows.

A counting graph (raw tf): the input is the batch's raw n-gram counts (each occurrence a 1), and the
graph weighs them itself. A raw-tf weight is ``idf[id] / sqrt(sum of idf**2 over the text's occurrences)``,
so both the weighted sum and the norm are linear in the counts: one product with ``[idf * table | idf**2]``
gives every row's ``sum idf * table[id]`` and ``sum idf**2``, and ``logits = sums / sqrt(norms) + bias``.
The encoder then computes no weights at all (no idf lookup, no per-text norms): those passes were a fifth of
encoding a window of short texts, while the product only grows by a column (README: n-gram scoring).

Both compute what the eager ``NgramLinear`` computes from padded ids and weights (``Gather`` and a batched
``MatMul``), without the padding: onnxruntime's Gather of padded ``(B, T)`` ids and the padding itself cost
several times the product.

Written by hand, not by ``torch.onnx``: the TorchScript exporter has no sparse input, and onnxruntime's
``SparseToDenseMatMul`` (its ``com.microsoft`` domain, CPU kernel) is the one operator that takes one. So
these graphs run on onnxruntime only; the variants derived from fp32 (int8, fp16, OpenVINO) are derived
from the dense graph ``torch.onnx`` exports, which export keeps for that (``exporter.build_fp32``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clsrun.runtime.encode_ngram import COUNTS_INPUT, SPARSE_INPUT
from clsrun.runtime.errors import file_errors_of

if TYPE_CHECKING:
    from clsrun.runtime.bundle import Bundle
    from clsrun.trainer.ngram import NgramLinear

OPSET = 17
MS_DOMAIN = "com.microsoft"


def write_sparse_graph(
    model: NgramLinear, out: Path, output_name: str, idf: np.ndarray | None = None
) -> Path:
    """Write ``model``'s sparse graph to ``out``; output ``output_name`` ``(B, n_labels)`` float32.

    ``idf`` (``(n_features,)``, a raw-tf model's): a counting graph, input :data:`COUNTS_INPUT`; without
    it a weighing graph, input :data:`SPARSE_INPUT`. Either input is ``(B, n_features)`` float CSR."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = model.table.weight.detach().cpu().float().numpy()  # (V, C)
    bias = model.bias.detach().cpu().float().numpy()  # (C,)
    n_features, n_labels = table.shape
    if idf is None:
        name, columns = SPARSE_INPUT, table
        nodes = [
            helper.make_node("SparseToDenseMatMul", [name, "table"], ["summed"], domain=MS_DOMAIN),
            helper.make_node("Add", ["summed", "bias"], [output_name]),
        ]
        constants: dict[str, np.ndarray] = {}
    else:
        if idf.shape != (n_features,):
            raise ValueError(f"{idf.shape} idf values for a table of {n_features} features")
        idf = idf.astype(np.float32)
        name, columns = COUNTS_INPUT, np.concatenate([idf[:, None] * table, np.square(idf)[:, None]], axis=1)
        nodes = [
            helper.make_node("SparseToDenseMatMul", [name, "table"], ["sums"], domain=MS_DOMAIN),
            helper.make_node("Split", ["sums", "widths"], ["summed", "squares"], axis=1),
            helper.make_node("Max", ["squares", "tiny"], ["floored"]),  # a text with no kept n-gram: 0 / tiny
            helper.make_node("Sqrt", ["floored"], ["norms"]),
            helper.make_node("Div", ["summed", "norms"], ["weighed"]),
            helper.make_node("Add", ["weighed", "bias"], [output_name]),
        ]
        # The encoder's own floor for a weighing graph (encode_ngram._inverse_norms).
        constants = {"widths": np.array([n_labels, 1], np.int64), "tiny": np.array([1e-24], np.float32)}
    graph = helper.make_graph(
        nodes,
        "ngram_sparse",
        [helper.make_sparse_tensor_value_info(name, TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", n_labels])],
        [
            numpy_helper.from_array(np.ascontiguousarray(columns, dtype=np.float32), "table"),
            numpy_helper.from_array(bias, "bias"),
            *(numpy_helper.from_array(value, key) for key, value in constants.items()),
        ],
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="clsrun",
    )
    proto.ir_version = 8  # what onnxruntime 1.16 and later load; the graph needs nothing newer
    out.parent.mkdir(parents=True, exist_ok=True)
    with file_errors_of(out):
        onnx.save(proto, str(out))
    return out


# Texts each graph scores when export picks between them (the gate's rows, repeated up to this many), and
# rounds, alternating: enough that a round takes a tenth of a second or more on one thread.
CHOICE_ROWS = 20_000
CHOICE_ROUNDS = 3


def faster_sparse_graph(bundle: Bundle, graphs: dict[str, Path], texts: list[str]) -> dict[str, float]:
    """Rows/s of each staged graph file (name -> path inside ``bundle``) encoding and scoring ``texts`` in
    windows as predict does (``Classifier.prepare`` then ``infer``), on one thread: medians of
    :data:`CHOICE_ROUNDS` alternating rounds.

    Which sparse graph of a raw-tf model is faster depends on the model: the counting graph spares the
    encoder the weights, but its product reads a table one column wider, and a large vocabulary's table
    then falls out of the core's cache (README: n-gram scoring). So export measures it, as ``--backend
    auto`` measures variants, rather than deciding by a rule."""
    from clsrun.runtime.classifier import Classifier
    from clsrun.runtime.readers import RecordChunk
    from clsrun.runtime.speeds import alternating_rates
    from clsrun.runtime.variant import staged_candidate

    rows = (texts * (CHOICE_ROWS // max(1, len(texts)) + 1))[:CHOICE_ROWS] if texts else []
    opened = {}
    for name, path in graphs.items():
        staged, choice = staged_candidate(bundle, path.relative_to(bundle.root).as_posix(), "fp32", "cpu")
        opened[name] = Classifier.open(staged, choice, threads=1, streams=1)
    size = next(iter(opened.values())).batching.window
    windows = [
        RecordChunk(i, None, rows[i : i + size], [""] * len(rows[i : i + size]))
        for i in range(0, len(rows), size)
    ]
    for clf in opened.values():
        clf.infer(clf.prepare(windows[0]))  # first-call costs (code point tables, onnxruntime): not timed

    def scorer(clf: Classifier) -> Callable[[], None]:
        def score() -> None:
            for window in windows:
                clf.infer(clf.prepare(window))

        return score

    return alternating_rates({name: scorer(clf) for name, clf in opened.items()}, len(rows), CHOICE_ROUNDS)
