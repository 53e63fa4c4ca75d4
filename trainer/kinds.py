"""The model kinds ``clsrun train`` can train: one registration each in :data:`KINDS`. No torch here.

A kind is its options class (``options.py``: its flags, their checks, the training defaults that suit it)
and a train function ``train(split, out, config, options) -> ClassificationReport | None`` that trains,
writes the bundle on the main process and returns its validation report (None on other ``torchrun``
processes). The function is named as ``"module:function"`` and imported only when training starts, so
``clsrun train`` checks flags and data before torch loads. Adding a kind: its options class, a module
with its train function, and one line in :data:`KINDS` (as ``ngram`` was added).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clsrun.runtime.errors import UsageError
from clsrun.trainer.options import BertOptions, CharCNNOptions, KindOptions, NgramOptions

if TYPE_CHECKING:
    from clsrun.runtime.metrics import ClassificationReport
    from clsrun.trainer.config import TrainConfig
    from clsrun.trainer.data import Split

TrainFn = Callable[["Split", Path, "TrainConfig", Any], "ClassificationReport | None"]


@dataclass(frozen=True)
class Kind:
    """One model kind: how ``--model`` names it, its options class and its train function."""

    name: str  # the --model value that selects it (the checkpoint kind: any value naming no other kind)
    title: str  # how messages name it
    options: type[KindOptions]  # its settings and defaults (torch-free)
    train: str  # "module:function" of its train function (imported when training starts)

    def train_function(self) -> TrainFn:
        """The train function (imports the kind's training module, and with it torch)."""
        module, _, function = self.train.partition(":")
        fn: TrainFn = getattr(importlib.import_module(module), function)
        return fn

    def options_for(self, model: str, given: KindOptions | Mapping[str, Any] | None = None) -> KindOptions:
        """Validated options for ``--model model``: ``given`` as an options object of this kind, or as the
        fields a user set (the rest take their defaults). A field of another kind is a :class:`UsageError`
        naming its flag."""
        if isinstance(given, KindOptions):
            if not isinstance(given, self.options):
                raise UsageError(f"--model {model} is {self.title}; {type(given).__name__} is another kind's")
            return given.with_model(model).validate()
        fields = dict(given or {})
        foreign = [name for name in fields if name not in self.options.FLAGS]
        if foreign:
            raise UsageError(_not_for(self, foreign))
        return self.options.for_model(model, **fields)


CHECKPOINT = "bert"  # the kind of every --model value that names no other kind: minilm or a folder
KINDS: dict[str, Kind] = {
    "charcnn": Kind("charcnn", "charcnn", CharCNNOptions, "clsrun.trainer.train_charcnn:train_charcnn"),
    "ngram": Kind("ngram", "ngram", NgramOptions, "clsrun.trainer.train_ngram:train_ngram"),
    CHECKPOINT: Kind(CHECKPOINT, "BERT", BertOptions, "clsrun.trainer.bert:train_bert"),
}


def kind_of(model: str) -> Kind:
    """The kind ``--model model`` trains: a registered name, else a BERT-family checkpoint."""
    kind = KINDS.get(model)
    return kind if kind is not None and model != CHECKPOINT else KINDS[CHECKPOINT]


def _not_for(kind: Kind, foreign: list[str]) -> str:
    """``--truncation and --freeze-encoder apply to BERT models, not charcnn``: one clause per set of kinds
    (``--pooling applies to charcnn and BERT models``, not one clause for each of them)."""
    by_kinds: dict[tuple[str, ...], list[str]] = {}
    unknown = []
    for name in foreign:
        owners = tuple(k.title for k in KINDS.values() if name in k.options.FLAGS and k is not kind)
        flag = next((k.options.FLAGS[name] for k in KINDS.values() if name in k.options.FLAGS), None)
        if flag is None or not owners:
            unknown.append(name)
        else:
            by_kinds.setdefault(owners, []).append(flag)
    clauses = [
        f"{_and(flags)} {'applies' if len(flags) == 1 else 'apply'} to {_and(list(owners))} models"
        for owners, flags in by_kinds.items()
    ]
    if unknown:
        clauses.append(f"no model kind has option(s) {_and(unknown)}")
    return f"{'; '.join(clauses)}, not {kind.title}"


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
