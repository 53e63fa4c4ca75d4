"""A bundle whose files are damaged (and re-hashed, so the hashes agree) or a checkpoint folder that asks for
pickled weights: every command says so in one line naming the file, with the bundle's exit code (3), never
"unexpected" (exit 1) with the parser's own exception."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clsrun.runtime.bundle import Bundle
from clsrun.runtime.cli import app
from clsrun.runtime.errors import BundleError, ModelNotFoundError


def _rehashed(root: Path) -> Path:
    """``root`` with ``clsrun.json`` listing the files as they are now (a damage the hashes do not catch)."""
    Bundle.load(root, verify=False).rehash()
    return root


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def _predict(bundle: Path, tmp_path: Path, *extra: str) -> tuple[int, list[str]]:
    data = tmp_path / "in.csv"
    data.write_text("text\ngood\nbad\n", encoding="utf-8")
    out = tmp_path / "o.csv"
    res = CliRunner().invoke(app, ["predict", str(data), "--model", str(bundle), "--out", str(out), *extra])
    assert not out.exists()
    return res.exit_code, res.output.strip().splitlines()


DAMAGES: dict[str, tuple[Callable[[Path], None], tuple[str, ...], str]] = {
    # name: (damage, extra predict flags, the one line's tail)
    "features truncated": (
        lambda b: _truncate(b / "ngram_features.safetensors"),
        (),
        "ngram_features.safetensors: not a readable safetensors file (",
    ),
    "weights truncated, torch": (
        lambda b: _truncate(b / "model.safetensors"),
        ("--backend", "torch"),
        "model.safetensors: not weights that fit the n-gram model described in clsrun.json (",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_model_file_is_one_line_exit_3_naming_it(
    damage: str, tiny_ngram_bundle: Path, tmp_path: Path
) -> None:
    harm, flags, said = DAMAGES[damage]
    harm(tiny_ngram_bundle)
    code, lines = _predict(_rehashed(tiny_ngram_bundle), tmp_path, *flags)
    assert code == 3 and len(lines) == 1, lines
    assert lines[0].startswith("error: ") and said in lines[0] and "unexpected" not in lines[0]


def test_a_deeply_nested_or_nul_named_clsrun_json_is_a_bundle_error(
    tiny_ngram_bundle: Path, tmp_path: Path
) -> None:
    spec = tiny_ngram_bundle / "clsrun.json"
    original = spec.read_text(encoding="utf-8")
    spec.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    code, lines = _predict(tiny_ngram_bundle, tmp_path)
    assert code == 3 and lines == [lines[0]] and "clsrun.json: not valid JSON (" in lines[0]
    data = json.loads(original)
    data["files"]["model\u0000.safetensors"] = data["files"].pop("model.safetensors")
    spec.write_text(json.dumps(data), encoding="utf-8")
    code, lines = _predict(tiny_ngram_bundle, tmp_path)
    assert (
        code == 3
        and len(lines) == 1
        and "clsrun.json: 'model\\x00.safetensors' is not a file name" in lines[0]
    )


def test_a_nested_export_report_is_a_bundle_error(tiny_ngram_bundle: Path) -> None:
    (tiny_ngram_bundle / "onnx").mkdir()
    (tiny_ngram_bundle / "onnx" / "export_report.json").write_text("{" * 0 + "[" * 100_000 + "]" * 100_000)
    bundle = Bundle.load(_rehashed(tiny_ngram_bundle))
    with pytest.raises(
        BundleError, match=r"export_report\.json: not a JSON export report \(.*export the bundle again"
    ):
        bundle.export_report()


def test_a_character_vocabulary_larger_than_the_embedding_is_refused_on_every_backend(
    tiny_charcnn_bundle: Path,
) -> None:
    """An id past the embedding failed inside the ONNX graph only when a row held such a character."""
    from clsrun.runtime.encode_char import CharEncoder

    vocab_path = tiny_charcnn_bundle / "vocab.json"
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    vocab["chars"] += [chr(0xE000 + i) for i in range(500)]  # private-use characters: new to it
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(BundleError, match=r"vocab\.json: \d+ ids, but clsrun\.json says vocab_size \d+"):
        CharEncoder.from_bundle(Bundle.load(_rehashed(tiny_charcnn_bundle)))
    vocab_path.write_text("[" * 100_000, encoding="utf-8")
    with pytest.raises(BundleError, match=r"vocab\.json: not a valid character vocabulary \("):
        CharEncoder.from_bundle(Bundle.load(_rehashed(tiny_charcnn_bundle)))
    vocab_path.write_text(json.dumps({"chars": ["a", "a"]}), encoding="utf-8")
    with pytest.raises(BundleError, match=r"vocab\.json: character vocabulary has a character twice"):
        CharEncoder.from_bundle(Bundle.load(_rehashed(tiny_charcnn_bundle)))


def test_a_malformed_tokenizer_is_a_bundle_error(tiny_bert_bundle: Path, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(tiny_bert_bundle, tmp_path / "bert"))
    (bundle / "tokenizer.json").write_text('{"model": 5}', encoding="utf-8")
    code, lines = _predict(_rehashed(bundle), tmp_path)
    assert code == 3 and len(lines) == 1, lines
    assert "tokenizer.json: not a readable tokenizer file (" in lines[0]


@pytest.mark.parametrize("how", ["index of pickles", "explicit pickle", "quantized"])
def test_a_checkpoint_whose_weights_are_not_float_safetensors_is_refused_before_loading(
    how: str, tiny_bert_checkpoint: Path, tmp_path: Path
) -> None:
    """ "Safetensors only": a safetensors index may map the weights to pickled shards, and config.json may
    name a pickle (transformers accepts adapter_model.bin there) or ask a quantization library to load them."""
    from clsrun.trainer.bert_checkpoint import check_checkpoint

    folder = Path(shutil.copytree(tiny_bert_checkpoint, tmp_path / "ckpt"))
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if how == "index of pickles":
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")  # the bytes do not matter
        index = {
            "metadata": {},
            "weight_map": {"bert.embeddings.word_embeddings.weight": "pytorch_model.bin"},
        }
        (folder / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
        said = "model.safetensors.index.json maps weights to pytorch_model.bin, not safetensors files"
    elif how == "explicit pickle":
        config["transformers_weights"] = "adapter_model.bin"
        said = "config.json names the weights file 'adapter_model.bin', which is not safetensors"
    else:
        config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_8bit": True}
        said = "config.json has a quantization_config"
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelNotFoundError, match="not a usable Hugging Face checkpoint") as refused:
        check_checkpoint(folder)
    assert said in str(refused.value)


def test_a_checkpoint_with_truncated_weights_is_one_line_exit_2(
    tiny_bert_checkpoint: Path, tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(tiny_bert_checkpoint, tmp_path / "ckpt"))
    _truncate(folder / "model.safetensors")
    data = tmp_path / "d.csv"
    data.write_text(
        "label,text\n" + "".join(f"{('a', 'b')[i % 2]},text {i}\n" for i in range(40)), encoding="utf-8"
    )
    res = CliRunner().invoke(
        app,
        [
            "train",
            str(data),
            "--model",
            str(folder),
            "--out",
            str(tmp_path / "b"),
            "--no-baseline",
            "--quiet",
        ],
    )
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "not a checkpoint whose weights load into its config.json (" in lines[0]
    assert not (tmp_path / "b").exists()


def test_a_damaged_validation_file_is_the_bundles_fault_not_bad_input(tiny_ngram_bundle: Path) -> None:
    """The gate's rows come from the bundle's own validation.jsonl.gz: damaged, export said exit 2 (bad input)."""
    from clsrun.export.gate import load_eval_set

    _truncate(tiny_ngram_bundle / "validation.jsonl.gz")
    with pytest.raises(
        BundleError, match=r"validation\.jsonl\.gz: .*train the bundle again, or give .*--eval-data"
    ):
        load_eval_set(Bundle.load(_rehashed(tiny_ngram_bundle)))
