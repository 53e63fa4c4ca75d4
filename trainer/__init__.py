"""Training: BERT-family encoders, the character-level CNN and the n-gram model (torch: the ``train`` extra).

:func:`train` is the entry point (``clsrun train`` maps its flags to it); the kinds it can train are
registered in :mod:`clsrun.trainer.kinds`. Importing this package does not import torch: settings, flags
and data are checked first.
"""

from clsrun.trainer.config import TrainConfig
from clsrun.trainer.data import DataOptions
from clsrun.trainer.options import BertOptions, CharCNNOptions, KindOptions, NgramOptions
from clsrun.trainer.run import TrainResult, train

__all__ = [
    "BertOptions",
    "CharCNNOptions",
    "DataOptions",
    "KindOptions",
    "NgramOptions",
    "TrainConfig",
    "TrainResult",
    "train",
]
