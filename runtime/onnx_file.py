"""An ONNX file's ``metadata_props`` read straight from its protobuf, without loading it.

Opening an ONNX Runtime session only to learn what a file is (lmk's detector file or not, and
whether an older lmk wrote it) loads and optimises its whole graph. The metadata is a
top-level field of the ``ModelProto`` message (field 14: ``StringStringEntryProto`` entries,
key field 1, value field 2), so walking the top-level fields and seeking past the others,
the graph and its weights included, reads it at the cost of a few small reads. Standard
library only, like :mod:`lmk.runtime.tflite_file`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

_METADATA_PROPS = 14
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX file at ``path``, as ONNX Runtime's
    ``custom_metadata_map`` gives them. Raises ``ValueError`` where the file is not a
    well-formed protobuf message (cut short, or not ONNX), ``OSError`` where it cannot be
    read."""
    props: dict[str, str] = {}
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        while fh.tell() < size:
            field, wire = _tag(fh)
            if wire == _VARINT:
                _varint(fh)
                continue
            if wire == _FIXED64:
                length = 8
            elif wire == _FIXED32:
                length = 4
            elif wire == _LENGTH:
                length = _varint(fh)
            else:
                raise ValueError(f"not an ONNX file: wire type {wire} at the top level")
            if fh.tell() + length > size:
                raise ValueError("not an ONNX file: a field runs past the end")
            if field == _METADATA_PROPS and wire == _LENGTH:
                key, value = _entry(fh.read(length))
                props[key] = value
            else:
                fh.seek(length, os.SEEK_CUR)
    return props


def _tag(fh: BinaryIO) -> tuple[int, int]:
    """A field's number and wire type."""
    key = _varint(fh)
    return key >> 3, key & 7


def _varint(fh: BinaryIO) -> int:
    value, shift = 0, 0
    while True:
        byte = fh.read(1)
        if not byte:
            raise ValueError("not an ONNX file: it ends inside a number")
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
        if shift > 63:
            raise ValueError("not an ONNX file: a number longer than 10 bytes")


def _entry(data: bytes) -> tuple[str, str]:
    """One ``StringStringEntryProto``: (key, value)."""
    fh, found = io.BytesIO(data), {1: "", 2: ""}
    while fh.tell() < len(data):
        field, wire = _tag(fh)
        if wire != _LENGTH:
            raise ValueError("not an ONNX file: a metadata entry holds a number")
        length = _varint(fh)
        text = fh.read(length)
        if len(text) != length:
            raise ValueError("not an ONNX file: a metadata entry runs past its end")
        if field in found:
            found[field] = text.decode("utf-8", "replace")
    return found[1], found[2]
