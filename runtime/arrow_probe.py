"""Keep pyarrow from importing pandas in a scoring process (``clsrun predict``'s local engine).

pyarrow looks for pandas the first time it converts Python values (``pa.scalar``, ``pa.array`` of a list)
or converts an array with nulls to numpy, and imports it when it is installed, to recognise pandas objects.
Importing pandas costs more wall time than scoring tens of thousands of rows (README: the n-gram model's
scoring figures), and a scoring run never hands pyarrow a pandas object. :func:`answer_pandas_probe` lets
both of pyarrow's probes run once while ``import pandas`` fails; pyarrow remembers the answer, and nothing
else changes: ``import pandas`` works as before, and so do ``Table.to_pandas`` and ``Table.from_pandas``
(they import it themselves). Only ``pa.array(a pandas object)`` then reads it as a plain sequence.

Written by hand because pyarrow has no switch for it; it is the process owner's decision (the command
line's), never a library call's.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class _NoPandas:
    """Fails ``import pandas`` (and its submodules) while installed: a meta path finder (only ``find_spec`` is
    needed; not subclassing ``importlib.abc.MetaPathFinder`` keeps ``importlib.resources`` out of the run)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError(f"{fullname} is not imported in a scoring process", name=fullname)
        return None


def answer_pandas_probe() -> bool:
    """Run pyarrow's pandas probes with ``import pandas`` failing; False when pandas is already imported
    (pyarrow then uses it as usual) and nothing was done."""
    if "pandas" in sys.modules:
        return False
    import pyarrow as pa

    blocker = _NoPandas()
    sys.meta_path.insert(0, blocker)
    try:
        pa.scalar(0)  # the Python-side probe (pyarrow's pandas shim)
        pa.array([0, None]).to_numpy(zero_copy_only=False)  # the C++ side's (a conversion with nulls)
    finally:
        sys.meta_path.remove(blocker)
    return "pandas" not in sys.modules
