"""No code from a bundle or a checkpoint folder ever runs, whatever stdin says; the runtime reads only the
bundle files that ``clsrun.json`` lists and hashes.

A folder whose ``config.json`` has an ``auto_map`` pointing at its own ``planted.py`` (which writes a marker
file when imported) is given to ``clsrun predict`` (a bundle) and ``clsrun train`` (a checkpoint) as real
subprocesses with ``y`` on stdin, the answer transformers' own prompt would take as consent: both refuse
with one line (exit 3 and 2) and the marker never appears. A first test proves the planted code is live.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clsrun.runtime.bundle import Bundle, write_spec
from clsrun.runtime.errors import BundleError
from clsrun.trainer.bert_folder import load_bert_model

PLANTED = """\
import pathlib

pathlib.Path({marker!r}).write_text("the folder's code ran")

from transformers import BertConfig, BertModel


class PlantedConfig(BertConfig):
    model_type = "planted"


class PlantedModel(BertModel):
    config_class = PlantedConfig
"""


def _plant_code(folder: Path, marker: Path) -> None:
    (folder / "planted.py").write_text(PLANTED.format(marker=str(marker)), encoding="utf-8")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["model_type"] = "planted"  # no class of transformers: only the folder's code can load it
    config["auto_map"] = {
        "AutoConfig": "planted.PlantedConfig",
        "AutoModel": "planted.PlantedModel",
        "AutoModelForSequenceClassification": "planted.PlantedModel",
    }
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``args`` with ``y`` on stdin; transformers' module cache and the working folder in ``tmp_path``."""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "hf_modules"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        args, input="y\ny\n", capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )


def _clsrun(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "clsrun"), *args]


@pytest.fixture
def planted_bundle(tiny_bert_bundle: Path, tmp_path: Path) -> Path:
    """A copy of the tiny bundle with planted code, re-hashed, so only the code check can refuse it."""
    root = Path(shutil.copytree(tiny_bert_bundle, tmp_path / "bundle"))
    _plant_code(root, tmp_path / "ran")
    write_spec(root, Bundle.load(root, verify=False).spec)
    return root


def test_the_planted_code_runs_when_y_answers_transformers(planted_bundle: Path, tmp_path: Path) -> None:
    """What clsrun must prevent: transformers asks on stdin, takes ``y`` as consent, and runs the folder's code."""
    script = "import sys; from transformers import AutoConfig; AutoConfig.from_pretrained(sys.argv[1])"
    done = _run([sys.executable, "-c", script, str(planted_bundle)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ran").exists(), "the test's folder must really hold code that runs when allowed"


def test_predict_refuses_a_bundle_with_auto_map_without_reading_stdin(
    planted_bundle: Path, tiny_bert_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scores.csv"
    done = _run(
        _clsrun(
            "predict",
            str(tiny_bert_data),
            "--model",
            str(planted_bundle),
            "--out",
            str(out),
            "--backend",
            "torch",
        ),
        tmp_path,
    )
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "auto_map" in lines[0] and "never runs code" in lines[0], done.stderr
    assert "[y/N]" not in done.stdout + done.stderr, "no question may be asked"
    assert not (tmp_path / "ran").exists(), "the bundle's code ran"
    assert not out.exists()


def test_the_torch_loader_refuses_it_even_without_verify(planted_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="auto_map"):
        load_bert_model(Bundle.load(planted_bundle, verify=False))
    assert not (tmp_path / "ran").exists()


def test_train_refuses_a_checkpoint_with_auto_map_without_reading_stdin(
    tiny_bert_checkpoint: Path, tiny_bert_data: Path, tmp_path: Path
) -> None:
    checkpoint = Path(shutil.copytree(tiny_bert_checkpoint, tmp_path / "checkpoint"))
    _plant_code(checkpoint, tmp_path / "ran")
    out = tmp_path / "out"
    done = _run(
        _clsrun("train", str(tiny_bert_data), "--model", str(checkpoint), "--out", str(out), "-q"), tmp_path
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "auto_map" in lines[0] and "never runs code" in lines[0], done.stderr
    assert not (tmp_path / "ran").exists(), "the checkpoint's code ran"
    assert not out.exists()


def test_train_refuses_a_checkpoint_that_is_not_bert(tiny_bert_checkpoint: Path, tmp_path: Path) -> None:
    from clsrun.runtime.errors import ModelNotFoundError
    from clsrun.trainer.bert_checkpoint import resolve_checkpoint

    checkpoint = Path(shutil.copytree(tiny_bert_checkpoint, tmp_path / "checkpoint"))
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    (checkpoint / "config.json").write_text(
        json.dumps({**config, "model_type": "my-model"}), encoding="utf-8"
    )
    with pytest.raises(ModelNotFoundError, match=r"model_type 'my-model'") as e:
        resolve_checkpoint(str(checkpoint))
    assert e.value.exit_code == 2


# ------------------------------------------------------------------ only files clsrun.json lists are read


def _unlist(root: Path, name: str) -> None:
    """Drop ``name`` from clsrun.json's files, as if it had been added after the bundle was hashed."""
    spec = root / "clsrun.json"
    data = json.loads(spec.read_text(encoding="utf-8"))
    del data["files"][name]
    spec.write_text(json.dumps(data), encoding="utf-8")


def test_an_unlisted_tokenizer_is_refused(tiny_bert_bundle: Path, tmp_path: Path) -> None:
    from clsrun.runtime.encode import make_encoder

    root = Path(shutil.copytree(tiny_bert_bundle, tmp_path / "bundle"))
    _unlist(root, "tokenizer.json")
    with pytest.raises(BundleError, match=r"tokenizer\.json: not listed in clsrun\.json"):
        make_encoder(Bundle.load(root))


def test_an_unlisted_special_tokens_map_is_never_read(tiny_bert_bundle: Path, tmp_path: Path) -> None:
    from clsrun.runtime.encode import make_encoder

    root = Path(shutil.copytree(tiny_bert_bundle, tmp_path / "bundle"))
    expected = make_encoder(Bundle.load(root)).tokenize(["the film was good"]).ids
    _unlist(root, "special_tokens_map.json")
    (root / "special_tokens_map.json").write_text(json.dumps({"cls_token": "good"}), encoding="utf-8")
    got = make_encoder(Bundle.load(root)).tokenize(["the film was good"]).ids
    assert got.tolist() == expected.tolist(), "an unchecked file changed what the model sees"


def test_train_from_a_char_cnn_bundle_says_what_model_takes(tiny_charcnn_bundle: Path) -> None:
    """It said "not a usable Hugging Face checkpoint: no config.json; no tokenizer", of clsrun's own output."""
    from clsrun.runtime.errors import ModelNotFoundError
    from clsrun.trainer.bert_checkpoint import check_checkpoint

    with pytest.raises(
        ModelNotFoundError, match=r"is a clsrun bundle, not a base model; --model takes ngram"
    ):
        check_checkpoint(tiny_charcnn_bundle)
