"""The character-level CNN: learned character embedding, parallel 1-D convolutions, global max pool, linear.

Each convolution reads the embedding directly (Kim-style character n-gram detectors: kernels 1, 3 and 5
see characters, trigrams and 5-grams), its ReLU features are max-pooled over the text, and the pooled
vectors are concatenated for the linear head. Against three *stacked* 3-wide convolutions of the same
width this reached a higher validation accuracy with fewer multiply-adds per character (README: Train).

Padding never changes a row's result: convolutions use zero "same" padding and their outputs are multiplied
by the padding mask, so a padded position looks exactly like the zero padding a convolution sees at the end
of an unpadded text; after ReLU every real position is >= 0, so the zeros at padded positions never win the
max pool. A text scored alone and the same text padded inside a batch therefore get the same logits (up to
float rounding), and any length ``T >= 1`` works (ONNX dynamic length).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from clsrun.runtime.encode_char import PAD_ID
from clsrun.runtime.errors import BundleError
from clsrun.trainer.options import CHARCNN_POOLINGS as POOLINGS


@dataclass
class CharCNNConfig:
    """Shape of the network; stored as ``spec.model`` of a charcnn bundle so it can be rebuilt."""

    vocab_size: int  # rows of the embedding table (characters + pad + unk)
    n_labels: int  # output logits
    embed_dim: int = 48  # width of the learned character embedding
    channels: list[int] = field(default_factory=lambda: [64, 64, 64])  # output channels of each parallel conv
    kernel_sizes: list[int] = field(default_factory=lambda: [1, 3, 5])  # width of each conv (odd: "same" pad)
    dropout: float = 0.5  # dropout on the pooled features during training
    min_length: int = 1  # the shortest input the network accepts (any length works: "same" padding)
    pooling: str = "max"  # "max", or "max+mean": also the masked mean over the text (long documents)

    def __post_init__(self) -> None:
        if len(self.channels) != len(self.kernel_sizes) or not self.channels:
            raise ValueError(f"channels {self.channels} and kernel_sizes {self.kernel_sizes} must pair up")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if any(k % 2 == 0 or k < 1 for k in self.kernel_sizes):
            raise ValueError(f"kernel sizes must be odd (symmetric 'same' padding), got {self.kernel_sizes}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CharCNNConfig:
        for name in ("channels", "kernel_sizes"):  # "64" would read as the list [6, 4]
            if name in data and not isinstance(data[name], list):
                raise BundleError(f"charcnn model settings: {name} is {data[name]!r}, not a list of integers")
        try:
            return cls(
                vocab_size=int(data["vocab_size"]),
                n_labels=int(data["n_labels"]),
                embed_dim=int(data["embed_dim"]),
                channels=[int(c) for c in data["channels"]],
                kernel_sizes=[int(k) for k in data["kernel_sizes"]],
                dropout=float(data.get("dropout", 0.0)),
                min_length=int(data.get("min_length", 1)),
                pooling=str(data.get("pooling", "max")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"charcnn model settings are incomplete or invalid: {e}") from e


class CharCNN(nn.Module):
    """``forward(input_ids (B, T) int64, 0 = padding) -> logits (B, n_labels)``."""

    def __init__(self, config: CharCNNConfig) -> None:
        super().__init__()
        self.settings = config  # not `config`: Hugging Face callbacks expect a PretrainedConfig there
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=PAD_ID)
        with torch.no_grad():
            # N(0, 0.1) instead of N(0, 1): in the comparison above, training started faster this way.
            self.embed.weight.mul_(0.1)
        self.convs = nn.ModuleList(
            nn.Conv1d(config.embed_dim, c_out, k, padding=k // 2)
            for c_out, k in zip(config.channels, config.kernel_sizes, strict=True)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.mean = config.pooling == "max+mean"
        self.head = nn.Linear(sum(config.channels) * (2 if self.mean else 1), config.n_labels)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = (input_ids != PAD_ID).unsqueeze(1).to(self.head.weight.dtype)  # (B, 1, T)
        x = self.embed(input_ids).transpose(1, 2)  # (B, E, T)
        pooled = []
        for conv in self.convs:
            h = torch.relu(conv(x)) * mask  # (B, C_i, T), zero at padding
            pooled.append(h.amax(dim=2))  # (B, C_i)
            if self.mean:
                pooled.append(h.sum(dim=2) / mask.sum(dim=2).clamp(min=1.0))  # (B, C_i) mean over real chars
        return self.head(self.dropout(torch.cat(pooled, dim=1)))  # (B, n_labels)
