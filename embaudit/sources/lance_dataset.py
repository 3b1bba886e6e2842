"""Lance datasets (a ``*.lance`` directory; a LanceDB table is one), streamed fragment by
fragment through pylance (extra ``embaudit[lance]``).

The vector column and the id column follow parquet's rules (:mod:`embaudit.sources.columns`):
a ``fixed_size_list<float>`` column (what LanceDB writes) or a list column, ``--column`` and
``--id-column``. The dataset's vector index on that column, if any, is reported in
``input.index``: its type (``IVF_PQ``, ``IVF_HNSW_SQ``, …), the metric it ranks with (in
``--index-metric``'s names: ``cosine``, ``l2``, ``ip``) and its parameters.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.errors import InputError
from embaudit.sources.base import (
    Chunk,
    EmbeddingSource,
    Fragment,
    LiveIndex,
    RaggedRow,
    StoredIndex,
    as_row_positions,
    check_shape,
    exact_chunks,
    json_safe,
)
from embaudit.sources.columns import batch_matrix, first_length, layout_of
from embaudit.sources.lance_live import LANCE_METRICS, LanceIndex
from embaudit.sources.readers import ReadErrors, first_line, optional_library

INSTALL = "pip install 'embaudit[lance]'"

#: Lance's metric names, in --index-metric's.
METRICS = {"l2": "l2", "euclidean": "l2", "cosine": "cosine", "dot": "ip", "ip": "ip"}

#: Rows read at a time while looking for the first vector that is not null.
_PROBE_ROWS = 1024


def _lance(where: str) -> Any:
    # Lance logs from its Rust core to stderr; embaudit prints nothing a library says.
    os.environ.setdefault("LANCE_LOG", "error")
    os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")
    return optional_library("lance", where, f"reading Lance datasets needs pylance: {INSTALL}")


class LanceSource(EmbeddingSource):
    """A Lance dataset's vector column, read by fragment in record batches."""

    format = "lance"

    def __init__(
        self, path: str | Path, *, column: str | None = None, id_column: str | None = None
    ) -> None:
        self.path = self._where = str(path)
        lance = _lance(self._where)
        with _reading(self._where):
            self._dataset = lance.dataset(str(path))
            schema = self._dataset.schema
            pieces = self._dataset.get_fragments()
            sizes = [piece.count_rows() for piece in pieces]
        self._layout, self.id_column = layout_of(schema, self._where, column, id_column)
        if self._layout.kind == "wide":
            raise InputError(
                self._where,
                "no vector column (a fixed_size_list or list of floats); the columns are: "
                + ", ".join(schema.names),
            )
        self._pieces = pieces
        self.dtype = self._layout.dtype
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._piece_of = [index for index in range(len(sizes)) if sizes[index]]
        self._fragments = [
            Fragment(position, int(starts[index]), int(starts[index + 1]), self.path)
            for position, index in enumerate(self._piece_of)
        ]
        d = self._layout.d if self._layout.d is not None else self._first_length(int(starts[-1]))
        self.n, self.d = check_shape((int(starts[-1]), d), self._where, "data")
        self.index = self._vector_index()

    def fragments(self) -> list[Fragment]:
        return list(self._fragments)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["column"] = self._layout.columns[0]
        info["fragments"] = len(self._fragments)
        info["version"] = int(self._dataset.version)
        if self.index is not None:
            info["index"] = self.index
        return info

    def stored_index(self) -> StoredIndex | None:
        if self.index is None:
            return None
        metric = self.index["metric"]
        return StoredIndex(self.index.get("spec"), metric if metric in METRICS.values() else None)

    def live_index(self) -> LiveIndex | None:
        """The vector index, searched through Lance's ``nearest``: an IVF-based index ranking
        by cosine, L2 or dot, on a dataset without deleted rows (row addresses are then
        positions). None for the others."""
        index = self.index
        if index is None or index["metric"] not in LANCE_METRICS or "partitions" not in index:
            return None
        if not str(index["type"]).startswith("IVF"):
            return None
        starts: dict[int, int] = {}
        with _reading(self._where):
            for fragment, number in zip(self._fragments, self._piece_of, strict=True):
                piece = self._pieces[number]
                if piece.count_rows() != piece.physical_rows:
                    return None  # deleted rows: offsets are not positions
                starts[int(piece.fragment_id)] = fragment.start
        return LanceIndex(self._dataset, self._layout.columns[0], index, starts)

    def _first_length(self, n: int) -> int:
        column = self._layout.columns[0]
        with _reading(self._where):
            for batch in self._dataset.to_batches(columns=[column], batch_size=_PROBE_ROWS):
                length = first_length(batch.column(0))
                if length == 0:
                    raise InputError(self._where, f"column {column!r}: empty vector")
                if length is not None:
                    return length
        if n:
            raise InputError(self._where, f"column {column!r}: every vector is null")
        return 0

    def _vector_index(self) -> dict[str, Any] | None:
        """The vector index on the vector column: type, metric and parameters."""
        column = self._layout.columns[0]
        try:
            descriptions = self._dataset.describe_indices()
        except (AttributeError, OSError, ValueError, RuntimeError):
            return None
        for description in descriptions:
            details = getattr(description, "details", None) or {}
            if column not in list(description.field_names) or "metric_type" not in details:
                continue
            return _index_info(self._dataset, description, details)
        return None

    def _matrix(self, batch: Any, first_row: int) -> npt.NDArray[np.floating[Any]]:
        try:
            return batch_matrix(batch, self._layout, self.d, self.dtype)
        except RaggedRow as ragged:
            raise InputError(
                self._where,
                f"column {self._layout.columns[0]!r}: ragged vectors ({ragged.found} values, "
                f"expected {self.d}) at row {first_row + ragged.row}",
            ) from None

    def read(self, fragment: Fragment, chunk_rows: int | None = None) -> Iterator[Chunk]:
        step = chunk_rows or self.default_chunk_rows()
        piece = self._pieces[self._piece_of[fragment.index]]
        yield from exact_chunks(self._blocks(piece, fragment.start, step), fragment.start, step)

    def _blocks(self, piece: Any, start: int, step: int) -> Iterator[npt.NDArray[Any]]:
        row = start
        with _reading(self._where):
            for batch in piece.to_batches(columns=list(self._layout.columns), batch_size=step):
                yield self._matrix(batch, row)
                row += batch.num_rows

    def _take(self, positions: npt.NDArray[np.int64], columns: list[str]) -> Any:
        unique, inverse = np.unique(positions, return_inverse=True)
        with _reading(self._where):
            table = self._dataset.take(unique.tolist(), columns=columns)
        return table, inverse.reshape(-1), unique

    def take(self, rows: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
        positions = as_row_positions(rows, self.n)
        if not len(positions):
            return np.empty((0, self.d), dtype=self.dtype)
        table, inverse, unique = self._take(positions, list(self._layout.columns))
        return self._matrix(table, int(unique[0]))[inverse]

    def ids(self, rows: npt.ArrayLike) -> list[Any] | None:
        if self.id_column is None:
            return None
        positions = as_row_positions(rows, self.n)
        if not len(positions):
            return []
        table, inverse, _ = self._take(positions, [self.id_column])
        values = table.column(0).to_pylist()
        return [json_safe(values[i]) for i in inverse.tolist()]


def _index_info(dataset: Any, description: Any, details: dict[str, Any]) -> dict[str, Any]:
    metric = str(details["metric_type"]).lower()
    info: dict[str, Any] = {
        "name": description.name,
        "type": str(description.index_type),
        "metric": METRICS.get(metric, metric),
        "index_metric": metric,
        "rows_indexed": int(description.num_rows_indexed),
    }
    hnsw = details.get("hnsw") or {}
    if "max_connections" in hnsw:
        info["m"] = int(hnsw["max_connections"])
    if "construction_ef" in hnsw:
        info["ef_construction"] = int(hnsw["construction_ef"])
    compression = details.get("compression") or {}
    if compression.get("type"):
        info["compression"] = {
            key: value for key, value in compression.items() if isinstance(value, str | int)
        }
    try:
        stats = getattr(dataset, "stats", None)  # pylance >= 1: dataset.stats.index_stats
        if stats is not None and hasattr(stats, "index_stats"):
            statistics = stats.index_stats(description.name)
        else:
            statistics = dataset.index_statistics(description.name)
        segments = statistics.get("indices") or statistics.get("segments") or []
        if segments and "num_partitions" in segments[0]:
            info["partitions"] = int(segments[0]["num_partitions"])
    except (AttributeError, OSError, ValueError, RuntimeError, TypeError):
        pass
    spec = _faiss_spec(info)
    if spec is not None:
        info["spec"] = spec
    return info


def _faiss_spec(info: dict[str, Any]) -> str | None:
    """The faiss ``index_factory`` string of the same structure as a Lance index, when faiss
    has one: IVF_FLAT, IVF_PQ and IVF_SQ with their lists, and IVF_HNSW_FLAT / IVF_HNSW_SQ on
    one partition (an HNSW graph over every row). None otherwise: ``--index`` then says what to
    build."""
    kind, lists = info["type"], info.get("partitions")
    compression = info.get("compression") or {}
    if lists is None:
        return None
    if kind == "IVF_FLAT":
        return f"IVF{lists},Flat"
    if kind == "IVF_PQ" and "num_sub_vectors" in compression:
        return f"IVF{lists},PQ{compression['num_sub_vectors']}x{compression.get('num_bits', 8)}"
    if kind == "IVF_SQ":
        return f"IVF{lists},SQ8"
    if kind in ("IVF_HNSW_FLAT", "IVF_HNSW_SQ") and lists == 1 and "m" in info:
        return f"HNSW{info['m']}" + (",SQ8" if kind.endswith("SQ") else "")
    return None


class _reading(ReadErrors):
    """Turn Lance's errors into input errors that name the dataset."""

    def __init__(self, path: str) -> None:
        self.path = path

    def problem(self, error: BaseException) -> InputError | None:
        if not isinstance(error, OSError | ValueError | RuntimeError):
            return None
        text = _RUST_LOCATION.sub("", first_line(error))  # where in Lance's sources, not the data
        return InputError(self.path, f"cannot read the Lance dataset: {text}")


_RUST_LOCATION = re.compile(r",? \S+\.rs:\d+:\d+")
