"""Refuse ONNX files whose external data is not a checked file of the model bundle.

An ONNX tensor may keep its bytes in another file (``external_data`` entry ``location``), and
onnxruntime opens that file relative to the model. A bundle from elsewhere could point it at
``/etc/...``, at ``../../secret`` or at a symbolic link leading out of the folder, or ship a data file
that ``clsrun.json`` does not list (so no sha256 ever covered it), so the runtime calls
:func:`check_external_data` before creating a session. onnxruntime 1.32 refuses the first three cases too
(checked by hand); this check keeps that true for the older onnxruntime versions clsrun accepts, adds the
last, and turns each into a :class:`BundleError` (exit code 3) that names the file.

Why a hand-written protobuf walk: the scoring-only install has no ``onnx`` package (only onnxruntime,
which does not expose the model's tensors before loading them). The walk visits only the messages that can
hold tensors (graph, nodes, attributes, sub-graphs, training graphs, functions: their nodes and their
attributes' default values) and skips every other field by its length,
over an ``mmap`` of the file, so a 100 MB model costs a few milliseconds and no copy of its weights.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Protocol

from clsrun.runtime.errors import BundleError, resource_error

# Field numbers from onnx.proto (stable since IR version 3).
_MODEL_GRAPH, _MODEL_TRAINING_INFO, _MODEL_FUNCTIONS = 7, 20, 25
_TRAINING_INIT, _TRAINING_ALGO = 1, 2
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_ATTRIBUTE = 5
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_FUNCTION_NODE, _FUNCTION_ATTRIBUTE_PROTO = 7, 11
_TENSOR_EXTERNAL_DATA = 13
_ENTRY_KEY, _ENTRY_VALUE = 1, 2

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class _Bundle(Protocol):
    root: Path

    def has(self, rel: str) -> bool: ...

    def file(self, rel: str) -> Path: ...


class _ProtobufError(ValueError):
    pass


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _ProtobufError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield ``(field_number, start, end)`` of every length-delimited field in ``buf[start:end]``."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, pos = _varint(buf, pos, end)
        elif wire == _I64:
            pos += 8
        elif wire == _I32:
            pos += 4
        elif wire == _LEN:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _ProtobufError("field runs past the end of its message")
            yield number, pos, pos + length
            pos += length
        else:
            raise _ProtobufError(f"unsupported wire type {wire}")
    if pos != end:
        raise _ProtobufError("message runs past its end")


_Walker = Callable[[memoryview, int, int], Iterator[str]]


def _children(buf: memoryview, start: int, end: int, table: dict[int, _Walker]) -> Iterator[str]:
    for number, s, e in _fields(buf, start, end):
        walker = table.get(number)
        if walker is not None:
            yield from walker(buf, s, e)


def _tensor(buf: memoryview, start: int, end: int) -> Iterator[str]:
    for number, s, e in _fields(buf, start, end):
        if number != _TENSOR_EXTERNAL_DATA:
            continue
        entry = {n: bytes(buf[es:ee]) for n, es, ee in _fields(buf, s, e)}
        if entry.get(_ENTRY_KEY) == b"location":
            yield entry.get(_ENTRY_VALUE, b"").decode("utf-8", errors="replace")


def _sparse(buf: memoryview, start: int, end: int) -> Iterator[str]:
    return _children(buf, start, end, {_SPARSE_VALUES: _tensor, _SPARSE_INDICES: _tensor})


def _attribute(buf: memoryview, start: int, end: int) -> Iterator[str]:
    table: dict[int, _Walker] = {
        _ATTR_T: _tensor,
        _ATTR_TENSORS: _tensor,
        _ATTR_G: _graph,
        _ATTR_GRAPHS: _graph,
        _ATTR_SPARSE: _sparse,
        _ATTR_SPARSES: _sparse,
    }
    return _children(buf, start, end, table)


def _node(buf: memoryview, start: int, end: int) -> Iterator[str]:
    return _children(buf, start, end, {_NODE_ATTRIBUTE: _attribute})


def _graph(buf: memoryview, start: int, end: int) -> Iterator[str]:
    table: dict[int, _Walker] = {
        _GRAPH_NODE: _node,
        _GRAPH_INITIALIZER: _tensor,
        _GRAPH_SPARSE_INITIALIZER: _sparse,
    }
    return _children(buf, start, end, table)


def _function(buf: memoryview, start: int, end: int) -> Iterator[str]:
    # attribute_proto: the function's attributes with default values, which may hold tensors and graphs.
    return _children(buf, start, end, {_FUNCTION_NODE: _node, _FUNCTION_ATTRIBUTE_PROTO: _attribute})


def _training_info(buf: memoryview, start: int, end: int) -> Iterator[str]:
    return _children(buf, start, end, {_TRAINING_INIT: _graph, _TRAINING_ALGO: _graph})


def external_data_locations(path: Path | str) -> list[str]:
    """Every distinct external-data ``location`` that the tensors of an ONNX model file name, in order.

    Raises :class:`BundleError` when the file is not a readable ONNX protobuf.
    """
    path = Path(path)
    table: dict[int, _Walker] = {
        _MODEL_GRAPH: _graph,
        _MODEL_FUNCTIONS: _function,
        _MODEL_TRAINING_INFO: _training_info,
    }
    try:
        with open(path, "rb") as f:
            if f.seek(0, 2) == 0:
                raise BundleError(f"{path}: empty ONNX file")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                buf = memoryview(mm)
                try:
                    found = list(dict.fromkeys(_children(buf, 0, len(buf), table)))
                finally:
                    buf.release()
    except OSError as e:
        raise (resource_error(e) or BundleError(f"{path}: cannot be read ({e})")) from e
    except _ProtobufError as e:
        raise BundleError(f"{path}: not a valid ONNX model ({e})") from e
    return found


def check_external_data(bundle: _Bundle, rel_path: str) -> Path:
    """Return the path of the bundle's ONNX file ``rel_path`` once its external data is known to be safe.

    Refuses (with :class:`BundleError`, exit code 3) a model whose external data location is absolute,
    contains ``..``, resolves outside the bundle folder through a symbolic link, or is a file that
    ``clsrun.json`` does not list (so no sha256 covers it). The model file and each external data file go
    through ``bundle.file``, which applies the same rules to their names and checks their sha256.
    """
    model = bundle.file(rel_path)
    root = bundle.root.resolve()
    for location in external_data_locations(model):
        loc = Path(location)
        if not location or loc.is_absolute() or location.startswith(("/", "\\")) or ".." in loc.parts:
            raise BundleError(
                f"{model}: external data location {location!r} is absolute or climbs out of the bundle; refused"
            )
        target = (model.parent / loc).resolve()
        if not target.is_relative_to(root):
            raise BundleError(
                f"{model}: external data {location!r} resolves to {target}, outside the bundle {root}; refused"
            )
        listed = (PurePosixPath(rel_path).parent / PurePosixPath(location)).as_posix()
        if not bundle.has(listed):
            raise BundleError(
                f"{model}: external data {location!r} ({listed}) is not listed in clsrun.json, so its sha256 "
                "was never checked; refused"
            )
        bundle.file(listed)  # its sha256, before onnxruntime reads it (a lazily loaded bundle checks it here)
    return model
