"""A ``bert`` bundle as a Hugging Face folder: written so that stock loaders give clsrun's logits or refuse
to load, and read back without ``transformers`` ever opening the folder.

What :func:`save_hf_folder` writes next to the tokenizer files:

- ``cls`` pooling: ``config.json`` names ``BertForSequenceClassification`` and ``model.safetensors`` holds
  its weights, so ``transformers.pipeline("text-classification")`` and
  ``AutoModelForSequenceClassification`` compute clsrun's model.
- ``mean`` pooling: no class of ``transformers`` averages the token vectors before its linear head, and
  ``BertForSequenceClassification`` loaded on the encoder's weights builds a random pooler with only a
  warning (random labels, different on every load). So ``model.safetensors`` holds the encoder
  (``bert.*``) and a zero-size ``classifier.weight``: a weight whose shape does not fit is an error in
  ``from_pretrained`` (a missing one is only a warning), so that class refuses the folder while
  ``BertModel`` (``AutoModel``, sentence-transformers) loads the encoder and ignores it. ``architectures``
  names :data:`~clsrun.runtime.hf_folder.MEAN_POOLING_ARCHITECTURE`, no class of ``transformers``, so the
  pipeline does not fall back to ``BertModel`` either. The head is ``2_Dense/model.safetensors``.
- Both: sentence-transformers modules (``modules.json``: the transformer, the pooling, then one Dense layer
  per linear layer of the head; ``sentence_bert_config.json``), so ``SentenceTransformer(BUNDLE).encode``
  returns the logits (a ``head-tail`` bundle refuses it instead). Written in the format
  sentence-transformers 3.x to 5.x write (module types ``sentence_transformers.models.*``,
  ``pooling_mode_*`` keys), which 6.x reads too; a Dense module's weights are safetensors, which
  sentence-transformers reads from 3.0.1 on (before, only pickle, which clsrun never writes).

:func:`load_bert_model` reads ``config.json`` through ``bundle.file`` after
:func:`~clsrun.runtime.hf_folder.check_bundle` and builds the config with ``BertConfig.from_dict``; the
weights come from safetensors. Older mean-pooling bundles (``classifier.*`` in ``model.safetensors``)
still load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from clsrun.runtime.bundle import HF_CONFIG_FILE, WEIGHTS_FILE, Bundle
from clsrun.runtime.errors import BundleError, damaged
from clsrun.runtime.hf_folder import MEAN_POOLING_ARCHITECTURE, check_bundle
from clsrun.trainer.bert_model import BertClassifier, MeanClassifier, from_config
from clsrun.trainer.bundle_writer import save_weights

POOLING_DIR = "1_Pooling"
MEAN_HEAD_DIR = "2_Dense"  # a mean-pooling bundle's head; cls bundles have 2_Dense (pooler) and 3_Dense
_ST_TYPE = "sentence_transformers.models."
# The first module of a head-tail bundle's modules.json (see write_sentence_transformers_modules).
HEAD_TAIL_MODULE = _ST_TYPE + "ClsrunHeadTailTruncation"
_ACTIVATIONS = {"identity": "torch.nn.modules.linear.Identity", "tanh": "torch.nn.modules.activation.Tanh"}


# ----------------------------------------------------------------------------------------------- reading


def load_bert_model(bundle: Bundle) -> BertClassifier:
    """The eager classifier of a ``bert`` bundle, in eval mode on CPU (weights checked: strict load)."""
    from safetensors.torch import load_file
    from transformers import BertConfig

    check_bundle(bundle)  # Bundle.load did too; this also covers a bundle loaded without verify
    pooling = str(bundle.spec.model.get("pooling", "cls"))
    if pooling not in ("cls", "mean"):
        raise BundleError(f"{bundle.root}: unknown pooling {pooling!r} in clsrun.json")
    with damaged(bundle.root / HF_CONFIG_FILE, "a valid BERT config"):
        config = BertConfig.from_dict(json.loads(bundle.file(HF_CONFIG_FILE).read_text(encoding="utf-8")))
    if len(config.id2label or {}) != len(bundle.labels):
        raise BundleError(
            f"{bundle.root}: config.json has {len(config.id2label or {})} labels, clsrun.json {len(bundle.labels)}"
        )
    with damaged(bundle.root / HF_CONFIG_FILE, "a BERT config a model can be built from"):
        model = from_config(config, pooling)
    with damaged(bundle.root / WEIGHTS_FILE, "weights that fit config.json"):
        state = load_file(bundle.file(WEIGHTS_FILE))
        if pooling == "mean":
            state = _with_mean_head(bundle, state)
        model.load_hf_state_dict(state)
    return model.eval()


def _with_mean_head(bundle: Bundle, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with the head of ``2_Dense/`` in place of the zero-size ``classifier.weight``."""
    from safetensors.torch import load_file

    marker = state.get("classifier.weight")
    if marker is None or marker.numel() > 0:
        return state  # a bundle from before the head moved: classifier.* is the head itself
    dense = load_file(bundle.file(f"{MEAN_HEAD_DIR}/{WEIGHTS_FILE}"))
    return {**state, "classifier.weight": dense["linear.weight"], "classifier.bias": dense["linear.bias"]}


# ----------------------------------------------------------------------------------------------- writing


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _dense_layers(model: BertClassifier) -> list[tuple[torch.nn.Linear, str]]:
    """The linear layers after the pooling, with their activations: what a Dense module each computes."""
    if isinstance(model, MeanClassifier):
        return [(model.head, "identity")]
    pooler = model.hf.get_submodule(f"{model.hf.base_model_prefix}.pooler.dense")
    assert isinstance(pooler, torch.nn.Linear), "a BERT pooler is a linear layer, then tanh"
    return [(pooler, "tanh"), (model.head, "identity")]  # BertPooler: tanh(dense([CLS]))


def write_sentence_transformers_modules(
    model: BertClassifier, out: Path, max_length: int, truncation: str
) -> None:
    """``modules.json``, ``sentence_bert_config.json``, ``1_Pooling/`` and the Dense folders of ``model``.

    sentence-transformers always keeps the first tokens of a long text. A ``head-tail`` bundle keeps the
    first and the last ones, so there it would give other labels on long texts without a word: its
    ``modules.json`` starts with :data:`HEAD_TAIL_MODULE`, a class sentence-transformers does not have, and
    loading fails with an ImportError that names it (nothing outside sentence-transformers is imported).
    """
    hidden = int(model.config.hidden_size)
    paths = [("", HEAD_TAIL_MODULE)] if truncation == "head-tail" else []
    paths += [("", _ST_TYPE + "Transformer"), (POOLING_DIR, _ST_TYPE + "Pooling")]
    _write_json(
        out / POOLING_DIR / HF_CONFIG_FILE,
        {
            "word_embedding_dimension": hidden,
            "pooling_mode_cls_token": model.pooling == "cls",
            "pooling_mode_mean_tokens": model.pooling == "mean",
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    for number, (linear, activation) in enumerate(_dense_layers(model), start=2):
        folder = f"{number}_Dense"
        paths.append((folder, _ST_TYPE + "Dense"))
        dense = {"in_features": linear.in_features, "out_features": linear.out_features, "bias": True}
        _write_json(out / folder / HF_CONFIG_FILE, {**dense, "activation_function": _ACTIVATIONS[activation]})
        save_weights({"linear.weight": linear.weight, "linear.bias": linear.bias}, out / folder)
    modules = [{"idx": i, "name": str(i), "path": p, "type": t} for i, (p, t) in enumerate(paths)]
    _write_json(out / "modules.json", modules)
    # BertModel's own pooler is never used here (the cls route has it as a Dense module): not built.
    sbert = {"max_seq_length": max_length, "do_lower_case": False, "model_args": {"add_pooling_layer": False}}
    _write_json(out / "sentence_bert_config.json", sbert)


def save_hf_folder(model: BertClassifier, out: Path, max_length: int, truncation: str) -> None:
    """Write ``config.json``, ``model.safetensors`` and the sentence-transformers modules of ``model``
    (``max_length`` and ``truncation`` as the bundle's ``clsrun.json`` says)."""
    config = model.config
    state = dict(model.hf_state_dict())
    if model.pooling == "cls":
        config.architectures = [type(model.hf).__name__]
    else:
        config.architectures = [MEAN_POOLING_ARCHITECTURE]
        del state["classifier.weight"], state["classifier.bias"]  # the head lives in 2_Dense/
        state["classifier.weight"] = torch.zeros(0)  # refuses BertForSequenceClassification (see above)
    config.save_pretrained(out)
    save_weights(state, out)
    write_sentence_transformers_modules(model, out, max_length, truncation)
