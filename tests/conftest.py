"""Shared fixtures, one section per stage; keep sections independent."""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

# --------------------------------------------------------------------------------------------------
# Runtime: a char-CNN-shaped bundle whose ONNX graph is built with onnx.helper, no torch needed.
# --------------------------------------------------------------------------------------------------

TOY_LABELS = ["neg", "pos"]
TOY_CHARS = list("gbxyz好差")


def write_toy_onnx(path: Path, n_ids: int) -> None:
    """``input_ids (B, T) -> Gather -> ReduceSum over T -> MatMul -> logits (B, 2)``.

    Summing (not averaging) and a zero padding row make the logits independent of padding, so batch
    composition never changes a score. 'g' and '好' push towards ``pos``, 'b' and '差' towards ``neg``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    emb = np.zeros((n_ids, 2), dtype=np.float32)  # id 0 (padding) stays zero
    for ch, vec in {
        "g": (0, 1),
        "好": (0, 1),
        "b": (1, 0),
        "差": (1, 0),
        "x": (0.1, 0),
        "y": (0, 0.1),
    }.items():
        emb[TOY_CHARS.index(ch) + 2] = vec
    weight = np.array([[2.0, -2.0], [-2.0, 2.0]], dtype=np.float32)  # (D, C)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["emb", "input_ids"], ["e"]),  # (B, T, D)
            helper.make_node("ReduceSum", ["e", "axes"], ["s"], keepdims=0),  # (B, D)
            helper.make_node("MatMul", ["s", "w"], ["logits"]),  # (B, C)
        ],
        "toy",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "length"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [
            numpy_helper.from_array(emb, "emb"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
            numpy_helper.from_array(weight, "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def make_toy_bundle(root: Path, passed: dict[str, bool] | None = None, max_length: int = 16) -> Path:
    """A ``charcnn`` bundle with vocab, toy ONNX variants and an export report (``passed`` per variant)."""
    from clsrun.runtime.bundle import BundleSpec, write_spec
    from clsrun.runtime.encode_char import CharVocab

    passed = {"fp32": True, "int8": True} if passed is None else passed
    root.mkdir(parents=True)
    vocab = CharVocab(TOY_CHARS)
    vocab.save(root / "vocab.json")
    files = {"fp32": "onnx/model.onnx", "int8": "onnx/model.int8.onnx", "fp16": "onnx/model.fp16.onnx"}
    variants = {}
    for name, ok in passed.items():
        write_toy_onnx(root / files[name], vocab.size)
        variants[name] = {
            "file": files[name],
            "passed": ok,
            "accuracy": 1.0,
            "reason": None if ok else "test",
        }
    report = {"reference": {"backend": "torch", "accuracy": 1.0, "rows": 1}, "variants": variants}
    (root / "onnx" / "export_report.json").write_text(json.dumps(report), encoding="utf-8")
    spec = BundleSpec(kind="charcnn", labels=TOY_LABELS, max_length=max_length, model={"kernel_sizes": [3]})
    write_spec(root, spec)
    return root


@pytest.fixture(autouse=True, scope="session")
def _sigint_deliverable() -> Iterator[None]:
    """A test run started as a background job (``cmd &`` in a script, ``nohup``) has SIGINT ignored, and
    every clsrun a test starts would inherit that and keep it, as it should: the signal tests would see a
    Ctrl-C do nothing. Python's own handler here makes the children start with SIGINT deliverable."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(scope="session")
def toy_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A verified toy char-CNN bundle (fp32 and int8 variants passed). Do not modify it."""
    return make_toy_bundle(tmp_path_factory.mktemp("toy") / "bundle")


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[..., Path]:
    """``make_bundle(name, passed={...}, max_length=16)``: a fresh toy bundle under ``tmp_path / name``."""

    def make(name: str, passed: dict[str, bool] | None = None, max_length: int = 16) -> Path:
        return make_toy_bundle(tmp_path / name, passed, max_length)

    return make


@pytest.fixture
def crash_after_parts(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[int], contextlib.AbstractContextManager[None]]:
    """``with crash_after_parts(n): ...``: inside, a run raises ``RuntimeError("killed")`` once ``n`` windows
    are checkpointed, as if it died there (its checkpoint is left for ``--resume``)."""
    from clsrun.runtime.partial import PartialOutput

    original = PartialOutput.add

    @contextlib.contextmanager
    def crashing(parts: int) -> Iterator[None]:
        def add(self: PartialOutput, *a: object, **kw: object) -> object:
            if len(self.parts) == parts:
                raise RuntimeError("killed")
            return original(self, *a, **kw)  # type: ignore[arg-type]

        with monkeypatch.context() as m:
            m.setattr(PartialOutput, "add", add)
            yield

    return crashing


# --------------------------------------------------------------------------------------------------
# Char-CNN trainer: a tiny labelled file and a real char-CNN bundle trained on it (seconds).
# --------------------------------------------------------------------------------------------------


def tiny_charcnn_texts(n: int = 60, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` short labelled texts, Chinese and English: ``pos`` rows praise (好/棒/good), ``neg`` rows complain."""
    rng = np.random.default_rng(seed)
    words = {
        "pos": ["好", "很好", "棒", "喜欢", "good", "great"],
        "neg": ["差", "太差", "坏", "讨厌", "bad", "awful"],
    }
    filler = ["这个", "房间", "服务", "the room", "it was", "酒店"]
    texts, labels = [], []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        texts.append(
            f"{rng.choice(filler)}{rng.choice(words[label])}，{rng.choice(filler)}{rng.choice(words[label])}"
        )
        labels.append(label)
    return texts, labels


def write_labelled_csv(path: Path, texts: list[str], labels: list[str]) -> Path:
    """A ``label,text`` CSV (RFC 4180 quoting)."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "text"])
        writer.writerows(zip(labels, texts, strict=True))
    return path


@pytest.fixture(scope="session")
def tiny_charcnn_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60-row ``label,text`` CSV of :func:`tiny_charcnn_texts`. Do not modify it."""
    texts, labels = tiny_charcnn_texts()
    return write_labelled_csv(tmp_path_factory.mktemp("tiny_charcnn_data") / "train.csv", texts, labels)


@pytest.fixture(scope="session")
def small_charcnn_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 300-row ``label,text`` CSV of :func:`tiny_charcnn_texts`: enough steps per epoch for a progress
    bar. Do not modify it."""
    texts, labels = tiny_charcnn_texts(300, seed=1)
    return write_labelled_csv(tmp_path_factory.mktemp("small_charcnn_data") / "train.csv", texts, labels)


@pytest.fixture(scope="session")
def _tiny_charcnn_master(tmp_path_factory: pytest.TempPathFactory, tiny_charcnn_data: Path) -> Path:
    from clsrun.trainer.config import TrainConfig
    from clsrun.trainer.data import load_split
    from clsrun.trainer.options import CharCNNOptions
    from clsrun.trainer.train_charcnn import train_charcnn

    out = tmp_path_factory.mktemp("tiny_charcnn_bundle") / "bundle"
    out.mkdir()
    config = TrainConfig.for_kind(
        "charcnn", lr=1e-2, epochs=1, batch_size=16, max_length=32, warmup=0, quiet=True, logs=False
    )
    split = load_split(tiny_charcnn_data, val_split=0.25, seed=config.seed)
    options = CharCNNOptions(embed_dim=8, channels=(8, 8), kernel_sizes=(3, 3), min_char_freq=1)
    train_charcnn(split, out, config, options)
    return out


@pytest.fixture
def tiny_charcnn_bundle(_tiny_charcnn_master: Path, tmp_path: Path) -> Path:
    """A verified ``charcnn`` bundle (vocab, weights, validation rows, metrics; no onnx/) trained for one
    epoch on :func:`tiny_charcnn_texts`; a fresh copy per test, so a test may add files (export) to it."""
    import shutil

    return Path(shutil.copytree(_tiny_charcnn_master, tmp_path / "charcnn_bundle"))


# --------------------------------------------------------------------------------------------------
# n-gram trainer: a bundle trained through clsrun.trainer.train (both fits, the baseline), and its export.
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _tiny_ngram_master(tmp_path_factory: pytest.TempPathFactory, small_charcnn_data: Path) -> Path:
    from clsrun.trainer import DataOptions, train

    out = tmp_path_factory.mktemp("tiny_ngram_bundle") / "bundle"
    config = {"epochs": 2, "quiet": True}
    with one_torch_thread():
        train(small_charcnn_data, out, model="ngram", config=config, data_options=DataOptions(val_split=0.2))
    return out


@pytest.fixture
def tiny_ngram_bundle(_tiny_ngram_master: Path, tmp_path: Path) -> Path:
    """A verified ``ngram`` bundle (both fits, the baseline, no onnx/) trained on the 300 rows of
    ``small_charcnn_data``; a fresh copy per test, so a test may change it."""
    import shutil

    return Path(shutil.copytree(_tiny_ngram_master, tmp_path / "ngram_bundle"))


@pytest.fixture(scope="session")
def exported_ngram_bundle(_tiny_ngram_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny ``ngram`` bundle after ``clsrun export`` (fp32 and int8 through the gate). Do not modify it."""
    import shutil

    from clsrun.export import export_bundle

    out = Path(shutil.copytree(_tiny_ngram_master, tmp_path_factory.mktemp("exported_ngram") / "bundle"))
    with one_torch_thread():
        export_bundle(out)
    return out


# --------------------------------------------------------------------------------------------------
# BERT trainer: a tiny random BERT checkpoint (WordPiece vocabulary with Chinese characters, written
# here) and a bundle fine-tuned from it. No downloads.
# --------------------------------------------------------------------------------------------------

TINY_BERT_WORDS = ["the", "a", "movie", "film", "very", "is", "was", "good", "great", "bad", "awful"]
TINY_BERT_CHINESE = list("这个电影很非常好棒喜欢坏差讨厌了的")


def tiny_bert_texts(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` labelled sentences (English and Chinese): ``pos`` rows say good/好, ``neg`` rows bad/差."""
    rng = np.random.default_rng(seed)
    filler = ["the movie", "a film", "这个电影", "the film was very", "电影非常", "this one is"]
    words = {"pos": ["good", "great", "好", "棒", "喜欢"], "neg": ["bad", "awful", "差", "坏", "讨厌"]}
    texts, labels = [], []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        picks = rng.choice(words[label], size=2)
        texts.append(f"{rng.choice(filler)} {picks[0]} {rng.choice(filler)} {picks[1]}")
        labels.append(label)
    return texts, labels


def write_tiny_bert_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A Hugging Face ``BertModel`` folder: 2 layers, hidden 32, 2 heads, a ~110-entry WordPiece vocabulary."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = [
        *specials,
        *letters,
        *("##" + c for c in letters),
        *TINY_BERT_WORDS,
        *TINY_BERT_CHINESE,
    ]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer_config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 128}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config), encoding="utf-8")
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def write_tiny_bert_data(path: Path, n: int = 64, seed: int = 0) -> Path:
    """A ``label,text`` CSV of :func:`tiny_bert_texts` rows."""
    texts, labels = tiny_bert_texts(n, seed)
    return write_labelled_csv(path, texts, labels)


@pytest.fixture(scope="session")
def tiny_bert_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT checkpoint folder (``--model PATH``). Do not modify it."""
    return write_tiny_bert_checkpoint(tmp_path_factory.mktemp("tiny_bert") / "checkpoint")


@pytest.fixture(scope="session")
def tiny_bert_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64-row English + Chinese ``label,text`` CSV the tiny BERT learns in a few epochs."""
    return write_tiny_bert_data(tmp_path_factory.mktemp("tiny_bert_data") / "train.csv")


@pytest.fixture(scope="session")
def tiny_bert_bundle(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert_checkpoint: Path, tiny_bert_data: Path
) -> Path:
    """A verified ``bert`` bundle ([CLS] pooling, head truncation, max_length 32) fine-tuned from the tiny
    checkpoint for a few epochs. Do not modify it."""
    from clsrun.trainer.bert import train_bert
    from clsrun.trainer.config import TrainConfig
    from clsrun.trainer.data import load_split
    from clsrun.trainer.options import BertOptions

    out = tmp_path_factory.mktemp("tiny_bert_bundle") / "bundle"
    out.mkdir()
    config = TrainConfig.for_kind(
        str(tiny_bert_checkpoint),
        lr=3e-3,
        epochs=6,
        batch_size=8,
        max_length=32,
        warmup=0,
        early_stopping_patience=None,
        quiet=True,
    )
    split = load_split(tiny_bert_data, val_split=0.25, seed=config.seed)
    with one_torch_thread():
        train_bert(split, out, config, BertOptions(model=str(tiny_bert_checkpoint), pooling="cls"))
    return out


@pytest.fixture(scope="session")
def tiny_mean_bundle(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert_checkpoint: Path, tiny_bert_data: Path
) -> Path:
    """A verified ``bert`` bundle with mean pooling (max_length 32): a head trained on the frozen tiny
    checkpoint (``--freeze-encoder``). Do not modify it."""
    from clsrun.trainer.bert import train_bert
    from clsrun.trainer.config import TrainConfig
    from clsrun.trainer.data import load_split
    from clsrun.trainer.options import BertOptions

    out = tmp_path_factory.mktemp("tiny_mean_bundle") / "bundle"
    options = BertOptions(
        model=str(tiny_bert_checkpoint), pooling="mean", truncation="head", freeze_encoder=True
    )
    config = TrainConfig(**{**options.train_defaults(), "max_length": 32, "quiet": True, "logs": False})
    split = load_split(tiny_bert_data, val_split=0.25, seed=config.seed)
    with one_torch_thread():
        train_bert(split, out, config, options)
    return out


@pytest.fixture
def self_labelled() -> Callable[[Path, Path], Path]:
    """``self_labelled(bundle_root, out)``: the bundle's validation texts labelled with its eager model's own
    predictions, written to ``out`` as JSONL (the reference scores 100 %), so a variant with permuted
    outputs must lose accuracy on them however well the tiny model was trained."""

    def write(bundle_root: Path, out: Path) -> Path:
        import torch

        from clsrun.runtime.bundle import Bundle
        from clsrun.runtime.encode import make_encoder
        from clsrun.runtime.labelled import read_labelled
        from clsrun.runtime.textnorm import normalize_many
        from clsrun.trainer.models import load_model

        bundle = Bundle.load(bundle_root)
        texts = read_labelled(bundle.path("validation.jsonl.gz")).texts
        encoder = make_encoder(bundle)
        tokens = encoder.tokenize(normalize_many(texts, bundle.spec.normalization))
        feeds = encoder.pad(tokens, np.arange(len(texts)))
        with torch.inference_mode():
            logits = load_model(bundle)(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
        labels = [bundle.labels[i] for i in logits.argmax(axis=1)]
        lines = [json.dumps({"label": y, "text": t}) + "\n" for y, t in zip(labels, texts, strict=True)]
        out.write_text("".join(lines))
        return out

    return write


@pytest.fixture
def torch_one_thread() -> Iterator[None]:
    """:func:`one_torch_thread` for the duration of a test."""
    with one_torch_thread():
        yield


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run tiny-model training on one intra-op thread (``clsrun.trainer.frozen.one_thread`` says why)."""
    from clsrun.trainer.frozen import one_thread

    with one_thread():
        yield
