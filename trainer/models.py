"""``load_model(bundle)``: the eager PyTorch model of any bundle, in eval mode on CPU.

Export, the torch scoring backend and ``clsrun bench`` use it; ``forward(**inputs) -> logits (B, C)`` with
the inputs of ARCHITECTURE.md. BERT loading lives with the BERT trainer and is imported only when needed.
"""

from __future__ import annotations

from typing import TypeVar

import torch

from clsrun.runtime.bundle import VOCAB_FILE, WEIGHTS_FILE, Bundle
from clsrun.runtime.encode_char import CharVocab
from clsrun.runtime.encode_ngram import NgramEncoder
from clsrun.runtime.errors import BundleError, damaged
from clsrun.trainer.charcnn import CharCNN, CharCNNConfig
from clsrun.trainer.ngram import NgramConfig, NgramLinear

M = TypeVar("M", bound=torch.nn.Module)


def load_charcnn(bundle: Bundle) -> CharCNN:
    """Rebuild a char-CNN from ``spec.model`` and load its safetensors weights (strict: every tensor fits)."""
    config = CharCNNConfig.from_json(bundle.spec.model)
    vocab = CharVocab.load(bundle.file(VOCAB_FILE))
    if vocab.size != config.vocab_size:
        raise BundleError(
            f"{bundle.file(VOCAB_FILE)}: {vocab.size} ids, but clsrun.json says vocab_size {config.vocab_size}"
        )
    if config.n_labels != len(bundle.labels):
        raise BundleError(
            f"{bundle.root}: model has {config.n_labels} outputs for {len(bundle.labels)} labels"
        )
    return _with_weights(CharCNN(config), bundle, "char-CNN")


def load_ngram(bundle: Bundle) -> NgramLinear:
    """Rebuild the n-gram model from ``spec.model`` and its safetensors table, checked against the
    bundle's feature vocabulary (``ngram_features.safetensors``) and labels."""
    try:
        config = NgramConfig.from_json(bundle.spec.model)
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{bundle.root}: clsrun.json model is not an n-gram model ({e!r})") from e
    features = NgramEncoder.from_bundle(bundle).vocabulary.size
    if features != config.n_features or config.n_labels != len(bundle.labels):
        raise BundleError(
            f"{bundle.root}: clsrun.json says {config.n_features} features and {config.n_labels} outputs; "
            f"the bundle has {features} features and {len(bundle.labels)} labels"
        )
    return _with_weights(NgramLinear(config), bundle, "n-gram model")


def _with_weights(model: M, bundle: Bundle, what: str) -> M:
    """``model`` with the bundle's safetensors weights loaded strictly (every tensor fits), in eval mode.

    The file is opened through ``bundle.file``: listed and hashed in ``clsrun.json``, like every bundle file.
    """
    from safetensors.torch import load_file

    path = bundle.file(WEIGHTS_FILE)
    with damaged(path, f"weights that fit the {what} described in clsrun.json"):
        model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()


def load_model(bundle: Bundle) -> torch.nn.Module:
    """The eager model of ``bundle`` (``charcnn``, ``ngram`` or ``bert``), eval mode, CPU."""
    kind = bundle.spec.kind
    if kind == "charcnn":
        return load_charcnn(bundle)
    if kind == "ngram":
        return load_ngram(bundle)
    if kind == "bert":
        from clsrun.trainer.bert_folder import load_bert_model

        model: torch.nn.Module = load_bert_model(bundle)
        return model
    raise BundleError(f"{bundle.root}: unknown model kind {kind!r}")
