"""Neighbour comparisons: between the metrics of one file, and between two exports.

Both are built on the streamed kNN search: a seeded query sample against the whole file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from embaudit.array_types import Floats, Ints
from embaudit.draw import draw_clean_items, draw_clean_rows
from embaudit.engines import Engine, LocalEngine
from embaudit.errors import InputError
from embaudit.estimates import bounded_mean_standard_error
from embaudit.knn import EXTERNAL_ROW, Block, NeighborSearch
from embaudit.map_step import PassPlan, Searched
from embaudit.params import ParameterError
from embaudit.random_streams import Stream, generator
from embaudit.sources import EmbeddingSource

#: The k ladder of compare-knn (kept where the data has that many other rows).
K_LADDER = (1, 5, 10, 50, 100)
METRICS = ("cosine", "l2", "dot")
METRIC_PAIRS = (("cosine", "l2"), ("cosine", "dot"), ("l2", "dot"))
#: How many of the items whose neighbourhoods changed most are listed.
CHANGED_LIST = 10


def k_ladder(k: int, n: int) -> list[int]:
    """The ladder values (and k itself) that leave at least that many other rows."""
    return sorted({j for j in (*K_LADDER, k) if j <= max(n - 1, 1)})


def _check_k_fits(k: int, others: int, what: str) -> None:
    """k must leave something to compare: fewer neighbours than the other rows."""
    if k >= others:
        raise ParameterError(
            "k",
            f"must be smaller than the number of other {what} ({max(others, 0):,}), got {k}: "
            "otherwise every row is every row's neighbour",
            "-k",
        )


# One file: cosine vs L2 vs dot --------------------------------------------------------------


@dataclass(frozen=True)
class MetricPair:
    a: str
    b: str
    by_k: dict[int, float]
    top1_differs: float
    per_query: Floats  # overlap@k of each query

    def to_dict(self, k: int) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "overlap_at_k": self.by_k[k],
            "standard_error": bounded_mean_standard_error(self.per_query),  # over the queries
            "by_k": {str(j): v for j, v in self.by_k.items()},
            "top1_differs": self.top1_differs,
        }


@dataclass(frozen=True)
class MetricsComparison:
    k: int
    ladder: list[int]
    queries: int
    pairs: list[MetricPair]
    excluded_rows: int  # non-finite or zero rows, left out of the neighbour lists


def compare_metrics(
    source: EmbeddingSource,
    *,
    k: int,
    seed: int,
    queries: int,
    chunk_rows: int | None = None,
    on_rows: Callable[[int], None] | None = None,
    engine: Engine | None = None,
    queries_from: EmbeddingSource | None = None,
) -> MetricsComparison:
    """overlap@j of cosine, L2 and inner-product neighbours for the k ladder; with
    ``queries_from``, of queries drawn from that source (searched against every row, none of
    them their own)."""
    engine = engine or LocalEngine()
    own = queries_from is None
    _check_k_fits(k, source.n - 1 if own else source.n, "rows")
    ladder = k_ladder(k, source.n)
    rng = generator(seed, Stream.QUERIES)
    if queries_from is None:
        rows, values, _ = draw_clean_rows(source, queries, rng, engine.take)
    else:
        drawn, values, _ = draw_clean_rows(queries_from, queries, rng)
        rows = np.full(len(drawn), EXTERNAL_ROW, dtype=np.int64)
        if not len(rows):
            raise InputError(queries_from.path, "no finite, non-zero rows to query with")
    if not len(rows) or source.n < 2:
        raise InputError(source.path, "needs at least two finite, non-zero rows to compare")
    search = NeighborSearch(values, rows, ladder[-1], [Block("base", len(rows))])
    stats = engine.run(
        source, PassPlan((Searched(search),)), chunk_rows=chunk_rows, on_rows=on_rows
    ).stats
    assert stats is not None  # the plan asks for statistics
    lists = {metric: search.list_for(metric) for metric in METRICS}
    pairs = []
    for a, b in METRIC_PAIRS:
        by_k = {j: float(search.overlap(lists[a], lists[b], at=j).mean()) for j in ladder}
        top1 = float(np.mean(search.overlap(lists[a], lists[b], at=1) < 1))
        pairs.append(MetricPair(a, b, by_k, top1, search.overlap(lists[a], lists[b], at=k)))
    return MetricsComparison(k, ladder, len(rows), pairs, source.n - stats.n_clean)


# Two files: the same items in two exports ---------------------------------------------------


@dataclass(frozen=True)
class FilesComparison:
    k: int
    ladder: list[int]
    metric: str
    matched_by: str  # "id" or "row order"
    n_matched: int
    queries: int
    by_k: dict[int, float]
    per_query: Floats  # overlap@k of each query item
    query_ids: list[Any]
    excluded_rows: dict[str, int]  # per file: non-finite or zero rows, left out
    #: Matched by row order: the columns of both files that could name the items instead.
    id_candidates: tuple[str, ...] = ()

    @property
    def overlap_at_k(self) -> float:
        return self.by_k[self.k]

    def quantiles(self) -> dict[str, float]:
        points = {"min": 0.0, "p10": 0.1, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p90": 0.9}
        return {name: float(np.quantile(self.per_query, q)) for name, q in points.items()}

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields of a comparison (compare-knn files mode, EA601 metrics)."""
        return {
            "overlap_at_k": self.overlap_at_k,
            "standard_error": bounded_mean_standard_error(self.per_query),  # over the queried items
            "by_k": {str(j): v for j, v in self.by_k.items()},
            "metric": self.metric,
            "n_matched": self.n_matched,
            "matched_by": self.matched_by,
            "queries": self.queries,
            "quantiles": self.quantiles(),
            "changed_most": self.changed_most(),
            "excluded_rows": self.excluded_rows,
            "per_item_histogram": self.per_item_histogram(),
        }

    def per_item_histogram(self) -> dict[str, Any]:
        """Counts of the per-item overlap@k in ten bins of [0, 1]."""
        return {
            "edges": [j / 10 for j in range(11)],
            "counts": [int(c) for c in np.histogram(self.per_query, 10, (0.0, 1.0))[0]],
        }

    def changed_most(self) -> list[dict[str, Any]]:
        """The items whose neighbours changed most, lowest overlap first: only items whose
        neighbours changed (overlap below 1), at most CHANGED_LIST of them."""
        changed = np.flatnonzero(self.per_query < 1.0)
        order = changed[np.argsort(self.per_query[changed], kind="stable")][:CHANGED_LIST]
        return [{"id": self.query_ids[i], "overlap_at_k": float(self.per_query[i])} for i in order]


def _all_ids(source: EmbeddingSource) -> list[Any] | None:
    return source.ids(np.arange(source.n)) if source.id_column is not None else None


def match_items(old: EmbeddingSource, new: EmbeddingSource) -> tuple[Ints, Ints, list[Any], str]:
    """Positions of the same items in both files, and their ids.

    By id when both files have an id column, else by row order when the row counts agree.
    """
    old_ids, new_ids = _all_ids(old), _all_ids(new)
    if old_ids is not None and new_ids is not None:
        for source, ids in ((old, old_ids), (new, new_ids)):
            if len(set(ids)) != len(ids):
                raise InputError(source.path, f"id column {source.id_column!r} has duplicate ids")
        new_position = {item: i for i, item in enumerate(new_ids)}
        pairs = [(i, new_position[item]) for i, item in enumerate(old_ids) if item in new_position]
        if not pairs:
            raise InputError(new.path, f"no id in common with {old.path}")
        old_rows = np.array([p[0] for p in pairs], dtype=np.int64)
        new_rows = np.array([p[1] for p in pairs], dtype=np.int64)
        return old_rows, new_rows, [old_ids[i] for i in old_rows], "id"
    if old.n != new.n:
        raise InputError(
            new.path,
            f"has {new.n:,} rows but {old.path} has {old.n:,}, and the files have no common id "
            "column to match items by (pass --id-column)",
        )
    rows = np.arange(old.n, dtype=np.int64)
    return rows, rows, [int(r) for r in rows], "row order"


def compare_files(
    old: EmbeddingSource,
    new: EmbeddingSource,
    *,
    metric: str,
    k: int,
    seed: int,
    queries: int,
    chunk_rows: int | None = None,
    on_pass: Callable[[EmbeddingSource], Callable[[int], None] | None] | None = None,
    engine: Engine | None = None,
) -> FilesComparison:
    """Neighbour stability of the same items between two exports."""
    engine = engine or LocalEngine()
    # The dimensions may differ (a new model version): neighbours are compared by item.
    old_rows, new_rows, ids, matched_by = match_items(old, new)
    n_matched = len(old_rows)
    _check_k_fits(k, n_matched - 1, "matched items")
    ladder = k_ladder(k, n_matched)
    rng = generator(seed, Stream.QUERIES)
    draw = draw_clean_items(queries, rng, [old, new], [old_rows, new_rows], engine.take)
    chosen = draw.items
    if not len(chosen) or n_matched < 2:
        raise InputError(new.path, "needs at least two items that are clean in both files")
    neighbour_items, excluded = [], {}
    for label, source, rows, values in (
        ("old", old, old_rows, draw.values[0]),
        ("new", new, new_rows, draw.values[1]),
    ):
        item_of_row = np.full(source.n, -1, dtype=np.int64)
        item_of_row[rows] = np.arange(n_matched)
        search = NeighborSearch(values, rows[chosen], ladder[-1], [Block("b", len(chosen))])
        on_rows = on_pass(source) if on_pass is not None else None
        plan = PassPlan((Searched(search, np.flatnonzero(item_of_row >= 0)),))
        stats = engine.run(source, plan, chunk_rows=chunk_rows, on_rows=on_rows).stats
        assert stats is not None  # the plan asks for statistics
        excluded[label] = source.n - stats.n_clean
        found = search.list_for(metric).rows
        neighbour_items.append(np.where(found >= 0, item_of_row[np.maximum(found, 0)], -1))
    old_items, new_items = neighbour_items
    by_k: dict[int, float] = {}
    per_query = np.zeros(len(chosen))
    for j in ladder:
        overlaps = np.array(
            [_set_overlap(a[:j], b[:j]) for a, b in zip(old_items, new_items, strict=True)]
        )
        by_k[j] = float(overlaps.mean())
        if j == k:
            per_query = overlaps
    return FilesComparison(
        k=k,
        ladder=ladder,
        metric=metric,
        matched_by=matched_by,
        n_matched=n_matched,
        queries=len(chosen),
        by_k=by_k,
        per_query=per_query,
        query_ids=[ids[i] for i in chosen],
        excluded_rows=excluded,
        id_candidates=tuple(c for c in old.id_candidates if c in new.id_candidates)
        if matched_by == "row order"
        else (),
    )


def _set_overlap(a: Ints, b: Ints) -> float:
    a, b = a[a >= 0], b[b >= 0]
    size = max(len(a), len(b), 1)
    return len(np.intersect1d(a, b)) / size
