"""``.safetensors`` files: a named 2-D tensor (an embedding table, a tower's output layer),
memory-mapped.

The layout is read by hand, so no framework is needed: an 8-byte little-endian header length,
a JSON header naming every tensor (``{"name": {"dtype": "F32", "shape": [n, d],
"data_offsets": [begin, end]}, "__metadata__": {…}}``), then the data, offsets counted from its
start. F16, F32 and F64 are read as they are, BF16 and the quantized I8 / U8 as float32.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.errors import InputError
from embaudit.sources.arrays import ArraySource
from embaudit.sources.readers import only_matrix

#: safetensors dtypes embaudit reads, as numpy stores them (BF16: its bits, as uint16).
DTYPES: dict[str, np.dtype[Any]] = {
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
}

#: The format's own bound on the header (100 MB).
MAX_HEADER_BYTES = 100_000_000


def open_safetensors(path: Path, key: str | None) -> ArraySource:
    where = str(path)
    with path.open("rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        tensors, data_start = _header(stream, size, where)
        key = _pick(tensors, key, where)
        where = f"{path}[{key}]"
        entry = tensors[key]
        shape, dtype, begin = _validate(entry, size - data_start, where)
        mapping = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
    offset = data_start + begin
    if entry["dtype"] == "BF16":
        bits: npt.NDArray[Any] = np.ndarray(shape, dtype="<f2", buffer=mapping, offset=offset)
        return BFloat16Source(bits, path=where, mapping=mapping, data_offset=offset, file=str(path))
    array: npt.NDArray[Any] = np.ndarray(shape, dtype=dtype, buffer=mapping, offset=offset)
    return ArraySource(
        array,
        path=where,
        format="safetensors",
        mapping=mapping,
        data_offset=offset,
        file=str(path),
    )


class BFloat16Source(ArraySource):
    """A bfloat16 tensor: its values are the upper half of float32's bits. The array is a
    float16 view of the bits (the same size), so that the pages are managed as for any array;
    chunks are float32."""

    def __init__(
        self,
        bits: npt.NDArray[Any],
        *,
        path: str,
        mapping: mmap.mmap,
        data_offset: int,
        file: str | None = None,
    ) -> None:
        super().__init__(
            bits,
            path=path,
            format="safetensors",
            mapping=mapping,
            data_offset=data_offset,
            file=file,
        )
        self.dtype = np.dtype(np.float32)

    def _native(self, block: npt.NDArray[Any]) -> npt.NDArray[np.floating[Any]]:
        bits = np.ascontiguousarray(block).view("<u2").astype(np.uint32) << 16
        return bits.view(np.float32)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["dtype"] = "bfloat16"
        return info


def _header(stream: Any, size: int, where: str) -> tuple[dict[str, dict[str, Any]], int]:
    """The tensors the header names, and where the data starts."""
    first = stream.read(8)
    if len(first) < 8:
        raise InputError(where, f"truncated: {size} bytes, shorter than the 8-byte header length")
    (length,) = struct.unpack("<Q", first)
    if length > min(MAX_HEADER_BYTES, size - 8):
        raise InputError(
            where,
            f"not a safetensors file: the header length {length:,} exceeds "
            f"{'the file' if length > size - 8 else 'the format limit of 100 MB'}",
        )
    try:
        header = json.loads(stream.read(length).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(where, f"corrupt safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise InputError(where, "corrupt safetensors header (not a JSON object)")
    tensors = {name: entry for name, entry in header.items() if name != "__metadata__"}
    for name, entry in tensors.items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("dtype"), str)
            and isinstance(entry.get("shape"), list)
            and all(isinstance(s, int) and s >= 0 for s in entry["shape"])
            and isinstance(entry.get("data_offsets"), list)
            and len(entry["data_offsets"]) == 2
            and all(isinstance(o, int) for o in entry["data_offsets"])
        ):
            raise InputError(where, f"corrupt safetensors header: bad entry for {name!r}")
    if not tensors:
        raise InputError(where, "the file holds no tensors")
    return tensors, 8 + length


def _pick(tensors: dict[str, dict[str, Any]], key: str | None, where: str) -> str:
    """The tensor to read: the one named, else the only 2-D tensor."""
    listing = ", ".join(_describe(name, tensors[name]) for name in sorted(tensors))
    if key is not None:
        if key not in tensors:
            raise InputError(where, f"--key {key!r} not found; the file holds: {listing}")
        return key
    matrices = [name for name in sorted(tensors) if len(tensors[name]["shape"]) == 2]
    return only_matrix(
        matrices, "tensor", listing, lambda name: _describe(name, tensors[name]), where
    )


def _describe(name: str, entry: dict[str, Any]) -> str:
    return f"{name} ({' × '.join(str(s) for s in entry['shape']) or 'scalar'} {entry['dtype']})"


def _validate(
    entry: dict[str, Any], data_bytes: int, where: str
) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """(shape, dtype, offset in the data) of a tensor whose bytes lie inside the file."""
    name = entry["dtype"]
    if name not in DTYPES:
        raise InputError(
            where,
            f"the tensor holds {name} values; expected F16, BF16, F32, F64, I8 or U8",
        )
    dtype = DTYPES[name]
    shape = tuple(entry["shape"])
    if len(shape) != 2:
        raise InputError(
            where,
            f"the tensor has {len(shape)} dimension(s), shape {shape}; expected a 2-D tensor "
            "(rows, dimensions)",
        )
    begin, end = entry["data_offsets"]
    needed = math.prod(shape) * dtype.itemsize
    if not 0 <= begin <= end or end - begin != needed:
        raise InputError(
            where,
            f"corrupt safetensors header: offsets [{begin}, {end}) for {needed:,} bytes of "
            f"{' × '.join(map(str, shape))} {name}",
        )
    if end > data_bytes:
        raise InputError(
            where,
            f"truncated: the tensor ends at byte {end:,} of data, the file holds {data_bytes:,}",
        )
    return shape, dtype, begin
