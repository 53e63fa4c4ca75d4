"""Each model kind's own settings, and the training defaults that suit it. No torch here.

``clsrun train`` builds these (and :class:`~clsrun.trainer.config.TrainConfig`) and checks every flag
before torch is imported or anything is written. A kind's options class says which flag sets each field
(``FLAGS``), checks its values with errors that name those flags (``validate``), gives the
:class:`TrainConfig` values that suit it (``train_defaults``), and what the bundle records about it
(``hyperparameters``). The registry of kinds is :mod:`clsrun.trainer.kinds`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar, TypeVar

from clsrun.runtime.encode_bert import TRUNCATIONS
from clsrun.runtime.errors import UsageError
from clsrun.trainer.bert_checkpoint import MINILM, resolve_checkpoint

Opts = TypeVar("Opts", bound="KindOptions")

CHARCNN_POOLINGS: tuple[str, ...] = ("max", "max+mean")
BERT_POOLINGS: tuple[str, ...] = ("auto", "cls", "mean")
BERT_TRUNCATIONS: tuple[str, ...] = ("auto", *TRUNCATIONS)
# --truncation auto: head-tail when at least this share of the training texts is longer than --max-length.
# Then the ends of many texts would be lost, and the end of a long text (a review's verdict, an article's
# conclusion) says as much as its start; when few texts are cut, it makes no difference worth a flag.
AUTO_HEAD_TAIL_SHARE = 0.2

# TrainConfig fields where the kinds differ. Char-CNN: what trained the default model (README).
# Without --max-length the char-CNN reads the training texts' 90th-percentile length, rounded up to a
# multiple of 64 and kept within these bounds (``charcnn_length``): short texts (reviews) stay at 256, long
# ones (news articles) are read to 1,024 characters rather than their first 256.
CHARCNN_AUTO_LENGTH = (256, 1024)
CHARCNN_DEFAULTS: dict[str, Any] = {
    "lr": 5e-3,
    "epochs": 6,
    "batch_size": 64,
    "eval_batch_size": 256,
    "max_length": 256,
    "warmup": 0.05,
    "early_stopping_patience": 2,
}


# Without --epochs the char-CNN trains for at least CHARCNN_MIN_STEPS optimizer steps (at most
# CHARCNN_MAX_EPOCHS epochs; never fewer than its default 6), early stopping ending it sooner: a small training
# set has few steps an epoch (bbc_en: 26), and 6 epochs stopped it while it still learned (README).
CHARCNN_MIN_STEPS = 1_000
CHARCNN_MAX_EPOCHS = 40


def steps_per_epoch(rows: int, rows_per_step: int) -> int:
    """Optimizer steps in one pass over ``rows`` training rows at ``rows_per_step`` rows a step (at least 1)."""
    return max(1, -(-rows // max(1, rows_per_step)))


def charcnn_epochs(rows: int, rows_per_step: int) -> int:
    """The char-CNN's ``--epochs`` for ``rows`` training rows at ``rows_per_step`` rows an optimizer step."""
    wanted = -(-CHARCNN_MIN_STEPS // steps_per_epoch(rows, rows_per_step))
    return max(int(CHARCNN_DEFAULTS["epochs"]), min(CHARCNN_MAX_EPOCHS, wanted))


def at_share(ordered: Sequence[int], share: float) -> int:
    """The value ``share`` of the way through ``ordered`` (sorted, not empty): 0.5 its median, 0.9 its 90th
    percentile (the lower of two neighbours, a value that occurs)."""
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def charcnn_length(lengths: list[int]) -> int:
    """The char-CNN's ``--max-length`` for training texts of ``lengths`` characters (:data:`CHARCNN_AUTO_LENGTH`)."""
    low, high = CHARCNN_AUTO_LENGTH
    if not lengths:
        return low
    p90 = at_share(sorted(lengths), 0.9)
    return max(low, min(high, -(-p90 // 64) * 64))


# The n-gram model (a linear table over hashed n-grams, trained by AdamW): a large step size, few epochs
# (validation loss bottoms out after 1-2), no weight decay, and whole texts (features are cheap per
# character; inews_zh articles run to several thousand characters).
NGRAM_DEFAULTS: dict[str, Any] = {
    "lr": 2e-2,
    "epochs": 10,
    "batch_size": 64,
    "eval_batch_size": 512,
    "max_length": 20_000,
    "warmup": 0,
    "weight_decay": 0.0,
    "early_stopping_patience": 2,
}
NGRAM_FITS: tuple[str, ...] = ("best", "torch", "logreg")
NGRAM_TFS: tuple[str, ...] = ("auto", "raw", "sublinear")
# --tf auto: sublinear term frequency when the training texts average at least this many characters. Short
# texts (reviews_zh: 73 on average) hardly repeat an n-gram, so raw tf costs nothing there and skips a sort
# when scoring; news articles (inews_zh 1,202, bbc_en 2,268) repeat many, and raw tf lets those drown the rest.
NGRAM_LONG_TEXT_CHARS = 500
# The research memo's inews_zh fit kept the 500,000 most frequent buckets (macro-F1 0.7247).
NGRAM_MAX_FEATURES = 500_000
# BERT full fine-tuning: the best model measured within 20 minutes of a 2-core CPU on bbc_en (README,
# "Why the BERT defaults"): a higher peak rate than the usual 5e-5 over 2 epochs beat 5e-5 over 3;
# 256 tokens costs half of 512.
BERT_DEFAULTS: dict[str, Any] = {
    "lr": 1e-4,
    "epochs": 2,
    "batch_size": 16,
    "eval_batch_size": 64,
    "max_length": 256,
    "warmup": 0.1,
    "early_stopping_patience": 2,
}
# --freeze-encoder trains a linear head on standardised cached features: a larger step size and many
# epochs of milliseconds each, stopped by patience.
FROZEN_DEFAULTS: dict[str, Any] = {
    **BERT_DEFAULTS,
    "lr": 1e-3,
    "epochs": 200,
    "batch_size": 32,
    "early_stopping_patience": 20,
}


class KindOptions:
    """Base of a model kind's options (each a frozen dataclass)."""

    FLAGS: ClassVar[dict[str, str]] = {}  # field -> the ``clsrun train`` flag that sets it

    @classmethod
    def for_model(cls: type[Opts], model: str, **given: Any) -> Opts:
        """The options for ``--model model`` with ``given`` fields set (the rest: defaults), validated."""
        return cls(**given).validate()

    def with_model(self: Opts, model: str) -> Opts:
        """These options for ``--model model`` (a kind that trains from a checkpoint records which)."""
        return self

    def validate(self: Opts) -> Opts:
        """Check every value; one :class:`UsageError` naming each offending flag. Returns self."""
        return self

    def train_defaults(self) -> dict[str, Any]:
        """The :class:`TrainConfig` values that suit this kind (every field without a default there)."""
        raise NotImplementedError

    def hyperparameters(self) -> dict[str, Any]:
        """What ``training.hyperparameters`` of the bundle records about these options."""
        raise NotImplementedError

    def unused(self, given: set[str]) -> str | None:
        """A warning naming the training settings among ``given`` (:class:`TrainConfig` fields the user
        set) that these options make no use of, rather than accepting them silently; None when all count."""
        return None


def flags(*names: str) -> dict[str, str]:
    """``{field: flag}`` for a kind's ``FLAGS``: each field's ``clsrun train`` flag is its name with dashes."""
    return {name: "--" + name.replace("_", "-") for name in names}


def _check(problems: list[str]) -> None:
    if problems:
        raise UsageError("; ".join(problems))


@dataclass(frozen=True)
class CharCNNOptions(KindOptions):
    """Char-CNN settings of ``clsrun train --model charcnn`` (the shared ones are in :class:`TrainConfig`)."""

    FLAGS: ClassVar[dict[str, str]] = flags(
        "embed_dim", "channels", "kernel_sizes", "dropout", "pooling", "vocab_size"
    )

    embed_dim: int = 48  # character embedding width
    channels: tuple[int, ...] = (64, 64, 64)  # channels of each convolution
    kernel_sizes: tuple[int, ...] = (1, 3, 5)  # odd kernel width of each convolution
    dropout: float = 0.5  # dropout on the pooled features (0.5 did better than 0.3 on reviews_zh)
    pooling: str = "max"  # "max" or "max+mean" (adds the mean over the text: long documents)
    vocab_size: int = 6000  # keep at most this many distinct characters (most frequent first)
    min_char_freq: int = 2  # characters seen fewer times in training become "unknown"

    def validate(self) -> CharCNNOptions:
        problems = []
        if self.embed_dim < 1:
            problems.append(f"--embed-dim must be >= 1, got {self.embed_dim}")
        if not self.channels or any(c < 1 for c in self.channels):
            problems.append(f"--channels must be positive integers, got {list(self.channels)}")
        if len(self.kernel_sizes) != len(self.channels):
            problems.append(
                f"--kernel-sizes must give one kernel per --channels entry "
                f"({len(self.channels)}), got {len(self.kernel_sizes)}"
            )
        if any(k < 1 or k % 2 == 0 for k in self.kernel_sizes):
            problems.append(f"--kernel-sizes must be odd positive integers, got {list(self.kernel_sizes)}")
        if not 0 <= self.dropout < 1:
            problems.append(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.pooling not in CHARCNN_POOLINGS:
            problems.append(
                f"--pooling for charcnn must be one of {', '.join(CHARCNN_POOLINGS)}, got {self.pooling!r}"
            )
        if self.vocab_size < 1:
            problems.append(f"--vocab-size must be >= 1, got {self.vocab_size}")
        if self.min_char_freq < 1:
            problems.append(f"--min-char-freq must be >= 1, got {self.min_char_freq}")
        _check(problems)
        return self

    def train_defaults(self) -> dict[str, Any]:
        return dict(CHARCNN_DEFAULTS)

    def hyperparameters(self) -> dict[str, Any]:
        return {"charcnn": asdict(self)}


@dataclass(frozen=True)
class NgramOptions(KindOptions):
    """N-gram model settings of ``clsrun train --model ngram`` (the shared ones: :class:`TrainConfig`)."""

    FLAGS: ClassVar[dict[str, str]] = flags(
        "char_ngrams", "word_ngrams", "bucket_bits", "min_df", "max_features", "tf", "fit", "logreg_c"
    )

    char_ngrams: tuple[int, int] | None = None  # shortest, longest character n-gram; None: by script
    word_ngrams: int | None = None  # 0 none, 1 words, 2 + word pairs; None: by script (2 alphabetic, 0 CJK)
    # Hash into 2**bits buckets; None: 20, or 22 for long texts (like --tf auto). 2**18 unpruned lost 0.6 pt on
    # reviews_zh; long news texts hold millions of distinct n-grams, whose collisions cost inews_zh macro-F1.
    bucket_bits: int | None = None
    min_df: int = 2  # keep buckets found in at least this many training texts (the rest is noise)
    # Keep at most this many buckets, most frequent first. The cap binds on long-text data only (reviews_zh
    # keeps 230k, inews_zh 889k without it), where it keeps the logistic-regression fit within minutes.
    max_features: int | None = NGRAM_MAX_FEATURES
    tf: str = "auto"  # term frequency: "raw", "sublinear" (1 + ln tf), "auto" (sublinear for long texts)
    fit: str = "best"  # "best": fit both below, keep the better on validation; "torch"; "logreg"
    logreg_c: float = 10.0  # inverse L2 strength of the logistic-regression fit (C=1 lost 1-4 pts)

    def validate(self) -> NgramOptions:
        problems = []
        grams = self.char_ngrams
        if grams is not None and (len(grams) != 2 or not 1 <= grams[0] <= grams[1] <= 8):
            problems.append(f"--char-ngrams must be MIN,MAX with 1 <= MIN <= MAX <= 8, got {list(grams)}")
        if self.word_ngrams is not None and self.word_ngrams not in (0, 1, 2):
            problems.append(f"--word-ngrams must be 0, 1 or 2, got {self.word_ngrams}")
        if self.bucket_bits is not None and not 8 <= self.bucket_bits <= 30:
            problems.append(f"--bucket-bits must be between 8 and 30, got {self.bucket_bits}")
        if self.min_df < 1:
            problems.append(f"--min-df must be >= 1, got {self.min_df}")
        if self.max_features is not None and self.max_features < 1:
            problems.append(f"--max-features must be >= 1, got {self.max_features}")
        if self.tf not in NGRAM_TFS:
            problems.append(f"--tf must be one of {', '.join(NGRAM_TFS)}, got {self.tf!r}")
        if self.fit not in NGRAM_FITS:
            problems.append(f"--fit must be one of {', '.join(NGRAM_FITS)}, got {self.fit!r}")
        if not self.logreg_c > 0:
            problems.append(f"--logreg-c must be > 0, got {self.logreg_c}")
        _check(problems)
        return self

    def train_defaults(self) -> dict[str, Any]:
        return dict(NGRAM_DEFAULTS)

    def hyperparameters(self) -> dict[str, Any]:
        return {"ngram": asdict(self)}

    def unused(self, given: set[str]) -> str | None:
        """``--fit logreg`` fits logistic regression to convergence: the AdamW fit's settings do nothing;
        ``--fit torch`` fits no logistic regression: ``--logreg-c`` does nothing."""
        if self.fit == "torch" and "logreg_c" in given:
            return "--logreg-c: unused with --fit torch (it sets the logistic-regression fit of --fit logreg or best)"
        names = sorted(given & ADAMW_ONLY) if self.fit == "logreg" else []
        if not names:
            return None
        flags_ = ", ".join("--" + name.replace("_", "-") for name in names)
        return f"{flags_}: unused with --fit logreg (logistic regression fits to convergence; they set the AdamW fit of --fit torch or best)"


# TrainConfig fields that only the n-gram model's AdamW fit reads (--fit torch / best).
ADAMW_ONLY = frozenset(
    {"lr", "epochs", "batch_size", "warmup", "weight_decay", "schedule", "restarts", "grad_accum",
     "early_stopping_patience", "device", "precision"}
)  # fmt: skip


@dataclass(frozen=True)
class BertOptions(KindOptions):
    """BERT-family settings of ``clsrun train --model minilm|PATH`` (the shared ones: :class:`TrainConfig`)."""

    FLAGS: ClassVar[dict[str, str]] = flags("pooling", "truncation", "freeze_encoder", "allow_unreadable")

    model: str = MINILM  # "minilm" or a local Hugging Face checkpoint folder
    pooling: str = "auto"  # "cls" | "mean" | "auto" (mean for sentence-transformers checkpoints, else cls)
    truncation: str = "auto"  # "head" | "head-tail" | "auto": which tokens of an over-long text are kept
    freeze_encoder: bool = False  # train only the linear head on features computed once
    allow_unreadable: bool = False  # train even when most of the data's tokens are [UNK] (bert.py)

    @classmethod
    def for_model(cls, model: str, **given: Any) -> BertOptions:
        return cls(model=model, **given).validate()

    def with_model(self, model: str) -> BertOptions:
        return replace(self, model=model)

    def validate(self) -> BertOptions:
        """Check the values, then that the checkpoint exists (before data is read or ``--out`` touched)."""
        problems = []
        if self.pooling not in BERT_POOLINGS:
            problems.append(f"--pooling must be one of {', '.join(BERT_POOLINGS)}, got {self.pooling!r}")
        if self.truncation not in BERT_TRUNCATIONS:
            problems.append(
                f"--truncation must be one of {', '.join(BERT_TRUNCATIONS)}, got {self.truncation!r}"
            )
        _check(problems)
        resolve_checkpoint(self.model)
        return self

    def train_defaults(self) -> dict[str, Any]:
        return dict(FROZEN_DEFAULTS if self.freeze_encoder else BERT_DEFAULTS)

    def hyperparameters(self) -> dict[str, Any]:
        return {"freeze_encoder": self.freeze_encoder}
