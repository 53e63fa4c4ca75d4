"""The model bundle: a folder with ``clsrun.json`` describing it and the sha256 of every other file.

Layout (DESIGN.md):
- ``clsrun.json``: schema version, kind, labels in output order, max length, text normalisation, how it was
  trained, and ``files``: the sha256 of every other file. :meth:`Bundle.load` checks all of it (``lazily``:
  every file is there, and each one's sha256 when clsrun first opens it).
- ``model.safetensors`` (+ ``vocab.json`` for a char-CNN; ``ngram_features.safetensors`` for an n-gram
  model; ``config.json`` and tokenizer files for BERT, so the root is also a Hugging Face model folder).
- ``validation.jsonl.gz``: the labelled rows held out during training; the export gate scores them.
- ``onnx/``: ``model.onnx``, ``model.int8.onnx``, ``model.fp16.onnx``, ``export_report.json``.
- ``openvino/``: ``model.int8.xml`` + ``model.int8.bin`` (and ``model.xml`` + ``model.bin``): OpenVINO IR
  variants, built by export where ``clsrun[openvino]`` is installed.
- ``logs/``: TensorBoard event files. Not hashed: they are a record, not part of the model.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeGuard, cast

from clsrun.runtime.errors import BundleError, damaged
from clsrun.runtime.files import TMP_SUFFIX, atomic_write_text, is_temporary

SCHEMA_VERSION = 1
# The largest max_length a bundle may give: numpy and the encoders index in int32 / C long.
MAX_LENGTH = 2**31 - 1
# The names of a bundle's files, defined here only; every stage imports them.
SPEC_FILE = "clsrun.json"  # the spec and the sha256 of every other file
# In a bundle folder while training writes it (``trainer/run.py``). A temporary name (``files.is_temporary``),
# so never hashed into the bundle; it says a folder without ``clsrun.json`` is a bundle a training began and
# did not finish (the process was killed), which ``--force`` may replace, where any other folder is never
# deleted.
UNFINISHED = f".clsrun-unfinished{TMP_SUFFIX}"
WEIGHTS_FILE = "model.safetensors"  # the eager model's weights (both kinds)
VOCAB_FILE = "vocab.json"  # charcnn: the character vocabulary (``CharVocab.save``)
NGRAM_FEATURES_FILE = "ngram_features.safetensors"  # ngram: kept buckets and their idf (``encode_ngram.py``)
HF_CONFIG_FILE = "config.json"  # bert: the Hugging Face model config (with ``id2label``)
TOKENIZER_FILE = "tokenizer.json"  # bert: the fast tokenizer
SPECIAL_TOKENS_FILE = "special_tokens_map.json"  # bert: which tokens are [PAD], [CLS], ...
VALIDATION_FILE = "validation.jsonl.gz"  # labelled rows held out in training (export gate, eval)
ONNX_DIR = "onnx"  # the exported variants and their report
ONNX_FILES = {"fp32": "onnx/model.onnx", "int8": "onnx/model.int8.onnx", "fp16": "onnx/model.fp16.onnx"}
# OpenVINO IR variants (``clsrun[openvino]``): each .xml has its weights in the .bin of the same name.
OPENVINO_DIR = "openvino"
OPENVINO_FILES = {"ov-fp32": "openvino/model.xml", "ov-int8": "openvino/model.int8.xml"}
VARIANT_FILES = {**ONNX_FILES, **OPENVINO_FILES}  # every exported variant's file, by report name
VARIANT_DIRS = (ONNX_DIR, OPENVINO_DIR)  # the folders export writes (export --force writes them again)
EXPORT_REPORT = "onnx/export_report.json"  # what the export gate measured for each variant
LOGS_DIR = "logs"  # TensorBoard event files: a record of training, not part of the model
# Files and folders inside a bundle folder that are not part of the model and are never hashed.
UNHASHED_PARTS = frozenset({SPEC_FILE, LOGS_DIR})
# clsrun export's staging folders (inside the bundle: installing a variant is then a rename): never hashed.
STAGING_PREFIX = ".tmp-export-"

Kind = Literal["bert", "charcnn", "ngram"]
KINDS: tuple[str, ...] = ("bert", "charcnn", "ngram")


def inside_bundle(path: Path, bundle: Path) -> bool:
    """Whether ``path`` lies in the model bundle folder ``bundle`` (as both resolve): no run writes its
    output there (the files would not be the bundle's, and a later ``train --force`` refuses the folder)."""
    return (bundle / SPEC_FILE).is_file() and path.resolve().is_relative_to(bundle.resolve())


def previous_of(out: Path) -> Path:
    """Where a bundle that ``train --force`` replaces waits, beside ``out``, until the new one is complete."""
    return out.with_name(f".{out.name}.previous{TMP_SUFFIX}")


def _not_a_bundle(root: Path) -> str:
    """Why ``root``, a folder without ``clsrun.json``, is no bundle, and what to do when a training left it."""
    if not (root / UNFINISHED).is_file():
        train = (  # a Hugging Face model folder: the base a classifier is trained from, not one
            f" (a Hugging Face model folder: train a classifier on it first, clsrun train DATA --model {root} --out B)"
            if (root / HF_CONFIG_FILE).is_file()
            else ""
        )
        return f"{root / SPEC_FILE}: missing; {root} is not a clsrun model bundle{train}"
    previous = previous_of(root)
    todo = (
        f"the bundle it was replacing is in {previous}: move it back to use it, or train again with --force"
        if previous.is_dir()
        else "train again with --force"
    )
    return (
        f"{root}: a training into this folder did not finish (the process was stopped or killed), so it holds "
        f"no bundle; {todo}"
    )


@dataclass
class Normalization:
    """Text normalisation applied identically at training and scoring time (see ``textnorm.py``)."""

    unicode_form: Literal["NFC", "NFD", "NFKC", "NFKD"] | None = (
        "NFKC"  # NFKC folds full-width forms, common in Chinese text
    )
    lowercase: bool = False
    collapse_whitespace: bool = True


@dataclass
class BundleSpec:
    """Everything ``clsrun.json`` holds except the file hashes."""

    kind: Kind
    labels: list[str]
    max_length: int
    normalization: Normalization = field(default_factory=Normalization)
    # Kind-specific settings. charcnn: embed_dim, channels, kernel_sizes. bert: pooling ("cls"|"mean"),
    # truncation ("head"|"head-tail"). ngram: features (the n-gram scheme), n_features, fit.
    model: dict[str, Any] = field(default_factory=dict)
    # How it was trained: data_file, data_sha256, hyperparameters, metrics (on validation rows), created.
    training: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self, files: dict[str, str]) -> dict[str, Any]:
        data = asdict(self)
        data["files"] = dict(sorted(files.items()))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], where: Path) -> BundleSpec:
        problems: list[str] = []
        version = data.get("schema_version")
        if isinstance(version, bool) or version != SCHEMA_VERSION:  # true == 1 in Python
            problems.append(f"schema_version is {version!r}, this clsrun reads {SCHEMA_VERSION}")
        if data.get("kind") not in KINDS:
            problems.append(f"kind is {data.get('kind')!r}, expected one of {', '.join(KINDS)}")
        labels = data.get("labels")
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            problems.append("labels must be a non-empty list of strings")
        elif len({x.strip() for x in labels}) != len(labels):  # "neg" and "neg " would read as one
            problems.append("labels contain duplicates (spaces around a label do not count)")
        elif not all(x.strip() for x in labels):  # an ok row with an empty label reads as an unscored one
            problems.append("labels must not be empty or only spaces")
        elif any(has_control(x) for x in labels):  # a NUL or a newline would be written into every output
            problems.append("labels must not hold control characters (a NUL, a newline, a tab)")
        max_length = data.get("max_length")
        if (
            not isinstance(max_length, int)
            or isinstance(max_length, bool)
            or not 0 < max_length <= MAX_LENGTH
        ):
            problems.append(f"max_length must be a positive integer of at most {MAX_LENGTH}")
        problems += _normalization_problems(data.get("normalization"))
        for name in ("model", "training"):
            if not isinstance(data.get(name) or {}, dict):
                problems.append(f"{name} must be an object")
        if problems:
            raise BundleError(f"{where}: " + "; ".join(problems))
        norm = data.get("normalization") or {}
        return cls(
            kind=data["kind"],
            labels=list(labels),  # type: ignore[arg-type]
            max_length=int(data["max_length"]),
            normalization=Normalization(**norm),
            model=dict(data.get("model") or {}),
            training=dict(data.get("training") or {}),
            schema_version=int(version),  # type: ignore[arg-type]
        )


def _report_problems(data: object) -> list[str]:
    """What makes an export report unusable for choosing a variant: the shapes the runtime reads."""
    if not isinstance(data, dict):
        return ["the report must be a JSON object"]
    problems = []
    variants = data.get("variants", {})
    if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
        problems.append("variants must be an object of objects")
    else:
        files = [v.get("file") for v in variants.values() if v.get("file") is not None]
        if not all(isinstance(f, str) and _inside(f) for f in files):  # else ignored: "never exported"
            problems.append("a variant's file must be a path in the bundle")
    speeds = data.get("speeds")  # {} when fewer than two variants passed: nothing to choose between
    rates = speeds.get("rows_per_s", {}) if isinstance(speeds, dict) else None
    if speeds and not is_rate_table(rates):
        problems.append("speeds.rows_per_s must map variants to numbers")
    return problems


def _inside(rel: str) -> bool:
    """Whether ``rel`` names a path inside a bundle as written (not absolute, no ``..``)."""
    path = Path(rel)
    return bool(rel) and not path.is_absolute() and ".." not in path.parts


def is_rate_table(rates: object) -> TypeGuard[dict[str, float]]:
    """True for a ``{variant key: rows/s}`` mapping of numbers, as the export report and the speeds cache
    hold them (a bool is no number, though Python counts it as one)."""
    return isinstance(rates, dict) and all(
        isinstance(r, (int, float)) and not isinstance(r, bool) for r in rates.values()
    )


def _normalization_problems(norm: object) -> list[str]:
    """What is wrong with a ``normalization`` entry (a hand edit, a damaged file): a wrong one would change
    every score without a word, so it is refused as a damaged bundle (exit 3)."""
    if norm is None:
        return []
    if not isinstance(norm, dict):
        return ["normalization must be an object"]
    known = {f.name for f in fields(Normalization)}
    problems = [f"normalization has an unknown field {k!r}" for k in norm if k not in known]
    form = norm.get("unicode_form", "NFKC")
    if form not in ("NFC", "NFD", "NFKC", "NFKD", None):
        problems.append(f"normalization.unicode_form is {form!r}: NFC, NFD, NFKC, NFKD or null")
    for flag in ("lowercase", "collapse_whitespace"):
        if flag in norm and not isinstance(norm[flag], bool):
            problems.append(f"normalization.{flag} is {norm[flag]!r}: true or false")
    return problems


def openvino_weights(xml: str) -> str:
    """The weights file of an OpenVINO IR file (``openvino/model.int8.xml`` -> ``openvino/model.int8.bin``)."""
    if not xml.endswith(".xml"):
        raise BundleError(f"{xml}: an OpenVINO IR variant is an .xml file")
    return xml[: -len(".xml")] + ".bin"


# What the shipped model does, said wherever it runs unasked (no --model): a user who forgot --model
# otherwise gets labels of another task for every row, exit 0 (tests check the labels named here).
DEFAULT_MODEL_ABOUT = "the default model: sentiment of Chinese product reviews, labels neg / pos"


def is_variant_file(rel: str) -> bool:
    """Whether the bundle-relative path ``rel`` is in one of the :data:`VARIANT_DIRS` export writes."""
    return rel.split("/", 1)[0] in VARIANT_DIRS


def default_model_path() -> Path:
    """The bundle shipped with clsrun (``clsrun predict`` without ``--model``): package data, a plain folder.

    Resolved through its ``clsrun.json``: an editable install links each file into a build folder, and
    the bundle's inside-the-folder check must see the folder those files really are in. Found beside this
    module (clsrun is always installed as files: onnxruntime opens the model by path), which is what
    ``importlib.resources`` would give, without importing it and ``zipfile`` into every scoring run.
    """
    return (Path(__file__).parent / "default_model" / SPEC_FILE).resolve().parent


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _hashed_files(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        at_root = rel_dir == Path(".")
        dirnames[:] = sorted(
            d for d in dirnames if not (at_root and (d in UNHASHED_PARTS or d.startswith(STAGING_PREFIX)))
        )
        for name in sorted(filenames):
            if rel_dir == Path(".") and name in UNHASHED_PARTS:
                continue
            if is_temporary(name):  # a write in progress, or one a crash cut short
                continue
            yield Path(dirpath) / name


def write_spec(root: Path | str, spec: BundleSpec, files: dict[str, str] | None = None) -> Path:
    """Write ``clsrun.json`` atomically, listing ``files`` (relative path -> sha256), by default every file in
    ``root`` hashed now (a training's fresh folder). Call it last, after all files."""
    root = Path(root)
    if files is None:
        files = {p.relative_to(root).as_posix(): sha256_file(p) for p in _hashed_files(root)}
    target = root / SPEC_FILE
    text = json.dumps(spec.to_json(files), ensure_ascii=False, indent=2) + "\n"
    atomic_write_text(target, text)
    return target


# What `clsrun train --model` takes besides a folder: a user who passes one of these to predict/eval/export
# (`--model ngram`) means a kind of model, not a bundle, and is told the difference.
TRAIN_MODEL_NAMES: tuple[str, ...] = (*KINDS, "minilm")


def _kind_hint(root: Path) -> str:
    """``; ngram is a model kind ...`` when a missing bundle folder is named like a kind ``train`` builds."""
    if root.exists() or str(root) not in TRAIN_MODEL_NAMES:
        return ""
    return (
        f" ({root} is a model kind for `clsrun train DATA --model {root} --out B`; here --model takes the "
        "bundle folder B a training wrote, or leave it out for the default model)"
    )


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character (Unicode category Cc: NUL, tab, newline, DEL, ...), as no
    label may (a bundle's, or one read for training): it would be written into every output row."""
    return not text.isprintable() and any(unicodedata.category(c) == "Cc" for c in text)


@dataclass
class Bundle:
    """A loaded, verified model bundle. Use :meth:`load`; paths inside it come from :meth:`path`."""

    root: Path
    spec: BundleSpec
    files: dict[str, str]
    digest: str  # sha256 of clsrun.json, which covers every hashed file: identifies the bundle
    # Listed files whose sha256 is still to be checked, each when :meth:`file` first opens it (``lazily``).
    unchecked: set[str] = field(default_factory=set, repr=False, compare=False)

    @classmethod
    def load(cls, root: Path | str, verify: bool = True, lazily: bool = False) -> Bundle:
        """Read ``clsrun.json`` and, when ``verify``, check every listed file's sha256.

        ``lazily``: check now that every listed file is there, and each file's sha256 when :meth:`file`
        first opens it. Scoring opens one variant of several (an int8 file, not the fp32 file, the
        safetensors weights or an OpenVINO IR), so a run reads and hashes only the files it uses: an
        altered file is still refused before anything reads it, and a scoring process no longer spends
        a large part of its start hashing a hundred megabytes it never opens.

        Raises :class:`BundleError` naming the first file that is missing or altered.
        """
        root = Path(root)
        spec_path = root / SPEC_FILE
        if not root.is_dir():
            what = (
                "is a file, not a model bundle folder" if root.exists() else "model bundle folder not found"
            )
            raise BundleError(f"{root}: {what}{_kind_hint(root)}")
        if not spec_path.is_file():
            raise BundleError(_not_a_bundle(root))
        raw = spec_path.read_bytes()
        with damaged(spec_path, "valid JSON"):
            data = json.loads(raw)
        if not isinstance(data, dict):
            raise BundleError(f"{spec_path}: expected a JSON object")
        spec = BundleSpec.from_json(data, spec_path)
        files = data.get("files")
        if not isinstance(files, dict) or not files:
            raise BundleError(f"{spec_path}: no 'files' with hashes")
        bundle = cls(root=root, spec=spec, files=dict(files), digest=hashlib.sha256(raw).hexdigest())
        if verify:
            bundle.verify(lazily)
        return bundle

    def verify(self, lazily: bool = False) -> None:
        """Check that every hashed file exists inside the bundle and matches its sha256 (``lazily``: each
        sha256 when :meth:`file` first opens it), and that a ``bert`` bundle's Hugging Face files ask for
        no code (``hf_folder.check_bundle``)."""
        for rel in self.files:
            path = self.path(rel)
            if not path.is_file():
                fix = (
                    f"; `clsrun export {self.root} --force` builds the variants again"
                    if is_variant_file(rel)
                    else ""
                )
                raise BundleError(f"{path}: listed in {SPEC_FILE} but missing (incomplete bundle){fix}")
            if lazily:
                self.unchecked.add(rel)
            else:
                self._check(rel, path)
        if self.spec.kind == "bert":
            from clsrun.runtime.hf_folder import check_bundle

            check_bundle(self)

    def path(self, rel: str) -> Path:
        """Resolve ``rel`` inside the bundle; refuse absolute paths, ``..`` and links leading outside."""
        if not isinstance(rel, str) or not rel or any(ord(c) < 32 for c in rel):  # NUL: not even a path
            raise BundleError(f"{self.root / SPEC_FILE}: {rel!r} is not a file name")
        candidate = Path(rel)
        if candidate.is_absolute() or ".." in candidate.parts:
            raise BundleError(f"{self.root}: path {rel!r} points outside the bundle")
        full = self.root / candidate
        root_real = self.root.resolve()
        if not full.resolve().is_relative_to(root_real):
            raise BundleError(f"{full}: resolves outside the bundle folder (symbolic link?)")
        return full

    def has(self, rel: str) -> bool:
        """True when ``rel`` is a hashed file of this bundle."""
        return rel in self.files

    def file(self, rel: str) -> Path:
        """The path of ``rel``, a file listed with its sha256 in ``clsrun.json``: how clsrun opens bundle files.

        The name goes through :meth:`path` (no escapes); a file that ``clsrun.json`` does not list was never
        checked, so it is refused (:class:`BundleError`) rather than read.
        """
        path = self.path(rel)
        if rel not in self.files:
            raise BundleError(f"{path}: not listed in {SPEC_FILE}, so its sha256 was never checked; refused")
        if rel in self.unchecked:
            self._check(rel, path)
        return path

    def _check(self, rel: str, path: Path) -> None:
        """Refuse ``rel`` unless its sha256 is the one ``clsrun.json`` lists (then it counts as checked)."""
        try:
            digest = sha256_file(path)
        except FileNotFoundError:  # gone since the bundle was loaded (a train --force or export replacing it)
            raise BundleError(
                f"{path}: listed in clsrun.json but missing (it was removed after loading)"
            ) from None
        if digest != self.files[rel]:
            fix = (
                f"; `clsrun export {self.root} --force` builds the variants again"
                if is_variant_file(rel)
                else ""
            )
            raise BundleError(f"{path}: sha256 mismatch, the file was changed or damaged{fix}")
        self.unchecked.discard(rel)

    def with_staged(self, *rels: str) -> Bundle:
        """This bundle with files that export built in its staging folder listed, hashed now: the runtime
        then opens them through :meth:`file` like any listed file (the gate scores each candidate this way
        before installing it). Their names go through :meth:`path`, so they must lie inside the bundle."""
        files = dict(self.files)
        for rel in rels:
            path = self.path(rel)
            if not path.is_file():
                raise BundleError(f"{path}: no such file in the bundle")
            files[rel] = sha256_file(path)
        return replace(self, files=files, unchecked=self.unchecked - set(rels))

    @property
    def labels(self) -> list[str]:
        return self.spec.labels

    def export_report(self) -> dict[str, Any] | None:
        """The export report (``onnx/export_report.json``), or None when the bundle was never exported."""
        if not self.has(EXPORT_REPORT):
            return None
        path = self.file(EXPORT_REPORT)
        with damaged(path, "a JSON export report", "; export the bundle again"):
            data = json.loads(path.read_text(encoding="utf-8"))
        problems = _report_problems(data)
        if problems:
            raise BundleError(f"{path}: {'; '.join(problems)}; export the bundle again (--force)")
        return cast(dict[str, Any], data)

    def rehash(self, changed: Iterable[str] | None = None) -> Bundle:
        """Rewrite ``clsrun.json`` after an export replaced the files ``changed`` (bundle-relative; one now
        gone is no longer listed) and return the reloaded bundle. Every other listed file keeps the hash it
        was loaded with, and nothing else is listed: rehashing the whole folder adopted whatever a user kept
        in it (the training data, a predict output), which ``train --force`` then deleted as the bundle's.
        ``None``: list every file in the folder, hashed now (a folder edited on purpose, as tests do)."""
        files = None
        if changed is not None:
            changed = set(changed)
            files = {rel: digest for rel, digest in self.files.items() if rel not in changed}
            for rel in sorted(changed):
                if (self.root / rel).is_file():
                    files[rel] = sha256_file(self.root / rel)
        write_spec(self.root, self.spec, files)
        return Bundle.load(self.root, verify=False)
