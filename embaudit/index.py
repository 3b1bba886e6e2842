"""Index readiness: build the faiss index a user will deploy, search the query sample with it,
and compare what it returns with the exact neighbours (EA701 ann-recall, EA702
index-vs-objective).

    spec ── index_factory ── train on a seeded sample (when the index needs training)
         ── add every clean row, chunk by chunk (or a seeded sample of rows)
         ── search the queries for k + 1 and drop the query's own row, at faiss's default search
            parameters and along the search knob (efSearch, nprobe)
         ── overlap with the exact lists of :class:`~embaudit.knn.NeighborSearch`: under the
            index's metric (its recall) and under the declared objective's metric

The exact lists are those the audit already has (the query sample against every clean row); when
the index is built on a sample, the same search runs on that sample instead, so both sides always
see the same rows. The overlap is the tie-aware overlap@k of :meth:`NeighborSearch.overlap`: a row
the index returns counts when its exact score reaches the k-th exact score up to float32 rounding,
so a duplicate of a true neighbour is never a miss.

faiss is imported on first use, with its import-time warnings kept inside; what it prints while
training (a clustering with fewer points than it recommends, say) is captured, never shown.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.draw import draw_clean_rows
from embaudit.knn import Block, NeighborList, NeighborSearch
from embaudit.model import TrainedWith
from embaudit.params import ParameterError
from embaudit.random_streams import Stream, generator
from embaudit.sources import EmbeddingSource
from embaudit.stats import CleanRows, clean_mask, row_norms

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Rows32 = npt.NDArray[np.float32]


class IndexMetric(StrEnum):
    """The metric an index ranks with: cosine is inner product on normalized rows."""

    COSINE = "cosine"
    L2 = "l2"
    IP = "ip"


#: The exact list (a :class:`NeighborSearch` metric) that each index metric approximates.
EXACT_METRIC = {IndexMetric.COSINE: "cosine", IndexMetric.L2: "l2", IndexMetric.IP: "dot"}

#: efSearch settings tried for HNSW indexes (faiss's default, 16, first). faiss searches with
#: max(efSearch, k + 1), so settings below k + 1 all behave as k + 1.
EF_SEARCH_LADDER = (16, 32, 64, 128, 256, 512)
#: Training rows: at least this many, else 40 per inverted list (faiss asks for 39), at most
#: TRAIN_MAX (float64 rows of d = 768 take 1.6 GB there). Fewer when the file has fewer.
TRAIN_MIN, TRAIN_PER_LIST, TRAIN_MAX = 2**16, 40, 2**18
#: Rows per faiss ``add`` call when the index is built from a sample held in memory.
ADD_ROWS = 16_384
#: The sweep stops once recall has risen by less than this over its last two settings.
PLATEAU = 1e-3


def default_metric(trained_with: TrainedWith) -> IndexMetric:
    """The index metric of a declared objective: its own, and cosine when unknown."""
    if trained_with.scores_with_dot:
        return IndexMetric.IP
    return IndexMetric.L2 if trained_with == TrainedWith.L2 else IndexMetric.COSINE


def objective_metric(trained_with: TrainedWith) -> str:
    """The exact list of the neighbours the objective wants (cosine when unknown)."""
    return EXACT_METRIC[default_metric(trained_with)]


@dataclass(frozen=True)
class IndexPlan:
    """What to build: a faiss ``index_factory`` string, its metric, and the rows it holds
    (``sample`` rows drawn with ``seed``; None: every clean row)."""

    spec: str
    metric: IndexMetric
    sample: int | None
    seed: int
    flag: str | None = None  # the command-line flag of the spec, for errors
    #: Settings of the deployed index that faiss's string does not carry: ``efConstruction``
    #: (set before rows are added) and the search knob's default (``efSearch``, ``nprobe``),
    #: with the name of what set them (``defaults_from``). Empty: faiss's defaults.
    build: tuple[tuple[str, int], ...] = ()
    search: tuple[tuple[str, int], ...] = ()
    defaults_from: str = "faiss's default"


@dataclass(frozen=True)
class SweepPoint:
    """One setting of the search knob and what the index returns with it."""

    param: str
    value: int
    recall: float  # mean overlap@k with the exact lists under the index's metric
    objective_overlap: float  # mean overlap@k with the exact lists under the objective's
    ms_per_query: float  # wall time of the batch of queries, per query


@dataclass(frozen=True)
class IndexMeasurement:
    """The index built and searched, and its per-query overlaps at faiss's defaults."""

    spec: str
    metric: IndexMetric
    objective: str  # the exact metric of the declared objective (cosine, l2, dot)
    k: int
    rows: int  # rows the index holds
    sampled: bool  # built on a sample of the clean rows (``--index-sample``)
    trained_on: int  # training rows (0: the index needs no training)
    lists: int | None  # inverted lists of an IVF index (faiss asks for 39 training rows each)
    knob: str | None  # efSearch, nprobe, or None (nothing to tune: flat, SQ, PQ)
    default_setting: int | None  # the knob at its default (faiss's, or the store's)
    recall: Floats  # per query, against the exact lists under the index's metric
    objective_overlap: Floats  # per query, against the exact lists under the objective's
    exact_agreement: Floats  # per query, exact index-metric lists against objective ones
    ms_per_query: float
    sweep: list[SweepPoint]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    defaults_from: str = "faiss's default"  # whose default search setting ``recall`` is at


# faiss, quietly ------------------------------------------------------------------------------

#: The variable an OpenBLAS library reads as it loads: the kernel to use instead of detecting one.
CORETYPE = "OPENBLAS_CORETYPE"
#: The x86-64 kernels every OpenBLAS since 0.3.11 accepts by name (faiss-cpu's wheels bundle
#: 0.3.15), and the newer kernels it would not know mapped to the nearest it does. An unknown
#: name is not a request to detect: OpenBLAS then falls back to its generic kernel.
_KNOWN_KERNELS = frozenset(
    (
        "Katmai Coppermine Northwood Prescott Banias Atom Core2 Penryn Dunnington Nehalem "
        "Athlon Opteron Opteron_SSE3 Barcelona Nano Sandybridge Bulldozer Piledriver Haswell "
        "Steamroller Excavator Zen SkylakeX Cooperlake"
    )
    .lower()
    .split()
)
_NEWER_KERNELS = {"sapphirerapids": "Cooperlake"}  # AVX-512 with BF16 both
#: One import of faiss at a time: it changes the environment and file descriptors 1 and 2.
_IMPORT_LOCK = threading.Lock()


def numpy_blas_kernel(libraries: list[dict[str, Any]] | None = None) -> str | None:
    """The kernel the OpenBLAS loaded before faiss (numpy's) chose for this CPU, from
    threadpoolctl's description of the loaded libraries (``libraries``, read now when None);
    None when that BLAS is not OpenBLAS or does not say."""
    if libraries is None:
        from threadpoolctl import threadpool_info

        try:
            libraries = threadpool_info()
        except Exception:  # a library it cannot read: no kernel to hand over
            return None
    for library in libraries:
        if library.get("internal_api") == "openblas" and library.get("architecture"):
            return str(library["architecture"])
    return None


def kernel_for_faiss(kernel: str | None) -> str | None:
    """The name to give faiss's OpenBLAS for numpy's ``kernel``: the same when every OpenBLAS
    faiss bundles knows it, the nearest older kernel for a newer one, else None (let it detect)."""
    if kernel is None:
        return None
    if kernel.lower() in _KNOWN_KERNELS:
        return kernel
    return _NEWER_KERNELS.get(kernel.lower())


@cache
def _faiss() -> Any:
    """The faiss module, loaded quietly and on the BLAS kernel numpy uses.

    Its SWIG bindings warn at import on recent Pythons: not the user's. The faiss-cpu wheels
    bundle an OpenBLAS older than numpy's (0.3.15 in faiss-cpu 1.15), which gives a CPU newer
    than itself a generic kernel: on a virtualized Xeon it chose Prescott (SSE3) where numpy's
    chose SkylakeX, and an ``--index IVF1024,Flat`` audit of 200,000 x 768 rows took 56 s
    instead of 28 s, its k-means 27.6 s instead of 7.0 s (benchmarks/bench_faiss_kernel.py).
    Unless the user chose a kernel (``OPENBLAS_CORETYPE``), faiss's OpenBLAS is told, for the
    time of the import, the one numpy's detected on the same CPU (:func:`kernel_for_faiss`: a
    name it knows); what the import prints is not shown."""
    with _IMPORT_LOCK:
        kernel = None
        if CORETYPE not in os.environ and "faiss" not in sys.modules:
            kernel = kernel_for_faiss(numpy_blas_kernel())
        if kernel is not None:
            os.environ[CORETYPE] = kernel
        try:
            with warnings.catch_warnings(), _native_output_captured():
                warnings.simplefilter("ignore")
                import faiss
        finally:
            if kernel is not None:
                os.environ.pop(CORETYPE, None)
    return faiss


@contextmanager
def _native_output_captured() -> Iterator[list[str]]:
    """Send what native code prints (file descriptors 1 and 2) to a temporary file for the
    duration; yields a list that receives the captured text. faiss prints warnings with
    fprintf, which no Python setting silences. Where a descriptor is closed (a daemon's), there
    is nothing to keep clean: nothing is captured."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    captured: list[str] = []
    saved: list[int] = []
    try:
        saved += [os.dup(1)]
        saved += [os.dup(2)]
    except OSError:
        for descriptor in saved:
            os.close(descriptor)
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield captured
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for descriptor in saved:
                os.close(descriptor)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


def _faiss_problem(error: Exception) -> str:
    """The useful part of a faiss error: its message without the C++ function and source line
    ("could not parse index string Foo", "'d % M == 0' failed: ...")."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = re.sub(r"^Error in .*? at \S+:\d+: ", "", text)
    return text.removeprefix("Error: ")


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


# The search knob -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Knob:
    name: str  # the faiss ParameterSpace name
    default: int
    ladder: tuple[int, ...]


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


def _knob(index: Any) -> _Knob | None:
    """The search parameter that trades recall for time: nprobe of an inverted file (powers of
    two up to the number of lists), efSearch of an HNSW graph; None for the others."""
    faiss = _faiss()
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        nlist = int(ivf.nlist)
        ladder = [2**i for i in range(nlist.bit_length()) if 2**i <= nlist]
        if ladder[-1] != nlist:
            ladder.append(nlist)
        return _Knob("nprobe", int(ivf.nprobe), tuple(ladder))
    hnsw = _hnsw_of(index)
    if hnsw is not None:
        return _Knob("efSearch", int(hnsw.hnsw.efSearch), EF_SEARCH_LADDER)
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


# Building ------------------------------------------------------------------------------------


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


def _sample_rows(source: EmbeddingSource, plan: IndexPlan) -> tuple[Ints, Floats]:
    """A seeded sample of clean rows, sorted by position: their positions and values."""
    rng = generator(plan.seed, Stream.INDEX_SAMPLE)
    drawn, values, _ = draw_clean_rows(source, plan.sample or source.n, rng)
    order = np.argsort(drawn, kind="stable")
    return drawn[order], values[order]


def _sample_database(search: NeighborSearch, positions: Ints, values: Floats) -> _Database:
    """The sample's rows and the exact lists of the queries of ``search`` against them."""
    exact = NeighborSearch(
        search.queries, search.query_rows, search.k, [Block("base", len(search.query_rows))]
    )
    for start in range(0, len(positions), ADD_ROWS):
        part = values[start : start + ADD_ROWS]
        norms = row_norms(part)
        unit = (part / norms[:, None]).astype(np.float32)
        exact.add(CleanRows(positions[start : start + ADD_ROWS], part, norms, unit))

    def read(rows: Ints) -> Floats:
        return values[np.searchsorted(positions, rows)]

    return _Database(positions, read, exact)


def _file_database(source: EmbeddingSource, search: NeighborSearch, positions: Ints) -> _Database:
    def read(rows: Ints) -> Floats:
        return np.asarray(source.take(rows), dtype=np.float64)

    return _Database(positions, read, search)


# Searching -----------------------------------------------------------------------------------


def _search(index: Any, queries: Rows32, query_rows: Ints, k: int, positions: Ints) -> Ints:
    """Row positions of the index's k nearest rows per query, the query's own row dropped (it
    is in the index): k + 1 are asked for, and the last dropped when the own row is absent.
    -1 where the index returned fewer."""
    _, labels = index.search(queries, k + 1)
    rows = np.where(labels >= 0, positions[np.clip(labels, 0, None)], -1)
    keep = rows != query_rows[:, None]
    keep[keep.all(axis=1), -1] = False
    return rows[keep].reshape(len(queries), k)


class _Scorer:
    """Scores the index's lists as the exact search scores its own: the features (cosine, norm)
    of every row returned, each row read back once whatever the settings that return it."""

    def __init__(self, database: _Database) -> None:
        self.database, self.search = database, database.search
        self.known = np.empty(0, np.int64)  # sorted positions read so far
        self.unit = np.empty((0, self.search.d), dtype=np.float32)
        self.norms = np.empty(0)

    def _read(self, rows: Ints) -> None:
        new = np.setdiff1d(rows[rows >= 0], self.known)
        if not len(new):
            return
        units, norms = [self.unit], [self.norms]
        for start in range(0, len(new), ADD_ROWS):
            values = self.database.read(new[start : start + ADD_ROWS])
            part_norms = row_norms(values)
            norms.append(part_norms)
            # As the pass computes its unit rows: float64 division, then float32.
            units.append((values / part_norms[:, None]).astype(np.float32))
        known = np.concatenate([self.known, new])
        order = np.argsort(known, kind="stable")
        self.known = known[order]
        self.unit, self.norms = np.concatenate(units)[order], np.concatenate(norms)[order]

    def as_list(self, rows: Ints) -> NeighborList:
        """``rows`` (queries, k; -1 where absent) as a list the exact search can overlap."""
        self._read(rows)
        search = self.search
        features = np.full((*rows.shape, search.n_features), np.nan)
        valid = rows >= 0
        at = np.searchsorted(self.known, rows[valid])
        query = np.nonzero(valid)[0]
        directions = search.stacked[: search.blocks[0].n_queries]  # float32 unit queries
        features[valid, 0] = np.einsum("ij,ij->i", directions[query], self.unit[at])
        features[valid, 1] = self.norms[at]
        return NeighborList("index", 0, rows, np.full(rows.shape, np.nan), features)


@dataclass(frozen=True)
class _Queries:
    """The query sample as the index searches it, and the exact lists it is compared with."""

    rows: Rows32  # prepared for the index
    positions: Ints  # their row positions
    k: int
    index_list: NeighborList  # exact, under the index's metric
    objective_list: NeighborList  # exact, under the objective's metric

    def search(self, index: Any, database: _Database) -> tuple[Ints, float]:
        """The index's rows per query, and the wall time per query in milliseconds."""
        started = time.perf_counter()
        rows = _search(index, self.rows, self.positions, self.k, database.positions)
        return rows, (time.perf_counter() - started) * 1000 / max(len(self.rows), 1)


def _sweep(
    index: Any, knob: _Knob | None, queries: _Queries, database: _Database, scorer: _Scorer
) -> list[SweepPoint]:
    """Recall and time along the knob's ladder, until every exact neighbour is found or recall
    stops rising (a quantizer's loss that no setting recovers)."""
    if knob is None:
        return []
    space = _faiss().ParameterSpace()
    exact = database.search
    points: list[SweepPoint] = []
    for value in knob.ladder:
        space.set_index_parameter(index, knob.name, float(value))
        rows, ms = queries.search(index, database)
        scored = scorer.as_list(rows)
        points.append(
            SweepPoint(
                param=knob.name,
                value=value,
                recall=float(exact.overlap(queries.index_list, scored).mean()),
                objective_overlap=float(exact.overlap(queries.objective_list, scored).mean()),
                ms_per_query=ms,
            )
        )
        recalls = [point.recall for point in points]
        if recalls[-1] >= 1.0 or (len(recalls) >= 3 and recalls[-1] - recalls[-3] < PLATEAU):
            break
    return points


@dataclass(frozen=True)
class BuiltIndex:
    """An index built on a source, and the rows it holds: what a larger query sample searches
    again (the audit's later rounds) without building it again."""

    plan: IndexPlan
    index: Any  # the faiss index
    source: EmbeddingSource
    positions: Ints  # row position of each index entry, in index order
    prepare: _Prepare  # rows as the index took them (queries are prepared the same way)
    trained_on: int  # training rows (0: the index needs no training)
    timings: dict[str, float]  # seconds per stage of the build
    knob: _Knob | None  # the search knob at its default (faiss's, or the deployed index's)
    sample: Floats | None = None  # the rows of an index built on a sample, in position order

    def database(self, search: NeighborSearch) -> _Database:
        """The rows of the index, with the exact lists of ``search``'s queries against them."""
        if self.sample is not None:
            return _sample_database(search, self.positions, self.sample)
        return _file_database(self.source, search, self.positions)

    def search(self, search: NeighborSearch, objective: str) -> IndexMeasurement:
        """Search the queries of ``search`` and compare with its exact lists (``objective``:
        the exact metric of the declared objective)."""
        measured = _compare(self, self.database(search), objective)
        return replace(
            measured, trained_on=self.trained_on, timings=self.timings | measured.timings
        )


def build_index(
    source: EmbeddingSource,
    plan: IndexPlan,
    pow2_scale: float,
    *,
    chunk_rows: int | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> BuiltIndex:
    """Build ``plan``'s index on ``source`` (every clean row, or a sample); ``pow2_scale`` is
    the exact search's power-of-two row scale, ``on_rows`` is told of the rows added."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    index = new_index(source.d, plan)
    prepare = _Prepare(plan.metric, pow2_scale)
    sample: Floats | None = None
    if plan.sample is not None:
        positions, sample = _sample_rows(source, plan)
        timings["index_sample"] = time.perf_counter() - started
        trained_on = _train_on(index, sample, prepare, plan, timings)
        mark = time.perf_counter()
        _add_sample(index, sample, prepare, on_rows)
    else:
        count = _training_rows(index, source.n)
        train_values = training_sample(source, count, plan.seed) if count else np.empty((0, 0))
        trained_on = _train_on(index, train_values, prepare, plan, timings)
        del train_values
        mark = time.perf_counter()
        positions = _add_all(index, source, prepare, chunk_rows, on_rows)
    timings["index_add"] = time.perf_counter() - mark
    timings["index_build"] = time.perf_counter() - started
    space = _faiss().ParameterSpace()
    for name, value in plan.search:  # the deployed index's default search setting
        space.set_index_parameter(index, name, float(value))
    knob = _knob(index)
    return BuiltIndex(plan, index, source, positions, prepare, trained_on, timings, knob, sample)


def measure_index(
    source: EmbeddingSource,
    search: NeighborSearch,
    plan: IndexPlan,
    objective: str,
    *,
    chunk_rows: int | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> IndexMeasurement:
    """Build ``plan``'s index on ``source`` (every clean row, or a sample), search the queries
    of ``search`` with it, and compare with the exact lists. ``objective`` is the exact metric
    of the declared objective; ``on_rows`` is told of the rows added."""
    built = build_index(source, plan, search.pow2_scale, chunk_rows=chunk_rows, on_rows=on_rows)
    return built.search(search, objective)


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


def _compare(built: BuiltIndex, database: _Database, objective: str) -> IndexMeasurement:
    """Search the queries at the defaults and along the knob; overlap with the exact lists."""
    started = time.perf_counter()
    index, plan, exact = built.index, built.plan, database.search
    queries = _Queries(
        rows=built.prepare(exact.queries),
        positions=np.asarray(exact.query_rows, dtype=np.int64),
        k=exact.k,
        index_list=exact.list_for(EXACT_METRIC[plan.metric]),
        objective_list=exact.list_for(objective),
    )
    knob = built.knob
    if knob is not None:  # a search before this one left the knob where its sweep ended
        _faiss().ParameterSpace().set_index_parameter(index, knob.name, float(knob.default))
    scorer = _Scorer(database)
    default_rows, default_ms = queries.search(index, database)
    default_list = scorer.as_list(default_rows)
    sweep = _sweep(index, knob, queries, database, scorer)
    return IndexMeasurement(
        spec=plan.spec,
        metric=plan.metric,
        objective=objective,
        k=exact.k,
        rows=len(database.positions),
        sampled=plan.sample is not None,
        trained_on=0,
        lists=_lists(index),
        knob=knob.name if knob else None,
        default_setting=knob.default if knob else None,
        recall=exact.overlap(queries.index_list, default_list),
        objective_overlap=exact.overlap(queries.objective_list, default_list),
        exact_agreement=exact.overlap(queries.objective_list, queries.index_list),
        ms_per_query=default_ms,
        sweep=sweep,
        timings={"index_search": time.perf_counter() - started},
        defaults_from=plan.defaults_from if plan.search else "faiss's default",
    )
