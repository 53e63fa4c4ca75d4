"""A run of input texts kept as the Arrow string column they were read from, as Python strings only on demand.

The CSV and Parquet readers get each block's texts as an Arrow column. Turning it into Python strings
(``to_pylist``) was a fifth of reading a file and holds the GIL all along; the n-gram encoder never needs
them: it takes the column's UTF-8 bytes straight to code points (:meth:`ArrowTexts.codepoints`, one decode
of the whole run, no string per row). Every other consumer sees a read-only sequence of ``str | None``
(``None`` where the reader found a per-row error), and the strings are made the first time one is asked
for: by an encoder that works on strings, or by a window that holds error rows.
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class ArrowTexts(Sequence["str | None"]):
    """Texts as an Arrow ``string`` or ``large_string`` array (nulls for error rows); a ``Sequence``."""

    def __init__(self, array: pa.Array) -> None:
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            raise TypeError(f"ArrowTexts holds a string array, not {array.type}")
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    @overload
    def __getitem__(self, index: int) -> str | None: ...

    @overload
    def __getitem__(self, index: slice) -> ArrowTexts: ...

    def __getitem__(self, index: int | slice) -> str | ArrowTexts | None:
        if isinstance(index, slice):
            if index.step not in (None, 1):
                return ArrowTexts(pa.array(self.to_list()[index], type=self.array.type))
            start, stop, _ = index.indices(len(self))
            return ArrowTexts(self.array.slice(start, max(0, stop - start)))  # no copy
        value: str | None = self.array[index].as_py()
        return value

    def __iter__(self) -> Iterator[str | None]:
        return iter(self.to_list())

    def __contains__(self, value: object) -> bool:
        if value is None:
            return self.array.null_count > 0
        return value in self.to_list()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ArrowTexts):
            return self.to_list() == other.to_list()
        if isinstance(other, list):
            return self.to_list() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, like a list

    def __repr__(self) -> str:
        return f"ArrowTexts({len(self)} texts)"

    def to_list(self) -> list[str | None]:
        """The texts as Python strings (made once, then kept)."""
        return self._list

    @functools.cached_property
    def _list(self) -> list[str | None]:
        values: list[str | None] = self.array.to_pylist()
        return values

    @staticmethod
    def concat(parts: Sequence[ArrowTexts]) -> ArrowTexts:
        """One run of texts from consecutive runs (their arrays concatenated)."""
        if len(parts) == 1:
            return parts[0]
        arrays = [p.array for p in parts]
        if len({a.type for a in arrays}) > 1:  # string and large_string runs: one type for all
            arrays = [a.cast(pa.large_string()) for a in arrays]
        return ArrowTexts(pa.concat_arrays(arrays))

    def codepoints(self) -> tuple[np.ndarray, np.ndarray]:
        """``(c, lengths)`` as ``charmaps.codepoints`` gives them for these texts, which must have no null."""
        if self.array.null_count:
            raise ValueError("code points of texts with error rows: take the valid ones first")
        array = self.array
        lengths = pc.utf8_length(array).to_numpy().astype(np.int64)  # (n,) code points per text
        offset_type = np.int64 if pa.types.is_large_string(array.type) else np.int32
        offsets = np.frombuffer(array.buffers()[1], dtype=offset_type)[
            array.offset : array.offset + len(array) + 1
        ]
        data = array.buffers()[2]
        if data is None or not len(array):
            return np.zeros(0, dtype=np.uint32), lengths
        utf8 = memoryview(data)[int(offsets[0]) : int(offsets[-1])]
        text, _ = codecs.utf_8_decode(utf8, "surrogatepass", True)  # Arrow validated it as UTF-8
        return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32), lengths
