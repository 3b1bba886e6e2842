"""HDF5 files (``.h5``, ``.hdf5``), read slab by slab through h5py (extra ``embaudit[hdf5]``).

The ann-benchmarks layout is the common one: datasets ``train`` (the corpus), ``test`` (the
queries), ``neighbors`` and ``distances`` (the ground truth), and a ``distance`` attribute on the
file naming the metric the set is meant for (``angular``, ``euclidean``, ``dot``, …). ``--key``
picks the dataset by its path; the default is ``train`` when there is one, else the only 2-D
float dataset. The ``distance`` attribute is reported in ``input`` with the metric it names.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.errors import InputError
from embaudit.sources.base import (
    FLOAT_DTYPES,
    QUANTIZED_DTYPES,
    Chunk,
    EmbeddingSource,
    Fragment,
    StoredIndex,
    as_row_positions,
    check_float_dtype,
    check_shape,
)
from embaudit.sources.readers import first_line, only_matrix, optional_library

#: The dataset read when ``--key`` is not given and the file has one (ann-benchmarks).
DEFAULT_KEY = "train"

#: ann-benchmarks' ``distance`` attribute, and the metric it names (the index metrics' names).
METRICS = {
    "angular": "cosine",
    "cosine": "cosine",
    "euclidean": "l2",
    "l2": "l2",
    "dot": "ip",
    "ip": "ip",
    "inner_product": "ip",
    "innerproduct": "ip",
}

INSTALL = "pip install 'embaudit[hdf5]'"


class HDF5Source(EmbeddingSource):
    """A 2-D dataset of an HDF5 file, read in slabs of rows (any chunking or compression)."""

    format = "hdf5"

    def __init__(self, path: str | Path, *, key: str | None = None) -> None:
        h5py = optional_library("h5py", str(path), f"reading HDF5 needs h5py: {INSTALL}")
        self._file_name = str(path)
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise InputError(path, f"not a readable HDF5 file ({first_line(exc)})") from None
        datasets = _datasets(self._file, h5py)
        key = _pick(datasets, key, self._file_name)
        self.key = key
        self.path = f"{path}[{key}]"
        self._dataset = self._file[key]
        check_float_dtype(self._dataset.dtype, self.path, "dataset", quantized=True)
        self.n, self.d = check_shape(tuple(self._dataset.shape), self.path, "dataset")
        stored = self._dataset.dtype.newbyteorder("=")
        self.dtype = stored if stored in FLOAT_DTYPES else np.dtype(np.float32)
        self.stored_dtype = stored if stored in QUANTIZED_DTYPES else None
        self.distance = _text_attribute(self._file.attrs.get("distance"))

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["key"] = self.key
        if self.distance is not None:
            info["distance"] = self.distance
            metric = METRICS.get(self.distance.lower())
            if metric is not None:
                info["metric"] = metric
        return info

    def stored_index(self) -> StoredIndex | None:
        """The metric the ``distance`` attribute names (no index structure): the default
        ``--index-metric``."""
        metric = METRICS.get(self.distance.lower()) if self.distance is not None else None
        return StoredIndex(None, metric) if metric is not None else None

    def _slab(self, selection: Any) -> npt.NDArray[np.floating[Any]]:
        try:
            values = self._dataset[selection]
        except (OSError, ValueError) as exc:
            raise InputError(self.path, f"cannot read ({first_line(exc)})") from None
        return np.ascontiguousarray(values, dtype=self.dtype)

    def read(self, fragment: Fragment, chunk_rows: int | None = None) -> Iterator[Chunk]:
        step = chunk_rows or self.default_chunk_rows()
        for start in range(fragment.start, fragment.stop, step):
            stop = min(start + step, fragment.stop)
            yield Chunk(start, self._slab(np.s_[start:stop]))

    def take(self, rows: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
        positions = as_row_positions(rows, self.n)
        unique, inverse = np.unique(positions, return_inverse=True)
        if not len(unique):
            return np.empty((0, self.d), dtype=self.dtype)
        # h5py selects increasing, distinct rows; runs of consecutive rows are read as slabs.
        runs = np.split(unique, np.flatnonzero(np.diff(unique) != 1) + 1)
        taken = np.concatenate([self._slab(np.s_[run[0] : run[-1] + 1]) for run in runs])
        return taken[inverse.reshape(-1)]


def _datasets(group: Any, h5py: Any) -> dict[str, Any]:
    """Every dataset of the file by its path (``train``, ``group/emb``)."""
    found: dict[str, Any] = {}

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):
            found[name] = item

    group.visititems(visit)
    return found


def _pick(datasets: dict[str, Any], key: str | None, where: str) -> str:
    listing = ", ".join(_describe(name, datasets[name]) for name in sorted(datasets))
    if key is not None:
        key = key.strip("/")
        if key not in datasets:
            raise InputError(
                where, f"--key {key!r} not found; the file holds: {listing or 'no datasets'}"
            )
        return key
    if DEFAULT_KEY in datasets:
        return DEFAULT_KEY
    matrices = [
        name
        for name in sorted(datasets)
        if len(datasets[name].shape) == 2 and datasets[name].dtype.kind in "fiu"
    ]
    return only_matrix(
        matrices,
        "dataset",
        listing or "no datasets",
        lambda name: _describe(name, datasets[name]),
        where,
    )


def _describe(name: str, dataset: Any) -> str:
    shape = " × ".join(str(s) for s in dataset.shape) or "scalar"
    return f"{name} ({shape} {dataset.dtype})"


def _text_attribute(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text_attribute(value.reshape(-1)[0])
    return str(value)
