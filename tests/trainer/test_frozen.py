"""``--freeze-encoder``: encode once, train the head on cached features; the bundle is an ordinary BERT bundle.

Through the CLI: train -> bundle -> eval -> predict on the tiny random BERT (conftest), mean pooling, and
the README's recipe for loading a mean-pooling bundle with plain ``transformers``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from clsrun.runtime.bundle import Bundle
from clsrun.runtime.cli import app
from clsrun.runtime.encode_bert import BertEncoder
from clsrun.trainer.bert_folder import load_bert_model
from clsrun.trainer.frozen import HeadTraining, extract_features, train_head


def test_train_head_learns_on_badly_scaled_features_and_folds_the_scaling_back() -> None:
    """Standardisation happens inside training only: the saved head must work on the raw features."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 6, generator=gen) * torch.tensor([1e3, 1e-3, 1.0, 50.0, 1.0, 1.0])  # (N, H)
    y = ((x[:, 0] / 1e3 + x[:, 1] / 1e-3) > 0).long()  # (N,) a rule on two very differently scaled columns
    head = torch.nn.Linear(6, 2)
    settings = HeadTraining(lr=1e-2, epochs=60, batch_size=32, weight_decay=0.0, patience=10, seed=0)
    result = train_head(head, x[:300], y[:300], x[300:], y[300:], settings)
    with torch.no_grad():
        accuracy = float((head(x[300:]).argmax(-1) == y[300:]).float().mean())
    assert accuracy >= 0.95
    assert 1 <= result.best_epoch <= len(result.history)
    np.testing.assert_allclose(result.val_logits, head(x[300:]).detach().numpy(), atol=1e-5)


def test_features_batched_by_length_equal_features_of_each_row_alone(tiny_bert_bundle: Path) -> None:
    encoder = BertEncoder.from_folder(tiny_bert_bundle, 32, "head")
    texts = ["good", "the movie was very very good", "这个电影很差", "a film", "awful awful 讨厌 the film"]
    tokens = encoder.tokenize(texts)
    model = load_bert_model(Bundle.load(tiny_bert_bundle))
    batched = extract_features(model.features, tokens, encoder.pad, batch_size=2)  # (N, H)
    for i in range(len(texts)):
        alone = encoder.pad(tokens, np.array([i]))
        with torch.no_grad():
            row = model.features(
                torch.from_numpy(alone["input_ids"]), torch.from_numpy(alone["attention_mask"])
            )
        torch.testing.assert_close(batched[i], row[0], atol=1e-5, rtol=1e-4)


def _mean_pool_with_plain_transformers(bundle: Path, texts: list[str]) -> np.ndarray:
    """The README recipe: AutoModel + mask-weighted mean + the head of 2_Dense/model.safetensors."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bundle)
    encoder = AutoModel.from_pretrained(bundle, add_pooling_layer=False).eval()
    head = load_file(bundle / "2_Dense" / "model.safetensors")
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state  # (B, T, H)
        mask = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1)  # (B, H)
        return (pooled @ head["linear.weight"].T + head["linear.bias"]).numpy()  # (B, C)


def test_cli_frozen_mean_pooling_train_eval_predict(
    tiny_bert_checkpoint: Path, tiny_bert_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    runner = CliRunner()
    args = ["train", str(tiny_bert_data), "--model", str(tiny_bert_checkpoint), "--out", str(out)]
    args += ["--freeze-encoder", "--pooling", "mean", "--max-length", "32", "--quiet", "--val-split", "0.25"]
    trained = runner.invoke(app, args)
    assert trained.exit_code == 0, trained.output
    bundle = Bundle.load(out)
    assert bundle.spec.model == {
        "pooling": "mean",
        "truncation": "head",
        "base_model": str(tiny_bert_checkpoint),
    }
    assert bundle.spec.training["hyperparameters"]["freeze_encoder"] is True
    assert bundle.spec.training["metrics"]["accuracy"] >= 0.9

    # Only the head was trained: every encoder weight is the checkpoint's.
    weights = load_file(out / "model.safetensors")
    base = load_file(tiny_bert_checkpoint / "model.safetensors")
    encoder_keys = [k for k in weights if not k.startswith("classifier.")]
    assert weights["classifier.weight"].numel() == 0, "the zero-size marker that refuses a random pooler"
    assert encoder_keys and all(torch.equal(weights[k], base[k.removeprefix("bert.")]) for k in encoder_keys)
    assert not any("pooler" in k for k in weights), "mean pooling drops the unused pooler"

    texts = ["the film was very good", "电影非常差", "awful 讨厌"]
    ours = load_bert_model(bundle)(**_inputs(out, texts)).detach().numpy()
    np.testing.assert_allclose(_mean_pool_with_plain_transformers(out, texts), ours, atol=1e-5)

    evaluated = runner.invoke(app, ["eval", str(out), str(tiny_bert_data), "--backend", "torch"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "accuracy" in evaluated.output

    scores = tmp_path / "scores.csv"
    predicted = runner.invoke(
        app,
        [
            "predict",
            str(tiny_bert_data),
            "--model",
            str(out),
            "--out",
            str(scores),
            "--backend",
            "torch",
            "--quiet",
        ],
    )
    assert predicted.exit_code == 0, predicted.output
    with open(scores, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(tiny_bert_data, encoding="utf-8") as f:
        truth = [r["label"] for r in csv.DictReader(f)]
    assert len(rows) == len(truth) and all(r["status"] == "ok" for r in rows)
    assert np.mean([r["label"] == t for r, t in zip(rows, truth, strict=True)]) >= 0.9


def _inputs(bundle: Path, texts: list[str]) -> dict[str, torch.Tensor]:
    encoder = BertEncoder.from_folder(bundle, 32, "head")
    padded = encoder.pad(encoder.tokenize(texts), np.arange(len(texts)))
    return {k: torch.from_numpy(v) for k, v in padded.items()}
