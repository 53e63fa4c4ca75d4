"""Refuse a Hugging Face model folder that asks for Python code to be run, before ``transformers`` reads it.

``transformers`` imports Python files from a model folder when its ``config.json`` or
``tokenizer_config.json`` has an ``auto_map`` (custom config, model or tokenizer classes) and
``trust_remote_code`` is true, or is not given and the user types ``y`` at the question it asks on stdin
(a ``custom_pipelines`` entry does the same for ``pipeline``). sentence-transformers imports the classes
named in ``modules.json`` (and a Dense module's ``activation_function``); before its version 6 it did so
for any local folder without asking. clsrun never runs code from a bundle or a checkpoint: every
``from_pretrained`` passes ``trust_remote_code=False``, and :func:`hf_folder_problems` reads the folder's
JSON first, so such a folder is refused with one line saying why (exit 3 for a bundle, 2 for a training
checkpoint) instead of reaching ``transformers`` at all.

Only BERT models are accepted: ``model_type`` ``bert`` and ``architectures`` among transformers' own BERT
classes (plus the mean-pooling classifier that clsrun itself writes). The encoder, the ONNX export and its
fusions are built and tested for BERT; any other ``model_type`` needs a class that is not BERT's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from clsrun.runtime.errors import BundleError

MODEL_TYPES = ("bert",)
# transformers' own BERT classes (the same names in transformers 4.x and 5.x).
BERT_ARCHITECTURES = frozenset(
    {
        "BertModel",
        "BertForPreTraining",
        "BertLMHeadModel",
        "BertForMaskedLM",
        "BertForNextSentencePrediction",
        "BertForSequenceClassification",
        "BertForMultipleChoice",
        "BertForTokenClassification",
        "BertForQuestionAnswering",
    }
)
# The ``architectures`` entry of a clsrun bundle trained with mean pooling: deliberately no class of
# transformers, so ``pipeline`` cannot fall back to a class that would build a random head (see
# ``clsrun.trainer.bert_folder``).
MEAN_POOLING_ARCHITECTURE = "ClsrunMeanPoolingClassifier"
# Keys through which a config makes transformers import Python from the folder.
CODE_KEYS = ("auto_map", "custom_pipelines")
# sentence-transformers modules are imported by this prefix (its own classes; never the folder's code).
_ST_PREFIX = "sentence_transformers."

Reader = Callable[[str], Any]  # folder-relative name -> parsed JSON, or None when the folder lacks it
WHY = "clsrun loads BERT folders with transformers' own classes and never runs code from a model folder"


class _Bundle(Protocol):
    root: Path

    def has(self, rel: str) -> bool: ...

    def file(self, rel: str) -> Path: ...


def _code_keys(data: Any, where: str) -> Iterator[str]:
    """Every key in CODE_KEYS anywhere in ``data`` (sub-configs too), as ``where: key``."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in CODE_KEYS:
                yield f"{where} has {key!r}"
            yield from _code_keys(value, where)
    elif isinstance(data, list):
        for value in data:
            yield from _code_keys(value, where)


def _sentence_transformers_problems(read: Reader) -> list[str]:
    """Module types and Dense activations of ``modules.json`` that are not sentence-transformers'/torch's own."""
    modules = read("modules.json")
    if modules is None:
        return []
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        return ["modules.json is not a list of modules"]
    problems = []
    for module in modules:
        kind = str(module.get("type", ""))
        if not kind.startswith(_ST_PREFIX):
            problems.append(f"modules.json names the class {kind!r}, which is not sentence-transformers' own")
        folder = str(module.get("path", ""))
        if kind.endswith(".Dense") and folder:
            dense = read(f"{folder}/config.json")
            activation = dense.get("activation_function") if isinstance(dense, dict) else None
            if activation is not None and not str(activation).startswith("torch."):
                problems.append(
                    f"{folder}/config.json names the activation {activation!r}, not a torch class"
                )
    return problems


def hf_folder_problems(read: Reader) -> list[str]:
    """Everything that keeps a Hugging Face folder from being loaded without running its code.

    ``read(name)`` returns the parsed JSON of a file of the folder, or None when it is absent. An empty
    list means the folder is a BERT model that ``transformers`` loads with its own classes (or a clsrun
    bundle, whose mean-pooling ``architectures`` entry is accepted too).
    """
    config = read("config.json")
    if not isinstance(config, dict):
        return ["config.json is missing or not a JSON object"]
    problems = list(_code_keys(config, "config.json"))
    problems += _code_keys(read("tokenizer_config.json"), "tokenizer_config.json")
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        problems.append(f"config.json has model_type {model_type!r}, not {' or '.join(MODEL_TYPES)}")
    architectures = config.get("architectures") or []
    if not isinstance(architectures, list):
        problems.append("config.json architectures is not a list")
    else:
        custom = [a for a in architectures if a not in BERT_ARCHITECTURES and a != MEAN_POOLING_ARCHITECTURE]
        if custom:
            problems.append(
                f"config.json names architectures {custom}, which are not transformers' BERT classes"
            )
    problems += _sentence_transformers_problems(read)
    problems += _weights_problems(config, read)
    return problems


SAFE_WEIGHTS_INDEX = "model.safetensors.index.json"


def _weights_problems(config: dict[str, Any], read: Reader) -> list[str]:
    """Ways a folder makes transformers read weights other than float safetensors: ``config.json``'s
    ``transformers_weights`` (an explicit file: transformers also accepts a pickled ``adapter_model.bin``
    there), a safetensors index whose ``weight_map`` names pickle shards (loaded with ``torch.load``), a
    ``quantization_config`` (a quantization library loads the weights; clsrun trains and exports float)."""
    problems = []
    explicit = config.get("transformers_weights")
    if explicit is not None and not str(explicit).endswith((".safetensors", SAFE_WEIGHTS_INDEX)):
        problems.append(f"config.json names the weights file {explicit!r}, which is not safetensors")
    if config.get("quantization_config") is not None:
        problems.append("config.json has a quantization_config; clsrun trains float BERT weights")
    index = read(SAFE_WEIGHTS_INDEX)
    if index is not None:
        shards = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(shards, dict):
            problems.append(f"{SAFE_WEIGHTS_INDEX} has no weight_map")
        else:
            other = sorted({str(f) for f in shards.values() if not str(f).endswith(".safetensors")})
            if other:
                problems.append(
                    f"{SAFE_WEIGHTS_INDEX} maps weights to {', '.join(other[:3])}, not safetensors files "
                    "(a pickle is never loaded here)"
                )
    return problems


def _read_json(path: Path, name: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return f"<{name}: not readable JSON>"  # reads as "not a JSON object" where an object is needed


def folder_reader(folder: Path) -> Reader:
    """A :data:`Reader` of a plain folder (a training checkpoint)."""

    def read(name: str) -> Any:
        path = folder / name
        return _read_json(path, name) if path.is_file() else None

    return read


def check_bundle(bundle: _Bundle) -> None:
    """Raise :class:`BundleError` (exit 3) when a ``bert`` bundle's folder asks for code or is not BERT.

    Only files listed in ``clsrun.json`` are read (through ``bundle.file``); ``config.json`` must be one.
    """

    def read(name: str) -> Any:
        return _read_json(bundle.file(name), name) if bundle.has(name) else None

    problems = hf_folder_problems(read)
    if problems:
        raise BundleError(f"{bundle.root}: refused: {'; '.join(problems)} ({WHY})")
