"""Exact k-nearest neighbours of a query sample against the whole database, streamed by chunk.

One float32 matrix product per chunk scores every query block at once: the base block serves
cosine, L2 and inner product together (``L2^2 = |q|^2 + |x|^2 - 2 q.x``, ``cos = q.x / |q||x|``);
each diagonal gauge D is one more block of the same queries, multiplied by D^2, since
``(q D).(x D) = (q D^2).x``. Partial top-k lists of each chunk merge into the running lists, so
the database is never held whole.

Every candidate keeps its *features* — its cosine, |x| and its cosine under every gauge
block — so that, at the end, any list's members can be scored under any other list's
metric. That is what makes the overlap tie-aware: a neighbour of list B counts as shared with list
A when A would have ranked it within A's top k up to float32 rounding (see :func:`overlap`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from embaudit.geometry import unit_rows
from embaudit.stats import CleanRows, row_norms

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

#: Unit roundoff of float32: the products run in float32.
_U32 = 2.0**-24
#: Scores closer than TIE_ULPS * sqrt(d) * u32 (in cosine units) are ties.
TIE_ULPS = 8.0

_COSINE, _NORM = 0, 1  # feature columns; gauge block b > 0 has its cosine in column 1 + b


@dataclass(frozen=True)
class Block:
    """Queries 0 .. n_queries-1 of the sample, under the diagonal gauge ``scale`` (None: none)."""

    name: str
    n_queries: int
    scale: Floats | None = None


@dataclass
class NeighborList:
    """Top-k of each query under one metric: rows (-1 where fewer than k exist), features."""

    metric: str  # "cosine", "l2" or "dot"
    block: int
    rows: Ints
    scores: Floats
    features: Floats  # (queries, k, n_features)

    @property
    def n_queries(self) -> int:
        return int(self.rows.shape[0])


@dataclass
class NeighborSearch:
    """Streams database chunks through a fixed query sample; see the module docstring.

    ``queries`` (Q, d) are clean rows of the database at global positions ``query_rows``; each
    block uses the first ``n_queries`` of them. ``k`` neighbours are kept per query, the query
    itself (by row position) excluded.
    """

    queries: Floats
    query_rows: Ints
    k: int
    blocks: list[Block]
    lists: list[NeighborList] = field(init=False)

    def __post_init__(self) -> None:
        queries = np.asarray(self.queries, dtype=np.float64)
        self.d = queries.shape[1]
        self.query_norm = row_norms(queries)
        directions = unit_rows(queries)
        # L2 and dot scores are kept relative to the query norm (a positive constant per query,
        # so rankings are unchanged): dot/|q| and -L2^2/|q|^2, with r = |x|/|q|. The float32
        # selection scores use norms divided by one power of two, so values near 1e30 or 1e-30
        # neither overflow nor underflow.
        self.unit = 2.0 ** -np.round(np.log2(np.median(self.query_norm)))
        # Each stacked row is a unit vector, so every product is a bounded cosine: base rows are
        # q/|q|, gauge rows (q D^2)/|q D^2|, and
        # cos_D(q, x) = (row . x/|x|) * (|q D^2| / |q D|) * (|x| / |x D|).
        stacked, self.offsets, self.query_factor = [], [], []
        offset = 0
        for block in self.blocks:
            part = directions[: block.n_queries]
            if block.scale is not None:
                squared = part * block.scale**2
                squared_norm = np.linalg.norm(squared, axis=1)
                self.query_factor.append(squared_norm / np.linalg.norm(part * block.scale, axis=1))
                part = squared / squared_norm[:, None]
            else:
                self.query_factor.append(np.ones(block.n_queries))
            stacked.append(part)
            self.offsets.append(offset)
            offset += block.n_queries
        self.stacked = np.ascontiguousarray(np.concatenate(stacked), dtype=np.float32)
        self.n_features = 1 + len(self.blocks)
        self.tie_tolerance = TIE_ULPS * np.sqrt(self.d) * _U32
        base = self.blocks[0].n_queries
        plan = [("cosine", 0, base), ("l2", 0, base), ("dot", 0, base)]
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

    # Scoring ---------------------------------------------------------------------------------

    def _score(self, metric: str, block: int, features: Floats, query: Ints) -> Floats:
        """The score (larger is nearer) of candidates with ``features`` for ``query`` indices."""
        if block:
            return features[..., 1 + block]
        cosine = features[..., _COSINE]
        if metric == "cosine":
            return cosine
        ratio = features[..., _NORM] / self.query_norm[query]
        if metric == "l2":
            return -(1 + ratio * ratio - 2 * cosine * ratio)  # -||q - x||^2 / |q|^2
        return cosine * ratio  # q.x / |q|^2

    def _tolerance(self, metric: str, block: int, features: Floats, query: Ints) -> Floats:
        """Float32 rounding scale of a score: differences below it are ties."""
        if block or metric == "cosine":
            return np.full(features.shape[:-1], self.tie_tolerance)
        ratio = features[..., _NORM] / self.query_norm[query]
        if metric == "l2":
            return self.tie_tolerance * (1 + ratio * ratio)
        return self.tie_tolerance * ratio

    # Streaming -------------------------------------------------------------------------------

    def add(self, rows: CleanRows) -> None:
        """Consume the clean rows of one chunk."""
        if not len(rows.positions):
            return
        positions, norm = rows.positions, rows.norms
        products = self.stacked @ rows.unit.T  # (stacked queries, rows), float32
        # |x| / |x D| = 1 / |x/|x| D| per gauge block: the database side of a gauge cosine.
        row_factor: list[Floats | None] = [None] * len(self.blocks)
        if self._gauge_blocks:
            gauged = np.square(rows.unit) @ self._gauge_squares  # (rows, gauge blocks)
            for index, b in enumerate(self._gauge_blocks):
                row_factor[b] = 1.0 / np.sqrt(gauged[:, index].astype(np.float64))
        # A query never neighbours itself: its products with its own row are -inf in every block.
        own_query, own_column = self._own(positions)
        for b, block in enumerate(self.blocks):
            inside = own_query < block.n_queries
            products[self.offsets[b] + own_query[inside], own_column[inside]] = -np.inf

        def features(query: Ints, column: Ints) -> Floats:
            out = np.full((len(query), self.n_features), np.nan)
            out[:, _COSINE] = products[query, column]
            out[:, _NORM] = norm[column]
            for b, block in enumerate(self.blocks[1:], start=1):
                inside = query < block.n_queries
                q, c = query[inside], column[inside]
                factor = row_factor[b]
                assert factor is not None
                raw = products[self.offsets[b] + q, c].astype(np.float64)
                out[inside, 1 + b] = raw * self.query_factor[b][q] * factor[c]
            return out

        for neighbor_list in self.lists:
            b, m = neighbor_list.block, neighbor_list.n_queries
            block_products = products[self.offsets[b] : self.offsets[b] + m]
            scores = self._chunk_scores(neighbor_list.metric, b, block_products, norm, row_factor)
            query, column = self._candidates(scores, neighbor_list)
            if len(query):
                self._merge(neighbor_list, query, positions[column], features(query, column))

    def _own(self, positions: Ints) -> tuple[Ints, Ints]:
        """(query, column) of the chunk rows that are queries: self-matches, removed by row."""
        if not len(self._sorted_rows):
            return np.empty(0, np.int64), np.empty(0, np.int64)
        at = np.searchsorted(self._sorted_rows, positions).clip(max=len(self._sorted_rows) - 1)
        column = np.flatnonzero(self._sorted_rows[at] == positions)
        return self._row_order[at[column]].astype(np.int64), column.astype(np.int64)

    def _chunk_scores(
        self,
        metric: str,
        block: int,
        products: npt.NDArray[np.float32],
        norm: Floats,
        row_factor: list[Floats | None],
    ) -> npt.NDArray[np.float32]:
        """float32 scores of a chunk for candidate selection, in *selection units*: the score
        divided by a per-query constant (see :meth:`_selection_units`)."""
        m = products.shape[0]
        if block:
            factor = row_factor[block]
            assert factor is not None
            return products * factor.astype(np.float32)
        if metric == "cosine":
            return products
        row = (norm * self.unit).astype(np.float32)
        inverse_query = (1.0 / (self.query_norm[:m] * self.unit)).astype(np.float32)
        ratio = row * inverse_query[:, None]  # |x| / |q|
        if metric == "l2":
            return (2 * products - ratio) * ratio - np.float32(1)
        return products * ratio

    def _selection_units(self, neighbor_list: NeighborList) -> Floats:
        """Per-query factor from exact scores to the selection units of :meth:`_chunk_scores`."""
        m = neighbor_list.n_queries
        if neighbor_list.block:
            return 1.0 / self.query_factor[neighbor_list.block][:m]
        return np.ones(m)

    def _candidates(
        self, scores: npt.NDArray[np.float32], neighbor_list: NeighborList
    ) -> tuple[Ints, Ints]:
        """(query, column) pairs of the chunk that may enter the running top-k.

        A chunk entry can only enter when it beats the current k-th score (less a rounding slack,
        since chunk scores are float32); of those, at most k per query are needed.
        """
        units = self._selection_units(neighbor_list)
        threshold = neighbor_list.scores[:, -1] * units
        slack = np.abs(threshold) * 4 * _U32 + self.tie_tolerance * np.maximum(units, 1.0)
        with np.errstate(invalid="ignore"):
            bar = (threshold - slack).astype(np.float32)
        # Once the lists have filled, few queries have any entry above their bar: find them with
        # one reduction and compare only their rows.
        active = np.flatnonzero(scores.max(axis=1) > bar)
        if not len(active):
            return np.empty(0, np.int64), np.empty(0, np.int64)
        block = scores[active]
        hits = block > bar[active, None]
        per_query = hits.sum(axis=1)
        k = min(self.k, scores.shape[1])
        crowded = per_query > k
        sparse_rows, sparse_columns = np.nonzero(hits & ~crowded[:, None])
        query_parts, column_parts = [active[sparse_rows]], [sparse_columns]
        if crowded.any():
            rows = np.flatnonzero(crowded)
            top = np.argpartition(-block[rows], k - 1, axis=1)[:, :k]
            query_parts.append(np.repeat(active[rows], k))
            column_parts.append(top.ravel())
        query, column = np.concatenate(query_parts), np.concatenate(column_parts)
        finite = np.isfinite(scores[query, column])
        return query[finite].astype(np.int64), column[finite].astype(np.int64)

    def _merge(
        self, neighbor_list: NeighborList, query: Ints, rows: Ints, features: Floats
    ) -> None:
        """Merge candidates into the running top-k: best score first, then lowest row."""
        k = neighbor_list.rows.shape[1]
        held = neighbor_list.rows >= 0
        held_query = np.nonzero(held)[0]
        all_query = np.concatenate([held_query, query])
        all_rows = np.concatenate([neighbor_list.rows[held], rows])
        all_features = np.concatenate([neighbor_list.features[held], features])
        all_scores = self._score(neighbor_list.metric, neighbor_list.block, all_features, all_query)
        order = np.lexsort((all_rows, -all_scores, all_query))
        sorted_query = all_query[order]
        first = np.searchsorted(sorted_query, sorted_query, side="left")
        rank = np.arange(len(order)) - first
        keep = rank < k
        chosen = order[keep]
        slot_query, slot_rank = sorted_query[keep], rank[keep]
        neighbor_list.rows[:] = -1
        neighbor_list.scores[:] = -np.inf
        neighbor_list.features[:] = np.nan
        neighbor_list.rows[slot_query, slot_rank] = all_rows[chosen]
        neighbor_list.scores[slot_query, slot_rank] = all_scores[chosen]
        neighbor_list.features[slot_query, slot_rank] = all_features[chosen]

    # Results ---------------------------------------------------------------------------------

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

    Scores are in the engine's units: cosine; -||q - x||^2 / |q|^2; q.x / |q|^2.
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
