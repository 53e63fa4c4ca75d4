"""Issue 18: every BERT bundle, opened with the stock loaders a user reaches for, gives clsrun's labels or raises.

Loaders: ``transformers.pipeline("text-classification")``, ``AutoModelForSequenceClassification`` and
``SentenceTransformer(BUNDLE).encode`` (the logits). With ``cls`` pooling all three reproduce clsrun;
with ``mean`` pooling the first two refuse the folder (no class of transformers computes that head) and
sentence-transformers reproduces it. Tiny random BERTs of ``conftest.py``; nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from clsrun.runtime.bundle import Bundle, write_spec
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.variant import Variant
from clsrun.trainer.bert import fit_bert
from clsrun.trainer.bert_folder import load_bert_model, save_hf_folder
from clsrun.trainer.config import TrainConfig
from clsrun.trainer.data import load_split
from clsrun.trainer.options import BertOptions

# Short and over-long texts (max_length is 32 tokens): every loader cuts the head, as clsrun's head truncation.
TEXTS = [
    "the film was very good",
    "电影非常差",
    "awful 讨厌 the movie",
    "a film",
    "the movie was great " * 12,
    "这个电影很差 bad " * 10,
]


def _clsrun(bundle: Path) -> tuple[list[str], np.ndarray]:
    """clsrun's labels and probabilities (eager torch backend, fp32)."""
    predictions = Classifier.load(bundle, Variant(backend="torch", precision="fp32", threads=1)).predict(
        TEXTS
    )
    return predictions.labels, predictions.probs


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _by_pipeline(bundle: Path) -> tuple[list[str], np.ndarray]:
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(bundle), device="cpu", top_k=None)
    labels = Bundle.load(bundle).labels
    results = classify(TEXTS, truncation=True, batch_size=4)
    probs = np.array([[{r["label"]: r["score"] for r in row}[name] for name in labels] for row in results])
    return [labels[i] for i in probs.argmax(1)], probs


def _by_auto_class(bundle: Path) -> tuple[list[str], np.ndarray]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(bundle).eval()
    batch = AutoTokenizer.from_pretrained(bundle)(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        probs = _softmax(model(**batch).logits.numpy())
    return [model.config.id2label[i] for i in probs.argmax(1)], probs


def _by_sentence_transformers(bundle: Path) -> tuple[list[str], np.ndarray]:
    from sentence_transformers import SentenceTransformer

    logits = SentenceTransformer(str(bundle), device="cpu").encode(TEXTS, batch_size=4)  # (N, C)
    labels = Bundle.load(bundle).labels
    probs = _softmax(np.asarray(logits))
    return [labels[i] for i in probs.argmax(1)], probs


LOADERS = {
    "pipeline": _by_pipeline,
    "auto_class": _by_auto_class,
    "sentence_transformers": _by_sentence_transformers,
}


@pytest.mark.parametrize("loader", LOADERS)
def test_every_stock_loader_gives_clsruns_labels_on_a_cls_bundle(tiny_bert_bundle: Path, loader: str) -> None:
    ours, our_probs = _clsrun(tiny_bert_bundle)
    theirs, their_probs = LOADERS[loader](tiny_bert_bundle)
    assert theirs == ours
    np.testing.assert_allclose(their_probs, our_probs, atol=1e-5)


def test_sentence_transformers_gives_clsruns_labels_on_a_mean_bundle(tiny_mean_bundle: Path) -> None:
    ours, our_probs = _clsrun(tiny_mean_bundle)
    theirs, their_probs = _by_sentence_transformers(tiny_mean_bundle)
    assert theirs == ours
    np.testing.assert_allclose(their_probs, our_probs, atol=1e-5)
    assert len(set(ours)) == 2, "the texts should get both labels, or agreement proves little"


@pytest.mark.parametrize("loader", ["pipeline", "auto_class"])
def test_transformers_classification_loaders_refuse_a_mean_bundle(
    tiny_mean_bundle: Path, loader: str
) -> None:
    """No class of transformers averages the tokens before its head: it must not build a random one."""
    with pytest.raises((ValueError, RuntimeError), match=r"Could not load model|ignore_mismatched_sizes"):
        LOADERS[loader](tiny_mean_bundle)


def test_a_mean_bundle_of_the_old_layout_still_loads(tiny_mean_bundle: Path, tmp_path: Path) -> None:
    """Before the head moved to 2_Dense/, it was classifier.* in model.safetensors and there were no modules."""
    old = Path(shutil.copytree(tiny_mean_bundle, tmp_path / "old"))
    weights = load_file(old / "model.safetensors")
    head = load_file(old / "2_Dense" / "model.safetensors")
    weights.update({"classifier.weight": head["linear.weight"], "classifier.bias": head["linear.bias"]})
    save_file(weights, str(old / "model.safetensors"))
    for name in ("1_Pooling", "2_Dense"):
        shutil.rmtree(old / name)
    for name in ("modules.json", "sentence_bert_config.json"):
        (old / name).unlink()
    config = json.loads((old / "config.json").read_text(encoding="utf-8"))
    (old / "config.json").write_text(json.dumps({**config, "architectures": ["BertModel"]}), encoding="utf-8")
    write_spec(old, Bundle.load(old, verify=False).spec)
    inputs = {
        "input_ids": torch.tensor([[2, 40, 41, 3]]),
        "attention_mask": torch.ones(1, 4, dtype=torch.long),
    }
    with torch.no_grad():
        expected = load_bert_model(Bundle.load(tiny_mean_bundle))(**inputs)
        torch.testing.assert_close(load_bert_model(Bundle.load(old))(**inputs), expected)


@pytest.mark.usefixtures("torch_one_thread")
def test_a_mean_bundle_is_a_checkpoint_for_a_cls_run(tiny_mean_bundle: Path, tiny_bert_data: Path) -> None:
    """Its zero-size classifier.weight is replaced by the new head, not an error."""
    options = BertOptions(model=str(tiny_mean_bundle), pooling="cls")
    fields = {"epochs": 1, "batch_size": 16, "max_length": 32, "warmup": 0, "quiet": True, "logs": False}
    config = TrainConfig(**{**options.train_defaults(), **fields})
    split = load_split(tiny_bert_data, val_split=0.25, seed=config.seed)
    run = fit_bert(split, config, options)
    assert run.model.pooling == "cls" and run.fit.val_logits.shape == (16, 2)


def test_sentence_transformers_refuses_a_head_tail_bundle(tiny_mean_bundle: Path, tmp_path: Path) -> None:
    """It keeps only a long text's first tokens; clsrun keeps the first and the last: refused, not different."""
    from sentence_transformers import SentenceTransformer

    root = Path(shutil.copytree(tiny_mean_bundle, tmp_path / "head_tail"))
    bundle = Bundle.load(root)
    save_hf_folder(load_bert_model(bundle), root, bundle.spec.max_length, "head-tail")
    bundle.spec.model["truncation"] = "head-tail"
    write_spec(root, bundle.spec)
    with pytest.raises(ImportError, match="ClsrunHeadTailTruncation"):
        SentenceTransformer(str(root), device="cpu")
    Classifier.load(root, Variant(backend="torch", threads=1)).predict(TEXTS)  # clsrun itself loads it
