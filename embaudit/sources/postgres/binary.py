"""The binary forms a PostgreSQL vector column travels in: pgvector's ``vector_send`` and
``halfvec_send``, ``array_send`` of ``real[]`` and ``double precision[]`` (:data:`KINDS`), decoded
in bulk (:func:`decode`), and the tuples of a binary ``COPY`` stream (:class:`_CopyParser`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.errors import InputError
from embaudit.sources.base import RaggedRow


@dataclass(frozen=True)
class _Kind:
    """A vector column type: its binary form and the dtype of its chunks."""

    name: str  # "vector", "halfvec", "real[]" or "double precision[]"
    value: np.dtype[Any]  # one element, as sent (big-endian)
    array: bool  # array_send's layout, else pgvector's (int16 dim, int16 unused, values)


KINDS = {
    "vector": _Kind("vector", np.dtype(">f4"), False),
    "halfvec": _Kind("halfvec", np.dtype(">f2"), False),
    "real[]": _Kind("real[]", np.dtype(">f4"), True),
    "double precision[]": _Kind("double precision[]", np.dtype(">f8"), True),
}


def _kind_name(type_name: str) -> str:
    """``vector(384)`` → ``vector``; ``real[]`` and ``double precision[]`` as they are."""
    return type_name.split("(")[0].strip() if "[" not in type_name else type_name


def _length(value: bytes, kind: _Kind) -> int:
    if kind.array:
        ndim = struct.unpack(">i", value[:4])[0]
        return struct.unpack(">i", value[12:16])[0] if ndim == 1 else 0
    return int(struct.unpack(">H", value[:2])[0])


def decode(values: list[Any], kind: _Kind, d: int) -> npt.NDArray[np.floating[Any]]:
    """(rows, d) values from their binary form (``vector_send``, ``halfvec_send``,
    ``array_send``); a null vector or element is NaN. Rows of the usual size are decoded in
    bulk; others (nulls inside an array) one by one."""
    dtype = kind.value.newbyteorder("=")
    out = np.full((len(values), d), np.nan, dtype=dtype)
    size = kind.value.itemsize
    header, stride = (20, 4 + size) if kind.array else (4, size)
    expected = header + d * stride
    regular = [i for i, v in enumerate(values) if v is not None and len(v) == expected]
    if regular:
        raw = np.frombuffer(b"".join(bytes(values[i]) for i in regular), dtype=np.uint8)
        raw = raw.reshape(len(regular), expected)
        heads = np.ascontiguousarray(raw[:, :header]).view(">i4" if kind.array else ">u2")
        if kind.array:
            bad = np.flatnonzero((heads[:, 0] != 1) | (heads[:, 1] != 0) | (heads[:, 3] != d))
        else:
            bad = np.flatnonzero(heads[:, 0] != d)
        if len(bad):  # the same size by chance: decode those one by one
            regular = [r for j, r in enumerate(regular) if j not in set(bad.tolist())]
            raw = np.delete(raw, bad, axis=0)
        body = raw[:, header:].reshape(len(regular), d, stride)[:, :, stride - size :]
        out[regular] = np.ascontiguousarray(body).view(kind.value).reshape(len(regular), d)
    done = set(regular)
    for row, value in enumerate(values):
        if value is not None and row not in done:
            out[row] = _decode_one(bytes(value), kind, d, row)
    return out


def _decode_one(value: bytes, kind: _Kind, d: int, row: int) -> npt.NDArray[Any]:
    if not kind.array:
        found = int(struct.unpack(">H", value[:2])[0])
        if found != d:
            raise RaggedRow(row, found)
        return np.frombuffer(value[4:], dtype=kind.value)
    ndim = struct.unpack(">i", value[:4])[0]
    if ndim != 1:
        found = (
            0
            if ndim == 0
            else int(np.prod(struct.unpack(f">{2 * ndim}i", value[12 : 12 + 8 * ndim])[::2]))
        )
        raise RaggedRow(row, found)
    found = struct.unpack(">i", value[12:16])[0]
    if found != d:
        raise RaggedRow(row, found)
    out = np.full(d, np.nan, dtype=kind.value.newbyteorder("="))
    offset = 20
    for j in range(d):
        (length,) = struct.unpack(">i", value[offset : offset + 4])
        offset += 4
        if length >= 0:
            out[j] = np.frombuffer(value[offset : offset + length], dtype=kind.value)[0]
            offset += length
    return out


_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


class _CopyParser:
    """The tuples of a binary COPY of one column, as they arrive in blocks of bytes."""

    def __init__(self) -> None:
        self._buffer = b""
        self._header_read = False
        self._ended = False

    def feed(self, data: bytes) -> list[bytes | None]:
        self._buffer += data
        buffer = self._buffer
        position = 0
        if not self._header_read:
            if len(buffer) < 19:
                return []
            (extension,) = struct.unpack(">i", buffer[15:19])
            position = 19 + extension
            if len(buffer) < position:
                return []
            self._header_read = True
        values: list[bytes | None] = []
        size = len(buffer)
        while position + 2 <= size:
            (fields,) = struct.unpack_from(">h", buffer, position)
            if fields == -1:
                self._ended = True
                position += 2
                break
            if position + 6 > size:
                break
            (length,) = struct.unpack_from(">i", buffer, position + 2)
            end = position + 6 + max(length, 0)
            if end > size:
                break
            values.append(None if length < 0 else buffer[position + 6 : end])
            position = end
        self._buffer = buffer[position:]
        return values

    def finish(self, where: str) -> None:
        if not self._ended or self._buffer:
            raise InputError(where, "the COPY stream ended early")
