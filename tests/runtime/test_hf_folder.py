"""Model folders never run code: what ``hf_folder`` refuses, and ``bundle.file`` reads only checked files.

The end-to-end cases (a bundle or checkpoint whose Python would run, ``y`` on stdin) are in
``tests/trainer/test_model_folder_safety.py``; here only JSON is written, no model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from clsrun.runtime.bundle import Bundle, BundleSpec, write_spec
from clsrun.runtime.errors import BundleError
from clsrun.runtime.hf_folder import MEAN_POOLING_ARCHITECTURE, folder_reader, hf_folder_problems

BERT = {"model_type": "bert", "architectures": ["BertForMaskedLM"], "hidden_size": 32}


def _problems(files: dict[str, Any]) -> list[str]:
    return hf_folder_problems(files.get)


def test_a_plain_bert_folder_and_clsrun_bundles_pass() -> None:
    assert _problems({"config.json": BERT}) == []
    assert _problems({"config.json": {**BERT, "architectures": [MEAN_POOLING_ARCHITECTURE]}}) == []
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ]
    dense = {"in_features": 32, "out_features": 2, "activation_function": "torch.nn.modules.linear.Identity"}
    assert _problems({"config.json": BERT, "modules.json": modules, "2_Dense/config.json": dense}) == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"config.json": {**BERT, "auto_map": {"AutoModel": "m.M"}}}, r"config\.json has 'auto_map'"),
        (
            {"config.json": {**BERT, "sub": {"auto_map": {"AutoConfig": "m.C"}}}},
            r"config\.json has 'auto_map'",
        ),
        ({"config.json": {**BERT, "custom_pipelines": {}}}, r"'custom_pipelines'"),
        (
            {"config.json": BERT, "tokenizer_config.json": {"auto_map": {"AutoTokenizer": ["t.T", None]}}},
            r"tokenizer_config\.json has 'auto_map'",
        ),
        ({"config.json": {**BERT, "model_type": "my-bert"}}, r"model_type 'my-bert', not bert"),
        ({"config.json": {**BERT, "architectures": ["MyBert"]}}, r"\['MyBert'\].*not transformers' BERT"),
        ({"config.json": "<config.json: not readable JSON>"}, r"not a JSON object"),
        ({}, r"config\.json is missing"),
        (
            {"config.json": BERT, "modules.json": [{"path": "", "type": "my_module.Encoder"}]},
            r"modules\.json names the class 'my_module\.Encoder'",
        ),
        (
            {
                "config.json": BERT,
                "modules.json": [{"path": "2_Dense", "type": "sentence_transformers.models.Dense"}],
                "2_Dense/config.json": {"activation_function": "my_module.act"},
            },
            r"activation 'my_module\.act', not a torch class",
        ),
    ],
)
def test_folders_that_ask_for_code_or_are_not_bert_are_named(files: dict[str, Any], expected: str) -> None:
    problems = _problems(files)
    assert problems, "refused"
    assert any(re.search(expected, p) for p in problems), problems


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    config = {"model_type": "custom", "architectures": ["Custom"], "auto_map": {"AutoModel": "m.M"}}
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert len(hf_folder_problems(folder_reader(tmp_path))) == 3


def test_a_bert_bundle_whose_config_asks_for_code_is_refused_on_load(tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "config.json").write_text(
        json.dumps({**BERT, "auto_map": {"AutoConfig": "x.C"}}), encoding="utf-8"
    )
    write_spec(root, BundleSpec(kind="bert", labels=["a", "b"], max_length=8))
    with pytest.raises(BundleError, match=r"refused: config\.json has 'auto_map'.*never runs code") as e:
        Bundle.load(root)
    assert e.value.exit_code == 3


def test_bundle_file_refuses_a_file_clsrun_json_does_not_list(tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "vocab.json").write_text("{}", encoding="utf-8")
    write_spec(root, BundleSpec(kind="charcnn", labels=["a", "b"], max_length=8))
    (root / "added.json").write_text("{}", encoding="utf-8")  # after hashing: never checked
    bundle = Bundle.load(root)
    assert bundle.file("vocab.json") == root / "vocab.json"
    with pytest.raises(BundleError, match=r"added\.json: not listed in clsrun\.json"):
        bundle.file("added.json")
    with pytest.raises(BundleError, match="outside the bundle"):
        bundle.file("../vocab.json")
