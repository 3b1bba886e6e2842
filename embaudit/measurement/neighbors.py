"""What the checks read of the neighbour searches: per-query overlaps of the cosine, L2 and
inner-product lists (EA401, EA402), of the truncations' lists (EA303) and of the gauges' lists
(EA301, EA302), and what each query sees beyond its list: its nearest other row and its mean
cosine (EA005, EA206, EA503)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit import geometry
from embaudit.array_types import Floats, Ints
from embaudit.index import IndexMeasurement
from embaudit.knn import NeighborList, NeighborSearch
from embaudit.measurement.gauges import CANONICAL_BLOCK, GAUGE_BLOCK, TRUNCATE_BLOCK
from embaudit.measurement.occurrence import Occurrence, occurrence
from embaudit.sources import EmbeddingSource
from embaudit.stats import ScanStats


@dataclass(frozen=True)
class Neighbors:
    k: int  # neighbours per query that exist (k, or fewer on tiny inputs)
    queries: int
    gauge_queries: int  # the random gauges' queries (EA302's canonical gauge: len(canonical))
    query_rows: Ints  # row positions of the queries; the gauge blocks use the first ones
    overlap: dict[tuple[str, str], Floats]  # per-query overlap@k of metric pairs
    top1_differs: dict[tuple[str, str], float]
    by_k: dict[tuple[str, str], dict[int, float]]  # mean overlap@j for j = 1, 5, ..., k
    gauge: dict[float, list[Floats]]  # level -> per-draw, per-query overlap@k
    canonical: Floats  # per-query overlap@k against the column-standardised data
    canonical_scale: Floats = field(repr=False)  # the standardising D
    #: Per draw, the per-query overlap@k against the same gauge jittered by its own estimation
    #: error (:func:`scale_jitter`): how far one more such error moves the value, which is how
    #: far the estimated scale may have moved it from that of the exact one (EA302's error).
    canonical_jitter: list[Floats] = field(default_factory=list)
    #: The corpus rows the canonical gauge's column scales are estimated on (none in a later
    #: round: its scales are those of every clean row, from the first pass's statistics).
    canonical_rows: Ints = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    truncation: dict[int, Floats] = field(default_factory=dict)  # M -> per-query overlap@k
    #: How many clean rows the gauge queries searched (EA301, EA302) when they are a random
    #: draw of the corpus's (:func:`~embaudit.measurement.sampling.gauge_corpus`); None when
    #: they searched every row.
    gauge_rows_searched: int | None = None
    hygiene: QueryHygiene | None = None  # nearest and mean cosines per query (EA005, EA206, EA503)
    #: The base search, whose lists the checks read (in a round of the gauges alone, the one
    #: its gauge queries' own lists came from: the next round reads them there too).
    search: NeighborSearch | None = field(default=None, repr=False, compare=False)
    #: The last search of the random gauges on the gauge rows (EA301, EA302 read the overlaps
    #: of its lists). In a round that extended the previous overlaps, the search of what it
    #: added: its queries are the new ones first, then the reused ones
    #: (:mod:`embaudit.measurement.extension`).
    gauge_search: NeighborSearch | None = field(default=None, repr=False, compare=False)
    index: IndexMeasurement | None = None  # the index of ``--index``, searched (EA701, EA702)


@dataclass(frozen=True)
class External:
    """Queries from another source: where they come from, their positions there, and how many
    corpus rows follow them in the search (EA503's floor)."""

    source: EmbeddingSource
    rows: Ints
    floor_queries: int
    population: int  # the query file's clean rows the queries are drawn from (at least)


@dataclass(frozen=True)
class QueryHygiene:
    """What each query sees of the corpus beyond its neighbour list: the cosine of its nearest
    other row, whether that row is an exact copy (EA003's, not a near-duplicate), and its mean
    cosine to every other clean row (exact, from the pass's sum of unit rows)."""

    nearest_cosine: Floats  # (queries,); -inf when the corpus has no other row
    nearest_row: Ints  # (queries,); -1 when none
    exact_copy: npt.NDArray[np.bool_]  # a bit-identical copy is in the list (EA003's duplicate)
    mean_cosine: Floats  # (queries,) mean cosine to the other clean rows
    #: Names of the queries and corpus rows the examples show: ids where the source has an id
    #: column, else row positions (in the query file for external queries).
    query_names: dict[int, Any] = field(default_factory=dict)
    row_names: dict[int, Any] = field(default_factory=dict)
    external: bool = False  # the queries come from --query-file
    floor_cosine: Floats | None = None  # nearest cosines of corpus rows (with a query file)
    #: How the queries' results spread over the corpus: of every corpus row as a query (EA501;
    #: with a query file, from the corpus rows searched after its queries) and of the query
    #: file's rows (EA504).
    occurrence: Occurrence | None = None
    query_occurrence: Occurrence | None = None
    #: Scores closer than this are ties (float32 rounding, on the cosine scale).
    tie_tolerance: float = 0.0
    #: With a query file: the same of the corpus rows searched after the queries.
    corpus: QueryHygiene | None = None
    #: The cosine and row of the nearest member of each list that is not a bit-identical copy
    #: of the query (EA005's); -inf and -1 when the list holds copies only.
    near_cosine: Floats = field(default_factory=lambda: np.zeros(0))
    near_row: Ints = field(default_factory=lambda: np.zeros(0, np.int64))
    #: Each query's row position (in the query file for external queries): ``--rows-out``.
    query_positions: Ints = field(default_factory=lambda: np.zeros(0, np.int64))

    def query_name(self, query: int) -> Any:
        return self.query_names.get(query, query)

    def row_name(self, row: int) -> Any:
        return self.row_names.get(row, row)


#: Example rows whose ids the report names: the nearest pairs (EA005), the farthest queries
#: (EA503).
EXAMPLES = 5


def neighbor_lists(
    search: NeighborSearch | None,
    gauge_search: NeighborSearch | None,
    gauges: list[tuple[float, Floats]],
    truncate: tuple[int, ...],
    stats: ScanStats,
    source: EmbeddingSource,
    external: External | None = None,
    canonical_search: NeighborSearch | None = None,
    references: NeighborSearch | None = None,
) -> Neighbors:
    """What the checks read of the searches: the metric overlaps, truncations and hygiene of
    every query (``search``; None in a round for the gauges alone) and the gauges' overlaps
    (``gauge_search``; None when no gauge was searched), the canonical gauge's from
    ``canonical_search`` when it was searched apart. ``references``: the base search whose
    cosine lists are the gauge queries' own, where a gauge search's base block is unlisted
    (this measurement's ``search``, or the previous measurement's in a round)."""
    metrics = _MetricOverlaps()
    hygiene = None
    if search is not None:
        full = search
        if external is not None:
            search = search.head(len(external.rows))
        metrics = _metric_overlaps(search, truncate)
        hygiene = _hygiene(search, search.list_for("cosine"), stats, source, external, full)
    gauged = _GaugeOverlaps()
    if gauge_search is not None:
        gauged = _gauge_overlaps(gauge_search, gauges, references)
    if canonical_search is not None:  # searched apart from the random gauges (a round's)
        apart = _gauge_overlaps(canonical_search, [], references)
        gauged = replace(gauged, canonical=apart.canonical, jitter=apart.jitter)
    searched = next(s for s in (search, gauge_search, canonical_search) if s is not None)
    return Neighbors(
        k=min(searched.k, max(stats.n_clean - 1, 0)),
        queries=searched.blocks[0].n_queries,
        gauge_queries=gauged.queries,
        query_rows=np.asarray(searched.query_rows, dtype=np.int64),
        overlap=metrics.overlap,
        top1_differs=metrics.top1_differs,
        by_k=metrics.by_k,
        gauge=gauged.gauge,
        canonical=gauged.canonical,
        canonical_scale=np.zeros(searched.d),  # the caller's (the scale the rows were drawn for)
        canonical_jitter=gauged.jitter,
        truncation=metrics.truncation,
        hygiene=hygiene,
        search=search,
        gauge_search=gauge_search,
    )


#: The metric pairs whose lists the checks compare (EA401, EA402, and L2 against the dot).
METRIC_PAIRS = (("cosine", "l2"), ("cosine", "dot"), ("l2", "dot"))


@dataclass(frozen=True)
class _MetricOverlaps:
    overlap: dict[tuple[str, str], Floats] = field(default_factory=dict)
    top1_differs: dict[tuple[str, str], float] = field(default_factory=dict)
    by_k: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)
    truncation: dict[int, Floats] = field(default_factory=dict)


def _metric_overlaps(search: NeighborSearch, truncate: tuple[int, ...]) -> _MetricOverlaps:
    """Per-query overlaps of the metrics' lists, at k, at 1 and along a ladder of list sizes,
    and of the truncations' cosine lists against the full cosine lists."""
    lists: dict[str, NeighborList] = {m: search.list_for(m) for m in search.metrics}
    ladder = sorted({j for j in (1, 5, 10, 50, 100) if j < search.k} | {search.k})
    truncation: dict[int, Floats] = {}
    # The truncations' blocks, in the order of ``truncate``, when this search has them.
    blocks = [b for b, block in enumerate(search.blocks) if block.name.startswith(TRUNCATE_BLOCK)]
    if blocks:
        for m, b in zip(truncate, blocks, strict=True):
            truncation[m] = search.overlap(lists["cosine"], search.list_for("cosine", b))
    return _MetricOverlaps(
        overlap={(a, b): search.overlap(lists[a], lists[b]) for a, b in METRIC_PAIRS},
        top1_differs={
            (a, b): float(np.mean(search.overlap(lists[a], lists[b], at=1) < 1))
            for a, b in METRIC_PAIRS
        },
        by_k={
            (a, b): {j: float(search.overlap(lists[a], lists[b], at=j).mean()) for j in ladder}
            for a, b in METRIC_PAIRS
        },
        truncation=truncation,
    )


@dataclass(frozen=True)
class _GaugeOverlaps:
    queries: int = 0  # the random gauges' queries (the canonical gauge's: len(canonical))
    gauge: dict[float, list[Floats]] = field(default_factory=dict)
    canonical: Floats = field(default_factory=lambda: np.zeros(0))
    jitter: list[Floats] = field(default_factory=list)


def _gauge_overlaps(
    gauge_search: NeighborSearch,
    gauges: list[tuple[float, Floats]],
    references: NeighborSearch | None,
) -> _GaugeOverlaps:
    """Each gauge block's per-query overlap against the gauge queries' own cosine lists (the
    gauge search's, or, when its base block is unlisted, those of the same queries in
    ``references``), in the order the blocks were made: the random gauges in the order of
    ``gauges``, the canonical gauge and its jitters."""
    gauge: dict[float, list[Floats]] = {}
    canonical: Floats = np.zeros(0)
    jitter: list[Floats] = []
    reference = _own_lists(gauge_search, references)
    levels = iter(s for s, _ in gauges)
    for b, block in enumerate(gauge_search.blocks[1:], start=1):
        shared = gauge_search.overlap(reference, gauge_search.list_for("cosine", b))
        if block.name.startswith(GAUGE_BLOCK):
            gauge.setdefault(next(levels), []).append(shared)
        elif block.name == CANONICAL_BLOCK:
            canonical = shared
        else:
            jitter.append(shared)
    random = [
        block.n_queries for block in gauge_search.blocks if block.name.startswith(GAUGE_BLOCK)
    ]
    return _GaugeOverlaps(max(random, default=0), gauge, canonical, jitter)


def _own_lists(gauge_search: NeighborSearch, references: NeighborSearch | None) -> NeighborList:
    """The cosine lists of the gauge search's queries: its own, or, when its base block is
    unlisted, those of the same queries in ``references`` (over the same rows), in the gauge
    search's order of them."""
    if gauge_search.blocks[0].listed:
        return gauge_search.list_for("cosine")
    own = (gauge_search.queries, gauge_search.query_rows, gauge_search.k)
    at = references.query_indices(*own) if references is not None else None
    if references is None or at is None:
        # a plan's bug: the unlisted block's lists must be those of the same queries
        raise RuntimeError("an unlisted base block without the lists of its queries")
    return references.list_for("cosine").of_queries(at)


def _hygiene(
    search: NeighborSearch,
    cosine: NeighborList,
    stats: ScanStats,
    source: EmbeddingSource,
    external: External | None,
    full: NeighborSearch,
) -> QueryHygiene:
    """Each query's nearest other row and mean cosine to the other clean rows (its own row,
    when it is a corpus row, left out of the mean); with a query file, the same of the corpus
    rows searched after the queries (``corpus``: EA005 measures the corpus, EA503 its floor)."""
    count = cosine.n_queries
    rows = np.asarray(full.list_for("cosine").rows)
    if external is None:
        own = _nearest(full, slice(0, count), np.asarray(search.query_rows)[:count], source, stats)
        return replace(own, occurrence=occurrence(rows[:count], stats.n_clean, stats.n_clean))
    queries = _nearest(full, slice(0, count), external.rows, source, stats, external.source)
    after = slice(count, full.blocks[0].n_queries)
    corpus = _nearest(full, after, np.asarray(full.query_rows)[after], source, stats)
    floor = corpus.nearest_cosine[np.isfinite(corpus.nearest_cosine)]
    return replace(
        queries,
        external=True,
        floor_cosine=floor,
        corpus=corpus,
        occurrence=occurrence(rows[after], stats.n_clean, stats.n_clean),
        query_occurrence=occurrence(rows[:count], external.population, stats.n_clean),
    )


def _nearest(
    search: NeighborSearch,
    queries: slice,
    query_positions: Ints,
    source: EmbeddingSource,
    stats: ScanStats,
    query_source: EmbeddingSource | None = None,
) -> QueryHygiene:
    """The nearest other row, the nearest one that is not a bit-identical copy (EA005's), and
    the mean cosine to the other clean rows, of the search's ``queries`` (at
    ``query_positions`` of ``query_source``, default the corpus ``source``)."""
    query_source = query_source or source
    cosine = search.list_for("cosine")
    scores = np.asarray(cosine.scores[queries], dtype=np.float64)
    members = np.asarray(cosine.rows[queries], dtype=np.int64)
    nearest, rows = scores[:, 0], members[:, 0]
    identical = _copies(search, queries, query_positions, query_source, source)
    # The first member of each list that is not a copy of the query: whatever order ties put
    # an exact copy and a near one in, the near one is found (-inf, row -1, when the list
    # holds copies only).
    other = (members >= 0) & ~identical
    first = np.argmax(other, axis=1)
    has = other[np.arange(len(first)), first]
    near_cosine = np.where(has, scores[np.arange(len(first)), first], -np.inf)
    near_row = np.where(has, members[np.arange(len(first)), first], -1)
    exact = np.asarray(identical.any(axis=1))
    unit = geometry.unit_rows(np.asarray(search.queries[queries], dtype=np.float64))
    own = (np.asarray(search.query_rows)[queries] >= 0).astype(np.float64)
    others = np.maximum(stats.n_clean - own, 1)
    mean_cosine = np.clip((unit @ stats.unit_sum - own) / others, -1.0, 1.0)
    # The examples: the nearest pairs (EA005) and the farthest queries (EA503).
    found = rows >= 0
    near = np.flatnonzero(has)
    near = near[np.argsort(-near_cosine[near], kind="stable")][:EXAMPLES]
    far = np.flatnonzero(found)[np.argsort(nearest[found], kind="stable")][:EXAMPLES]
    shown = np.unique(np.concatenate([near, far]))
    names = names_of(query_source, query_positions[shown])
    query_names = dict(zip(shown.tolist(), names, strict=True))
    corpus_rows = np.unique(near_row[near])
    row_names = dict(zip(corpus_rows.tolist(), names_of(source, corpus_rows), strict=True))
    return QueryHygiene(
        nearest,
        rows,
        exact,
        mean_cosine,
        query_names,
        row_names,
        tie_tolerance=search.tie_tolerance,
        near_cosine=near_cosine,
        near_row=near_row,
        query_positions=np.asarray(query_positions, dtype=np.int64),
    )


def _copies(
    search: NeighborSearch,
    queries: slice,
    query_positions: Ints,
    query_source: EmbeddingSource,
    source: EmbeddingSource,
) -> npt.NDArray[np.bool_]:
    """(queries, k): whether each member of the queries' cosine lists is a bit-identical copy
    of the query (EA003's duplicates, which compare stored values). A copy within float
    tolerance (cosine 1 and the same norm up to rounding) is a candidate, read and compared."""
    cosine = search.list_for("cosine")
    members = np.asarray(cosine.rows[queries], dtype=np.int64)
    scores = np.asarray(cosine.scores[queries], dtype=np.float64)
    ratio = cosine.features[queries, :, 1] / search.query_norm[queries][:, None]
    tolerance = search.tie_tolerance
    with np.errstate(invalid="ignore"):
        candidate = (members >= 0) & (scores >= 1 - tolerance) & (np.abs(ratio - 1) <= tolerance)
    query, member = np.nonzero(candidate)
    identical = np.zeros(members.shape, dtype=bool)
    identical[query, member] = _identical(
        _taken(query_source, query_positions[query]), _taken(source, members[query, member])
    )
    return identical


def _taken(source: EmbeddingSource, positions: Ints) -> npt.NDArray[np.floating[Any]]:
    """The rows of ``source`` at ``positions``, in that order (read in file order)."""
    if not len(positions):
        return np.empty((0, source.d), dtype=source.dtype)
    order = np.argsort(positions, kind="stable")
    values = np.empty((len(positions), source.d), dtype=source.dtype)
    values[order] = source.take(positions[order])
    return values


def _identical(
    first: npt.NDArray[np.floating[Any]], second: npt.NDArray[np.floating[Any]]
) -> npt.NDArray[np.bool_]:
    """Per pair of rows, whether their stored values are equal (-0.0 equal to 0.0, as EA003
    compares them), whatever their dtypes."""
    if not len(first):
        return np.zeros(0, dtype=bool)
    return np.asarray((first == second).all(axis=1))


def names_of(source: EmbeddingSource, rows: Ints) -> list[Any]:
    """The ids of ``rows`` when the source has an id column, else the row positions."""
    ids = source.ids(rows) if source.id_column is not None and len(rows) else None
    return list(ids) if ids is not None else [int(r) for r in rows]
