"""The exact neighbour search of a query sample (:class:`NeighborSearch`), its merge across
fragments, and its tie-aware overlap measures.

A search stacks the query blocks (the base queries, and each diagonal gauge's) and keeps one
running top-k list per metric and block; the chunks stream through the selection of
:mod:`embaudit.knn.select`. Every neighbour keeps its features, so that any list's members can be
scored under any other list's metric: :meth:`NeighborSearch.overlap` counts a neighbour of list B
as shared with list A when A would have ranked it within A's top k up to float32 rounding.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from embaudit.geometry import pow2_scale, unit_rows
from embaudit.knn.products import Block, ratio
from embaudit.knn.select import _NORM, _U32, TIE_ULPS, NeighborList, TopKSelection
from embaudit.stats import Scratch, row_norms

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

#: The row position of a query that is not a row of the database (``--query-file``): never
#: a row, so nothing is excluded as its own, and not -1, which marks a missing neighbour.
EXTERNAL_ROW = -2

#: The base block's metrics, in the order of its lists.
METRICS = ("cosine", "l2", "dot")


@dataclass
class NeighborSearch(TopKSelection):
    """Streams database chunks through a fixed query sample; see :mod:`embaudit.knn`.

    ``queries`` (Q, d) are clean rows of the database at global positions ``query_rows``; each
    block uses the first ``n_queries`` of them. ``k`` neighbours are kept per query, the query
    itself (by row position) excluded. ``metrics`` are the base block's lists (every gauge
    block has its cosine list): a search without "l2" and "dot" takes each chunk's rows in the
    order they come (only those lists' bounds need tiles of similar norms).
    """

    queries: Floats
    query_rows: Ints
    k: int
    blocks: list[Block]
    metrics: tuple[str, ...] = METRICS
    lists: list[NeighborList] = field(init=False)

    def __post_init__(self) -> None:
        queries = np.asarray(self.queries, dtype=np.float64)
        self.d = queries.shape[1]
        self.query_norm = row_norms(queries)
        # L2 and dot scores are kept relative to the query norm (a positive constant per query,
        # so rankings are unchanged): dot/|q| and -L2^2/|q|^2, with r = |x|/|q|. The float32
        # selection scores use norms times one power of two, so values near 1e30 or 1e-30
        # neither overflow nor underflow.
        self.pow2_scale = pow2_scale(self.query_norm)
        self._stack(unit_rows(queries))
        self.n_features = 1 + len(self.blocks)
        self.tie_tolerance = TIE_ULPS * np.sqrt(self.d) * _U32
        base = self.blocks[0].n_queries
        if "cosine" not in self.metrics or not set(self.metrics) <= set(METRICS):
            raise ValueError(f"metrics must hold cosine and be among {METRICS}: {self.metrics}")
        plan = [(m, 0, base) for m in METRICS if m in self.metrics and self.blocks[0].listed]
        plan += [("cosine", b, block.n_queries) for b, block in enumerate(self.blocks) if b]
        self.lists = [
            NeighborList(
                metric,
                b,
                np.full((m, self.k), -1, dtype=np.int64),
                np.full((m, self.k), -np.inf),
                np.full((m, self.k, self.n_features), np.nan),
            )
            for metric, b, m in plan
        ]
        self._gauge_blocks = [b for b, block in enumerate(self.blocks) if block.scale is not None]
        self._gauge_squares = np.stack(
            [np.asarray(self.blocks[b].scale, dtype=np.float64) ** 2 for b in self._gauge_blocks]
            or [np.zeros(self.d)],
            axis=1,
        ).astype(np.float32)
        self._row_order = np.argsort(self.query_rows, kind="stable")
        self._sorted_rows = np.asarray(self.query_rows)[self._row_order]
        self._by_norm = self.metrics != ("cosine",)
        self.scratch = Scratch()
        self._groups = self._grouped()
        self.shared_bars = None

    def _stack(self, directions: Floats) -> None:
        """The stacked query rows of the listed blocks (``stacked``, each block's ``offsets``),
        the unlisted block's rows apart (``unlisted``), and each block's ``query_factor``."""
        if (
            any(not block.listed for block in self.blocks[1:])
            or (not self.blocks[0].listed and self.metrics != ("cosine",))
            or not any(block.listed for block in self.blocks)
        ):
            raise ValueError("only the base block of a cosine search of gauges may be unlisted")
        # Each stacked row is a unit vector, so every product is a bounded cosine: base rows are
        # q/|q|, gauge rows (q D^2)/|q D^2|, and
        # cos_D(q, x) = (row . x/|x|) * (|q D^2| / |q D|) * (|x| / |x D|).
        stacked, self.offsets, self.query_factor = [], [], []
        offset = 0
        self.unlisted = np.empty((0, self.d), np.float32)
        for block in self.blocks:
            part = directions[: block.n_queries]
            if block.scale is not None:
                # A gauge may give dimensions a scale of 0 (the canonical gauge drops dead ones);
                # a query with nothing left in the others scores 0 against every row.
                squared = part * block.scale**2
                squared_norm = np.linalg.norm(squared, axis=1)
                gauged_norm = np.linalg.norm(part * block.scale, axis=1)
                self.query_factor.append(ratio(squared_norm, gauged_norm))
                part = squared * ratio(np.ones_like(squared_norm), squared_norm)[:, None]
            else:
                self.query_factor.append(np.ones(block.n_queries))
            self.offsets.append(offset)
            if not block.listed:  # its products are computed for the others' candidates alone
                self.unlisted = np.ascontiguousarray(part, dtype=np.float32)
                continue
            stacked.append(part)
            offset += block.n_queries
        self.stacked = np.ascontiguousarray(np.concatenate(stacked), dtype=np.float32)

    # Scoring ---------------------------------------------------------------------------------

    def _tolerance(self, metric: str, block: int, features: Floats, query: Ints) -> Floats:
        """Float32 rounding scale of a score: differences below it are ties."""
        if block or metric == "cosine":
            return np.full(features.shape[:-1], self.tie_tolerance)
        ratio = features[..., _NORM] / self.query_norm[query]
        if metric == "l2":
            return self.tie_tolerance * (1 + ratio * ratio)
        return self.tie_tolerance * ratio

    # Merging searches of different fragments -------------------------------------------------

    def fresh(self) -> NeighborSearch:
        """The same search with empty lists: what a worker fills from its own fragment."""
        clone = copy.copy(self)
        clone.scratch = Scratch()
        clone.shared_bars = None
        clone.lists = [
            NeighborList(
                held.metric,
                held.block,
                np.full_like(held.rows, -1),
                np.full_like(held.scores, -np.inf),
                np.full_like(held.features, np.nan),
            )
            for held in self.lists
        ]
        return clone

    def absorb(self, lists: list[NeighborList]) -> None:
        """Merge the lists of the same search run on other rows (another fragment).

        The merged top-k is ordered by exact score, then row, from the candidates' features, so
        it does not depend on how the rows were split or in which order the parts arrive."""
        for held, other in zip(self.lists, lists, strict=True):
            query, slot = np.nonzero(other.rows >= 0)
            if len(query):
                self._merge(held, query, other.rows[query, slot], other.features[query, slot])

    def extended(self, more: NeighborSearch) -> NeighborSearch:
        """This finished search followed by ``more``, a search of further queries with the same
        blocks over the same rows: one search of the queries of both, its lists those of each
        (a query's list does not depend on the other queries searched with it). Every block
        of either holds all of its queries."""
        count, more_count = len(self.query_rows), len(more.query_rows)
        if [(b.name, b.n_queries) for b in self.blocks] != [
            (b.name, count) for b in more.blocks
        ] or any(b.n_queries != more_count for b in more.blocks):
            raise ValueError("extended: the searches' blocks differ or skip queries")
        blocks = [replace(block, n_queries=count + more_count) for block in self.blocks]
        joined = NeighborSearch(
            np.concatenate([self.queries, more.queries]),
            np.concatenate([self.query_rows, more.query_rows]),
            self.k,
            blocks,
            self.metrics,
        )
        joined.lists = [
            NeighborList(
                held.metric,
                held.block,
                np.concatenate([held.rows, other.rows]),
                np.concatenate([held.scores, other.scores]),
                np.concatenate([held.features, other.features]),
            )
            for held, other in zip(self.lists, more.lists, strict=True)
        ]
        return joined

    # Results ---------------------------------------------------------------------------------

    def query_indices(self, queries: Floats, query_rows: Ints, k: int) -> Ints | None:
        """Where this search holds the lists (with ``k`` neighbours) of ``queries`` at
        ``query_rows``: their indices among the queries its base block lists, in their order
        (its lists of them are theirs: a query's list does not depend on the other queries
        searched with it); None when it does not hold every one. Its first queries, or corpus
        rows in any order (a query file's rows, ``EXTERNAL_ROW``, are found only as a prefix)."""
        base = self.blocks[0]
        held, count = np.asarray(self.query_rows)[: base.n_queries], len(query_rows)
        if self.k != k or not base.listed or len(held) < count:
            return None
        if np.array_equal(held[:count], query_rows):
            at = np.arange(count)
        else:
            order = np.argsort(held, kind="stable")
            at = order[np.searchsorted(held[order], query_rows).clip(max=len(held) - 1)]
            if not np.array_equal(held[at], query_rows) or (query_rows == EXTERNAL_ROW).any():
                return None
        return at if np.array_equal(self.queries[at], queries) else None

    def head(self, m: int) -> NeighborSearch:
        """The finished search restricted to its first ``m`` queries (every block keeps at most
        m): what the checks read when the last queries served another purpose (the corpus rows
        that give EA503 its floor next to a query file)."""
        if m >= self.blocks[0].n_queries:
            return self
        clone = copy.copy(self)
        clone.queries = self.queries[:m]
        clone.query_rows = np.asarray(self.query_rows)[:m]
        clone.query_norm = self.query_norm[:m]
        clone.blocks = [replace(b, n_queries=min(b.n_queries, m)) for b in self.blocks]
        clone.lists = [
            NeighborList(held.metric, held.block, held.rows[:m], held.scores[:m], held.features[:m])
            for held in self.lists
        ]
        clone._row_order = np.argsort(clone.query_rows, kind="stable")
        clone._sorted_rows = clone.query_rows[clone._row_order]
        clone._groups = clone._grouped()
        clone.scratch, clone.shared_bars = Scratch(), None
        return clone

    def list_for(self, metric: str, block: int = 0) -> NeighborList:
        for neighbor_list in self.lists:
            if (neighbor_list.metric, neighbor_list.block) == (metric, block):
                return neighbor_list
        raise KeyError((metric, block))

    def overlap(
        self, reference: NeighborList, other: NeighborList, at: int | None = None
    ) -> Floats:
        """Per-query tie-aware overlap@k of ``other`` against ``reference`` (shared queries).

        A neighbour among ``other``'s first ``at`` (default k) counts as shared when it is in
        ``reference``'s first ``at``, or when its ``reference`` score reaches the reference's
        at-th score up to float32 rounding: identical scores are never counted as disagreement.
        Divided by the number of neighbours that exist (``at``, or fewer when the database has
        fewer other clean rows).
        """
        top = self.k if at is None else min(at, self.k)
        m = min(reference.n_queries, other.n_queries)
        query = np.repeat(np.arange(m), top).reshape(m, top)
        valid_reference = reference.rows[:m, :top] >= 0
        kth = np.where(valid_reference, reference.scores[:m, :top], np.inf).min(axis=1)
        features = other.features[:m, :top]
        score = self._score(reference.metric, reference.block, features, query)
        tolerance = self._tolerance(reference.metric, reference.block, features, query)
        valid_other = other.rows[:m, :top] >= 0
        shared = valid_other & (score >= kth[:, None] - tolerance)
        size = np.maximum(valid_reference.sum(axis=1), 1)
        return np.asarray(np.minimum(shared.sum(axis=1), size) / size, dtype=np.float64)


def exact_lists(
    database: npt.ArrayLike, query_rows: npt.ArrayLike, k: int, metric: str
) -> tuple[Ints, Floats]:
    """Brute-force reference in float64: top-k rows and scores, self excluded. For tests.

    Scores are those of :class:`NeighborSearch`: cosine; -||q - x||^2 / |q|^2; q.x / |q|^2.
    """
    x = np.asarray(database, dtype=np.float64)
    rows = np.asarray(query_rows)
    q = x[rows]
    q_norm2 = (q**2).sum(1)[:, None]
    if metric == "cosine":
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        scores = unit[rows] @ unit.T
    elif metric == "l2":
        scores = -(q_norm2 + (x**2).sum(1)[None, :] - 2 * q @ x.T) / q_norm2
    else:
        scores = q @ x.T / q_norm2
    scores[np.arange(len(rows)), rows] = -np.inf
    order = np.lexsort((np.broadcast_to(np.arange(len(x)), scores.shape), -scores), axis=1)
    top = order[:, :k]
    return top.astype(np.int64), np.take_along_axis(scores, top, axis=1)
