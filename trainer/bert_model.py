"""The BERT-family classifier: an encoder, a pooling of its token vectors, and a linear head, in one graph.

Two poolings (recorded in the bundle as ``spec.model["pooling"]``):

- ``cls``: exactly the checkpoint's own ``AutoModelForSequenceClassification``. For BERT that is
  ``BertForSequenceClassification``: [CLS] vector -> BERT pooler (dense + tanh) -> dropout -> linear. The
  module *is* the Hugging Face model, so ``transformers.pipeline("text-classification", model=BUNDLE)``
  computes the same logits as clsrun. A checkpoint whose pooler weights are missing gets the pooler
  initialised to the identity (pooled = tanh([CLS])) instead of random noise, so a frozen encoder still
  passes the [CLS] vector through almost unchanged and fine-tuning starts from it.
  (all-MiniLM-L6-v2 ships pooler weights, inherited from MiniLM; sentence-transformers never trained them.)
- ``mean``: the attention-mask-weighted mean of the last hidden states -> dropout -> linear, what
  sentence-transformer checkpoints such as all-MiniLM-L6-v2 were trained for. The encoder's own pooler is
  dropped (unused weights would break DistributedDataParallel and bloat the bundle).

Both modules keep their weights under Hugging Face names (``bert.*``, ``classifier.*``), so the bundle's
``model.safetensors`` reads like any Hugging Face checkpoint, and both expose ``features`` (the vector the
linear head sees) and ``head`` for the frozen-encoder trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from clsrun.runtime.errors import ModelNotFoundError, damaged

POOLINGS = ("cls", "mean")


def _no_grad_linear_identity(linear: nn.Linear) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.eye(linear.out_features, linear.in_features))
        linear.bias.zero_()


class ClsClassifier(nn.Module):
    """[CLS] pooling: the checkpoint's own sequence-classification model, returning logits only."""

    pooling = "cls"

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        self.hf = hf_model

    @property
    def _base(self) -> nn.Module | None:
        """The encoder with its pooler, when the head is BERT-style (pooler, then a linear ``classifier``).

        A property, not an attribute: registering the encoder twice would duplicate its weights in
        ``state_dict``. RoBERTa-style heads pool inside the classifier and have no such split.
        """
        base = getattr(self.hf, str(self.hf.base_model_prefix), None)
        if base is None or getattr(base, "pooler", None) is None:
            return None
        return base if isinstance(getattr(self.hf, "classifier", None), nn.Linear) else None

    @property
    def config(self) -> Any:
        return self.hf.config

    @property
    def head(self) -> nn.Linear:
        head = self.hf.classifier
        assert isinstance(head, nn.Linear), "this checkpoint's head is not a single linear layer"
        return head

    @property
    def has_features(self) -> bool:
        """True when ``features`` exists (BERT-style: a pooler, then a linear ``classifier``)."""
        return self._base is not None

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, H) pooler output: what the linear head sees (before dropout)."""
        base = self._base
        assert base is not None, "features() needs a BERT-style pooler + linear classifier"
        out = base(input_ids=input_ids, attention_mask=attention_mask)
        return out.pooler_output  # (B, H)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = self.hf(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.logits  # (B, C)

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights under the Hugging Face model's own names (``bert.*``, ``classifier.*``)."""
        return dict(self.hf.state_dict())

    def load_hf_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.hf.load_state_dict(state, strict=True)


class MeanClassifier(nn.Module):
    """Mean pooling over real tokens, then dropout and a linear head."""

    pooling = "mean"
    has_features = True

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float) -> None:
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            setattr(encoder, "pooler", None)  # noqa: B010 (typed as a Module; unused by mean pooling)
        self.prefix = str(encoder.base_model_prefix)
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        hf_config: Any = encoder.config
        self.classifier = nn.Linear(int(hf_config.hidden_size), num_labels)

    @property
    def config(self) -> Any:
        return self.encoder.config

    @property
    def head(self) -> nn.Linear:
        return self.classifier

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, H) mean of the last hidden states over the positions where ``attention_mask`` is 1."""
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state  # (B, T, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        summed = (hidden * mask).sum(dim=1)  # (B, H)
        count = mask.sum(dim=1).clamp(min=1.0)  # (B, 1)
        return summed / count

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        del token_type_ids  # one segment only: BERT's default (all zeros) is what it would be
        return self.classifier(self.dropout(self.features(input_ids, attention_mask)))  # (B, C)

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """``<prefix>.*`` encoder weights (as in ``BertForSequenceClassification``) and ``classifier.*``."""
        state = {f"{self.prefix}.{k}": v for k, v in self.encoder.state_dict().items()}
        state.update({f"classifier.{k}": v for k, v in self.classifier.state_dict().items()})
        return state

    def load_hf_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        enc = {k[len(self.prefix) + 1 :]: v for k, v in state.items() if k.startswith(self.prefix + ".")}
        head = {k[len("classifier.") :]: v for k, v in state.items() if k.startswith("classifier.")}
        unknown = set(state) - {f"{self.prefix}.{k}" for k in enc} - {f"classifier.{k}" for k in head}
        if unknown:
            raise KeyError(f"unexpected weights for a mean-pooling classifier: {sorted(unknown)[:5]}")
        self.encoder.load_state_dict(enc, strict=True)
        self.classifier.load_state_dict(head, strict=True)


BertClassifier = ClsClassifier | MeanClassifier


def _label_maps(labels: list[str]) -> dict[str, Any]:
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }


def from_checkpoint(checkpoint: Path, labels: list[str], pooling: str) -> BertClassifier:
    """A classifier for ``labels`` on a local checkpoint's pretrained encoder; the head is new.

    Always float32 weights, whatever the checkpoint was saved in: transformers 5 loads a checkpoint in its
    own dtype by default, and a half-precision checkpoint trained as is would lose its updates to rounding
    (mixed precision on CUDA keeps float32 master weights and computes in bf16/fp16).
    """
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    # The folder was checked by bert_checkpoint.check_checkpoint; trust_remote_code=False keeps transformers
    # from ever importing Python from it (and from asking on stdin whether to); use_safetensors=True (for
    # the weights) from ever falling back to a pickled pytorch_model.bin.
    safe = {"local_files_only": True, "trust_remote_code": False}
    weights = {**safe, "use_safetensors": True}
    config = AutoConfig.from_pretrained(checkpoint, **safe, **_label_maps(labels))
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # "some weights were newly initialised": expected, the head is new
    hf_logging.disable_progress_bar()  # a "loading weights" bar per call is noise for a small model
    # A folder that passed check_checkpoint can still be damaged (truncated weights, a config its weights do
    # not fit): one line naming it (exit 2), not the loader's own exception.
    with damaged(
        checkpoint, "a checkpoint whose weights load into its config.json", error=ModelNotFoundError
    ):
        try:
            if pooling == "cls":
                # A classifier of other labels (another bundle as the checkpoint) is replaced: the head is new.
                hf, info = AutoModelForSequenceClassification.from_pretrained(
                    checkpoint,
                    config=config,
                    output_loading_info=True,
                    ignore_mismatched_sizes=True,
                    dtype=torch.float32,
                    **weights,
                )
                misfits = sorted(
                    str(k[0]) for k in info["mismatched_keys"] if not str(k[0]).startswith("classifier.")
                )
                if misfits:
                    raise ModelNotFoundError(
                        f"{checkpoint}: weights do not fit its config.json: {misfits[:5]}"
                    )
                if any(".pooler." in k or k.startswith("pooler.") for k in info["missing_keys"]):
                    _no_grad_linear_identity(getattr(hf, hf.base_model_prefix).pooler.dense)
                return ClsClassifier(hf)
            encoder = AutoModel.from_pretrained(checkpoint, config=config, dtype=torch.float32, **weights)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
    return MeanClassifier(encoder, len(labels), _head_dropout(config))


def from_config(config: Any, pooling: str) -> BertClassifier:
    """An untrained float32 classifier of the given architecture (weights are loaded next).

    float32 whatever ``config.dtype`` says: transformers builds the model in that dtype otherwise, and the
    eager model is the fp32 reference that scoring casts to the precision it runs.
    """
    from transformers import AutoModel, AutoModelForSequenceClassification

    if pooling == "cls":
        hf = AutoModelForSequenceClassification.from_config(
            config, dtype=torch.float32, trust_remote_code=False
        )
        return ClsClassifier(hf)
    encoder = AutoModel.from_config(config, dtype=torch.float32, trust_remote_code=False)
    return MeanClassifier(encoder, int(config.num_labels), _head_dropout(config))


def _head_dropout(config: Any) -> float:
    """Dropout before the head, as ``BertForSequenceClassification`` chooses it."""
    value: Any = getattr(config, "classifier_dropout", None)
    return float(value if value is not None else getattr(config, "hidden_dropout_prob", 0.1))
