"""Is a labelled file (part of) the data a bundle was trained on? ``clsrun eval`` warns when it is.

Scores on training rows overstate what a model does on new text, and nothing in the numbers says so.
Two checks, both cheap and neither keeps training text in the bundle:

- the file: its sha256 against ``training.data_sha256``, which the trainer records. Exact; every bundle
  has it.
- the rows: the trainer also records ``training.train_text_sample``, the 64-bit hashes of the normalised
  training texts whose hash is ``0 mod K`` (K chosen so that about :data:`SAMPLE_SIZE` are kept). A
  labelled file's texts are hashed the same way; among its rows that fall in the same ``0 mod K`` slice,
  the share found in the sample estimates the share of its rows that are training rows, whatever the
  file's format, order or size (hash-based sampling, as in Broder's resemblance estimate). A hit is a
  real duplicate (a 64-bit collision aside); a small share is normal (short texts recur across splits),
  so only :data:`WARN_SHARE` or more is said.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from clsrun.runtime.bundle import Bundle, Normalization, sha256_file
from clsrun.runtime.textnorm import normalize

SAMPLE_SIZE = 1024  # training-text hashes kept in clsrun.json (16 hex digits each)
WARN_SHARE = 0.1  # estimated share of training rows from which eval warns
MIN_HITS = 3  # sampled rows found among the training hashes before a share is trusted
SAMPLE_METHOD = "sha256-64 of the normalised text, kept when 0 mod one_in"


def text_hash(text: str, norm: Normalization) -> int:
    """64-bit hash of ``text`` as the model sees it (normalised), the same at training and eval time."""
    digest = hashlib.sha256(normalize(text, norm).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big")


def training_sample(texts: Iterable[str], norm: Normalization, size: int = SAMPLE_SIZE) -> dict[str, Any]:
    """``training.train_text_sample``: about ``size`` hashes of the training texts (see the module doc)."""
    hashes = {text_hash(t, norm) for t in texts}
    one_in = max(1, math.ceil(len(hashes) / size))
    kept = sorted(h for h in hashes if h % one_in == 0)
    return {"method": SAMPLE_METHOD, "one_in": one_in, "hashes": "".join(f"{h:016x}" for h in kept)}


def _sampled_share(sample: dict[str, Any], texts: list[str], norm: Normalization) -> tuple[int, int]:
    """``(hits, looked_at)``: rows of ``texts`` in the sample's slice, and how many were training rows."""
    one_in = int(sample.get("one_in") or 0)
    packed = str(sample.get("hashes") or "")
    if one_in < 1 or sample.get("method") != SAMPLE_METHOD:
        return 0, 0
    known = {int(packed[i : i + 16], 16) for i in range(0, len(packed), 16)}
    looked = [h for h in (text_hash(t, norm) for t in texts) if h % one_in == 0]
    return sum(1 for h in looked if h in known), len(looked)


def overlap_warning(
    bundle: Bundle, data: Path, texts: list[str], columns: tuple[str, str] = ("text", "label")
) -> str | None:
    """One line when ``data`` is the training file or many of its rows are training rows, else None.
    ``columns``: the text and label columns read; the training file read through others is said too."""
    training = bundle.spec.training
    name = Path(str(training.get("data_file") or "the training file")).name
    if training.get("data_sha256") and sha256_file(data) == training["data_sha256"]:
        held = training.get("val_rows")
        held_out = f"; only its {held:,} validation rows were held out" if isinstance(held, int) else ""
        if training.get("val_data_file"):  # validated on another file (--val-data): every row was trained on
            held_out = "; every row of it was trained on (validation came from --val-data)"
        trained = (training.get("text_col"), training.get("label_col"))
        other = (
            f"; it was trained on its columns {trained[0]!r} / {trained[1]!r}, these are {columns[0]!r} / "
            f"{columns[1]!r} (--text-col / --label-col)"
            if None not in trained and trained != columns
            else ""
        )
        return (
            f"{data} is the file this model was trained on (same sha256 as {name}{held_out}): these scores "
            f"overstate accuracy on new text; evaluate on held-out data, e.g. the bundle's validation.jsonl.gz"
            f"{other}"
        )
    sample = training.get("train_text_sample")
    if not isinstance(sample, dict):
        return None
    hits, looked = _sampled_share(sample, texts, bundle.spec.normalization)
    if hits < MIN_HITS or hits < WARN_SHARE * looked:
        return None
    return (
        f"about {hits / looked:.0%} of the rows of {data} are training rows of this model ({hits} of the "
        f"{looked} rows in a 1-in-{sample['one_in']} hash sample): these scores overstate accuracy on new text"
    )
