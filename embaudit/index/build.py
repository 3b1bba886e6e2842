"""Building a plan's index: the empty index of its spec (:func:`new_index`), what its structure
asks for (the HNSW graph inside it, its inverted lists, its training rows), its rows prepared as
it takes them, training on a seeded sample, and every clean row (or a seeded sample of rows)
added; the rows it then holds (:class:`_Database`) with the exact lists against them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.array_types import Floats, Ints
from embaudit.draw import draw_clean_rows
from embaudit.index.faiss_import import _faiss, _faiss_problem, _native_output_captured
from embaudit.index.plan import IndexMetric, IndexPlan
from embaudit.knn import Block, NeighborSearch
from embaudit.params import ParameterError
from embaudit.random_streams import Stream, generator
from embaudit.sources import EmbeddingSource
from embaudit.stats import CleanRows, clean_mask, row_norms, scaled_to_unit

Rows32 = npt.NDArray[np.float32]

#: Training rows: at least this many, else 40 per inverted list (faiss asks for 39), at most
#: TRAIN_MAX (float64 rows of d = 768 take 1.6 GB there). Fewer when the file has fewer.
TRAIN_MIN, TRAIN_PER_LIST, TRAIN_MAX = 2**16, 40, 2**18
#: Rows per faiss ``add`` call when the index is built from a sample held in memory.
ADD_ROWS = 16_384


def new_index(d: int, plan: IndexPlan) -> Any:
    """An empty index of ``plan.spec`` for dimension ``d``; a spec faiss cannot build is a
    :class:`ParameterError` naming ``index``."""
    faiss = _faiss()
    metric = faiss.METRIC_L2 if plan.metric == IndexMetric.L2 else faiss.METRIC_INNER_PRODUCT
    try:
        index = faiss.index_factory(d, plan.spec, metric)
    except (RuntimeError, ValueError, TypeError) as error:
        problem = f"{plan.spec!r} cannot be built for d = {d} with metric {plan.metric}"
        raise ParameterError("index", f"{problem}: {_faiss_problem(error)}", plan.flag) from None
    hnsw = _hnsw_of(index)
    for name, value in plan.build:
        if name == "efConstruction" and hnsw is not None:
            hnsw.hnsw.efConstruction = value
    return index


def check_plan(d: int, plan: IndexPlan) -> None:
    """Raise the :class:`ParameterError` of :func:`new_index` before any work starts."""
    new_index(d, plan)


def _hnsw_of(index: Any) -> Any | None:
    """The HNSW index inside ``index`` (through pre-transforms, refinement, id maps)."""
    faiss = _faiss()
    inner = faiss.downcast_index(index)
    while inner is not None:
        if isinstance(inner, faiss.IndexHNSW):
            return inner
        if isinstance(inner, faiss.IndexPreTransform | faiss.IndexIDMap):
            inner = faiss.downcast_index(inner.index)
        elif isinstance(inner, faiss.IndexRefine):
            inner = faiss.downcast_index(inner.base_index)
        else:
            return None
    return None


def _lists(index: Any) -> int | None:
    """The number of inverted lists of an IVF index (None for the others)."""
    ivf = _faiss().try_extract_index_ivf(index)
    return None if ivf is None else int(ivf.nlist)


def _training_rows(index: Any, n: int) -> int:
    """How many rows to train ``index`` on (0 when it needs no training)."""
    if index.is_trained:
        return 0
    lists = _lists(index) or 0
    return min(n, max(TRAIN_MIN, min(TRAIN_PER_LIST * lists, TRAIN_MAX)))


@dataclass(frozen=True)
class _Prepare:
    """Rows as the index takes them: float32, unit rows for cosine, else scaled by one power of
    two (exact; the ranking under L2 or inner product does not change) so that squares stay in
    float32's range."""

    metric: IndexMetric
    pow2_scale: float

    def __call__(self, values: npt.NDArray[np.floating[Any]]) -> Rows32:
        wide = np.asarray(values, dtype=np.float64)
        if self.metric == IndexMetric.COSINE:
            wide = wide / row_norms(wide)[:, None]
        else:
            wide = wide * self.pow2_scale
        return np.ascontiguousarray(wide, dtype=np.float32)


def _train(index: Any, rows: Rows32, plan: IndexPlan) -> None:
    """Train ``index`` on ``rows``; faiss's refusal (fewer rows than lists) names ``index``."""
    with _native_output_captured():
        try:
            index.train(rows)
        except RuntimeError as error:
            raise ParameterError(
                "index",
                f"{plan.spec!r} cannot be trained on {len(rows):,} rows: {_faiss_problem(error)}",
                plan.flag,
            ) from None


def _add_all(
    index: Any,
    source: EmbeddingSource,
    prepare: _Prepare,
    chunk_rows: int | None,
    on_rows: Callable[[int], None] | None,
) -> Ints:
    """Add every clean row of ``source``, chunk by chunk; the row positions in index order."""
    positions: list[Ints] = []
    for chunk in source.chunks(chunk_rows):
        clean = clean_mask(chunk.values, source.dtype)
        if clean.any():
            index.add(prepare(chunk.values[clean]))
            positions.append(chunk.start + np.flatnonzero(clean).astype(np.int64))
        if on_rows is not None:
            on_rows(len(chunk.values))
    return np.concatenate(positions) if positions else np.empty(0, np.int64)


def _add_sample(
    index: Any,
    values: Floats,
    prepare: _Prepare,
    on_rows: Callable[[int], None] | None,
) -> None:
    for start in range(0, len(values), ADD_ROWS):
        index.add(prepare(values[start : start + ADD_ROWS]))
        if on_rows is not None:
            on_rows(len(values[start : start + ADD_ROWS]))


@dataclass(frozen=True)
class _Database:
    """The rows an index was built on: their positions, and how to read them back."""

    positions: Ints  # row position of each index entry, in index order
    read: Callable[[Ints], Floats]  # rows at sorted positions, float64
    search: NeighborSearch  # exact lists of the queries against these rows
    dtype: np.dtype[Any]  # the rows' own, which they are widened from


def unit_rows_of(values: Floats, dtype: np.dtype[Any]) -> tuple[Floats, npt.NDArray[np.float32]]:
    """The norms and unit rows of rows read back as float64 from rows of ``dtype``, as the pass
    computes them from the rows as stored (:func:`~embaudit.stats.scaled_to_unit`): the same
    float32 unit rows, to the last bit, as the exact lists were searched with."""
    stored = values.astype(dtype, copy=False)  # exact: widened from it
    norms = row_norms(stored)
    return norms, scaled_to_unit(stored, norms, np.empty(stored.shape, np.float32))


def _sample_rows(source: EmbeddingSource, plan: IndexPlan) -> tuple[Ints, Floats]:
    """A seeded sample of clean rows, sorted by position: their positions and values."""
    rng = generator(plan.seed, Stream.INDEX_SAMPLE)
    drawn, values, _ = draw_clean_rows(source, plan.sample or source.n, rng)
    order = np.argsort(drawn, kind="stable")
    return drawn[order], values[order]


def _sample_database(
    search: NeighborSearch, positions: Ints, values: Floats, dtype: np.dtype[Any]
) -> _Database:
    """The sample's rows (float64, widened from ``dtype``) and the exact lists of the queries of
    ``search`` against them."""
    exact = NeighborSearch(
        search.queries, search.query_rows, search.k, [Block("base", len(search.query_rows))]
    )
    for start in range(0, len(positions), ADD_ROWS):
        part = values[start : start + ADD_ROWS]
        norms, unit = unit_rows_of(part, dtype)
        exact.add(CleanRows(positions[start : start + ADD_ROWS], part, norms, unit))
    exact.scratch.clear()

    def read(rows: Ints) -> Floats:
        return values[np.searchsorted(positions, rows)]

    return _Database(positions, read, exact, dtype)


def _file_database(source: EmbeddingSource, search: NeighborSearch, positions: Ints) -> _Database:
    def read(rows: Ints) -> Floats:
        return np.asarray(source.take(rows), dtype=np.float64)

    return _Database(positions, read, search, source.dtype)


def training_sample(source: EmbeddingSource, count: int, seed: int) -> Floats:
    """The clean rows an index built on the whole file is trained on: ``count`` drawn at random
    from their own stream of ``seed``, in draw order (faiss's k-means sees them in that order).
    (count, d) float64."""
    rng = generator(seed, Stream.INDEX_TRAIN)
    return draw_clean_rows(source, count, rng)[1]


def _train_on(
    index: Any, values: Floats, prepare: _Prepare, plan: IndexPlan, timings: dict[str, float]
) -> int:
    """Train ``index`` (when it needs it) on the first of ``values`` it asks for; the rows used."""
    count = min(_training_rows(index, len(values)), len(values))
    if not count:
        return 0
    mark = time.perf_counter()
    _train(index, prepare(values[:count]), plan)
    timings["index_train"] = time.perf_counter() - mark
    return count
