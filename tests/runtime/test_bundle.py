"""Model bundle: schema and sha256 checks, path safety, atomic spec writing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clsrun.runtime.bundle import SPEC_FILE, Bundle, BundleSpec, Normalization, write_spec
from clsrun.runtime.errors import BundleError


def _make(root: Path) -> Path:
    root.mkdir()
    (root / "model.safetensors").write_bytes(b"weights")
    (root / "vocab.json").write_text('{"chars": ["a"]}', encoding="utf-8")
    (root / "onnx").mkdir()
    (root / "onnx" / "model.onnx").write_bytes(b"graph")
    (root / "logs").mkdir()
    (root / "logs" / "events").write_bytes(b"tensorboard")
    spec = BundleSpec(kind="charcnn", labels=["neg", "pos"], max_length=16, normalization=Normalization())
    write_spec(root, spec)
    return root


def test_roundtrip_hashes_every_model_file_but_not_logs(tmp_path: Path) -> None:
    bundle = Bundle.load(_make(tmp_path / "b"))
    assert set(bundle.files) == {"model.safetensors", "vocab.json", "onnx/model.onnx"}
    assert bundle.labels == ["neg", "pos"]
    assert len(bundle.digest) == 64


def test_a_python_file_in_a_bundle_is_hashed_like_any_other(tmp_path: Path) -> None:
    # no file name is special: a stray __init__.py is part of what the digest covers
    root = _make(tmp_path / "b")
    (root / "__init__.py").write_text("", encoding="utf-8")
    spec = Bundle.load(root).spec
    write_spec(root, spec)
    assert "__init__.py" in Bundle.load(root).files


def test_changed_file_is_named(tmp_path: Path) -> None:
    root = _make(tmp_path / "b")
    (root / "onnx" / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(BundleError, match=r"model\.onnx: sha256 mismatch"):
        Bundle.load(root)


def test_missing_file_is_named(tmp_path: Path) -> None:
    root = _make(tmp_path / "b")
    (root / "vocab.json").unlink()
    with pytest.raises(BundleError, match=r"vocab\.json: listed in clsrun\.json but missing"):
        Bundle.load(root)


def test_a_lazy_load_refuses_an_altered_file_when_it_is_opened_not_before(tmp_path: Path) -> None:
    root = _make(tmp_path / "b")
    (root / "onnx" / "model.onnx").write_bytes(b"tampered")
    bundle = Bundle.load(root, lazily=True)  # scoring that never opens the graph never reads it
    assert bundle.file("vocab.json").read_text(encoding="utf-8") == '{"chars": ["a"]}'
    with pytest.raises(BundleError, match=r"model\.onnx: sha256 mismatch"):
        bundle.file("onnx/model.onnx")
    with pytest.raises(BundleError, match=r"model\.onnx: sha256 mismatch"):
        bundle.file("onnx/model.onnx")  # refused every time, not only the first


def test_a_lazy_load_checks_each_file_once_and_still_names_a_missing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clsrun.runtime.bundle as bundle_module

    root = _make(tmp_path / "b")
    hashed: list[str] = []
    real = bundle_module.sha256_file
    monkeypatch.setattr(bundle_module, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    bundle = Bundle.load(root, lazily=True)
    assert hashed == []
    bundle.file("onnx/model.onnx")
    bundle.file("onnx/model.onnx")
    assert hashed == ["model.onnx"]
    (root / "vocab.json").unlink()
    with pytest.raises(BundleError, match=r"vocab\.json: listed in clsrun\.json but missing"):
        Bundle.load(root, lazily=True)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a clsrun model bundle"):
        Bundle.load(tmp_path)
    with pytest.raises(BundleError, match="folder not found"):
        Bundle.load(tmp_path / "nope")


def test_schema_problems_are_listed_together(tmp_path: Path) -> None:
    root = _make(tmp_path / "b")
    good = json.loads((root / SPEC_FILE).read_text(encoding="utf-8"))
    (root / SPEC_FILE).write_text(
        json.dumps({**good, "schema_version": 99, "kind": "xgboost", "labels": ["a", "a"]})
    )
    with pytest.raises(BundleError, match=r"schema_version is 99.*kind is 'xgboost'.*duplicates"):
        Bundle.load(root)
    (root / SPEC_FILE).write_text(json.dumps({**good, "labels": ["neg", " "]}))  # ok rows would read unscored
    with pytest.raises(BundleError, match="labels must not be empty or only spaces"):
        Bundle.load(root)
    (root / SPEC_FILE).write_text(
        json.dumps({**good, "labels": ["neg", "p\u0000os"]})
    )  # into every output row
    with pytest.raises(BundleError, match="labels must not hold control characters"):
        Bundle.load(root)


def test_corrupt_json(tmp_path: Path) -> None:
    root = _make(tmp_path / "b")
    (root / SPEC_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.load(root)


def test_paths_cannot_escape(tmp_path: Path) -> None:
    bundle = Bundle.load(_make(tmp_path / "b"))
    for bad in ("../x", "/etc/passwd", "onnx/../../x"):
        with pytest.raises(BundleError, match="outside the bundle"):
            bundle.path(bad)
    (tmp_path / "outside").write_text("x")
    (bundle.root / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(BundleError, match="resolves outside"):
        bundle.path("link")


def test_rehash_covers_new_files(tmp_path: Path) -> None:
    bundle = Bundle.load(_make(tmp_path / "b"))
    (bundle.root / "onnx" / "model.int8.onnx").write_bytes(b"int8")
    again = bundle.rehash()
    assert "onnx/model.int8.onnx" in again.files
    assert again.digest != bundle.digest
    Bundle.load(bundle.root)  # verifies


def test_spec_file_gets_ordinary_permissions(tmp_path: Path) -> None:
    root = _make(tmp_path / "b")
    assert (root / SPEC_FILE).stat().st_mode & 0o044 == 0o044, "clsrun.json must be readable by others"


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        ({"normalization": {"foo": 1}}, "normalization has an unknown field 'foo'"),
        ({"normalization": "NFKC"}, "normalization must be an object"),
        ({"normalization": {"unicode_form": "XYZ"}}, "unicode_form is 'XYZ'"),
        ({"normalization": {"lowercase": "no"}}, "normalization.lowercase is 'no': true or false"),
        ({"max_length": True}, "max_length must be a positive integer"),
        ({"max_length": 10**30}, r"max_length must be a positive integer of at most 2147483647"),
        ({"schema_version": True}, "schema_version is True"),
        ({"labels": ["neg", "neg "]}, "labels contain duplicates"),
        ({"training": [1]}, "training must be an object"),
    ],
)
def test_a_hand_edited_spec_that_would_change_scores_is_a_damaged_bundle(
    tmp_path: Path, edit: dict[str, object], says: str
) -> None:
    root = _make(tmp_path / "b")
    data = json.loads((root / SPEC_FILE).read_text(encoding="utf-8"))
    data.update(edit)
    (root / SPEC_FILE).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(BundleError, match=says):
        Bundle.load(root)


@pytest.mark.parametrize(
    ("report", "says"),
    [
        ("not json", "not a JSON export report"),
        ("[]", "the report must be a JSON object"),
        ('{"variants": [1, 2]}', "variants must be an object of objects"),
        ('{"variants": {"fp32": {"file": ["x"]}}}', "a variant's file must be a path"),
        ('{"variants": {"fp32": {"file": "../x.onnx"}}}', "a variant's file must be a path in the bundle"),
        ('{"variants": {"fp32": {"file": "/tmp/x.onnx"}}}', "a variant's file must be a path in the bundle"),
        (
            '{"variants": {}, "speeds": {"rows_per_s": {"onnx-int8": "fast"}}}',
            "rows_per_s must map variants to numbers",
        ),
    ],
)
def test_a_damaged_export_report_is_named_not_a_crash(tmp_path: Path, report: str, says: str) -> None:
    root = _make(tmp_path / "b")
    (root / "onnx" / "export_report.json").write_text(report, encoding="utf-8")
    bundle = Bundle.load(root).rehash()  # its hash matches: the content itself is what is wrong
    with pytest.raises(BundleError, match=says):
        bundle.export_report()


@pytest.mark.parametrize("replacing", [True, False])
def test_a_folder_a_killed_training_left_says_so_and_where_the_old_bundle_is(
    tmp_path: Path, toy_bundle: Path, replacing: bool
) -> None:
    """kill -9 during ``train --force`` leaves the mark in ``--out`` and the old bundle beside it: scoring
    said only "not a clsrun model bundle", so a user did not learn that the old model still exists."""
    from clsrun.runtime.bundle import UNFINISHED, previous_of

    out = tmp_path / "model"
    out.mkdir()
    (out / UNFINISHED).write_bytes(b"")
    if replacing:
        shutil.copytree(toy_bundle, previous_of(out))
    with pytest.raises(BundleError) as caught:
        Bundle.load(out)
    message = str(caught.value)
    assert "a training into this folder did not finish" in message and "train again with --force" in message
    assert (f"the bundle it was replacing is in {previous_of(out)}" in message) == replacing


def test_a_hugging_face_model_folder_given_as_a_bundle_says_to_train_on_it_first(tmp_path: Path) -> None:
    folder = tmp_path / "MiniLM"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(
        BundleError,
        match=r"not a clsrun model bundle \(a Hugging Face model folder: .*clsrun train DATA --model",
    ):
        Bundle.load(folder)
    (folder / "config.json").unlink()
    with pytest.raises(BundleError, match=r"not a clsrun model bundle$"):
        Bundle.load(folder)
