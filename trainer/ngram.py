"""The n-gram model: a linear classifier over the weighted n-gram features of ``runtime/encode_ngram.py``.

``logits = sum over the text's features of weight * table[id] + bias``: one table row of ``n_labels``
numbers per kept n-gram bucket, so the model is a TF-IDF logistic regression whose features are
hashed. A hidden layer or a wider embedding bought nothing measurable (reviews_zh validation: 0.8666
with a 32-wide embedding, dropout and a linear layer, 0.8659 linear, at 16 times the parameters).

The forward pass over padded ids and weights is what ``torch.onnx`` exports: ``Gather`` (table rows of the
ids), a batched ``MatMul`` with the weights (the weighted sum over features; the fastest of three dense
layouts measured under onnxruntime), and ``Add`` (bias). Padding has id 0 (a zero row) and weight 0, so it
adds nothing. The fp32 variant that scoring runs computes the same sum from the unpadded features as one
sparse-times-dense product (``export/ngram_graph.py``); the other variants derive from the dense graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class NgramConfig:
    """Shape of the model (stored under ``model`` in ``clsrun.json`` next to the feature scheme)."""

    n_features: int  # ids, padding (0) included: rows of the table
    n_labels: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NgramConfig:
        return cls(n_features=int(data["n_features"]), n_labels=int(data["n_labels"]))


class NgramLinear(nn.Module):
    """``forward(input_ids (B, T) int64, weights (B, T) float) -> logits (B, n_labels)``."""

    def __init__(self, config: NgramConfig) -> None:
        super().__init__()
        self.settings = config  # not `config`: Hugging Face callbacks expect a PretrainedConfig there
        self.table = nn.Embedding(config.n_features, config.n_labels, padding_idx=0)
        nn.init.zeros_(self.table.weight)  # a linear model: start from "no evidence", as LR does
        self.bias = nn.Parameter(torch.zeros(config.n_labels))

    def forward(self, input_ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        rows = self.table(input_ids)  # (B, T, C)
        if weights.dtype != rows.dtype:  # a bf16/fp16 torch backend; fp32 (and the ONNX graph) needs no Cast
            weights = weights.to(rows.dtype)
        summed = torch.matmul(weights.unsqueeze(1), rows)  # (B, 1, C)
        return summed.squeeze(1) + self.bias  # (B, C)

    @classmethod
    def from_linear(cls, config: NgramConfig, table: np.ndarray, bias: np.ndarray) -> NgramLinear:
        """The model holding a fitted ``(n_features, n_labels)`` table and ``(n_labels,)`` bias."""
        model = cls(config)
        with torch.no_grad():
            model.table.weight.copy_(torch.from_numpy(np.ascontiguousarray(table, dtype=np.float32)))
            model.table.weight[0].zero_()
            model.bias.copy_(torch.from_numpy(np.asarray(bias, dtype=np.float32)))
        return model.eval()
