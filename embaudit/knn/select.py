"""The streamed top-k selection: how the rows of one chunk enter the running lists.

One float32 matrix product per chunk scores every query block at once (see :mod:`embaudit.knn`
and :mod:`embaudit.knn.products`), and each tile of TILE rows keeps its largest product, which
bounds every score of the tile. Once a query's list has filled, only the tiles whose bound
reaches its current k-th score are scored; the candidates that can still enter are cut to about k
per query and merged into the running list, best score first, then lowest row. Lists scored
alike (every block's cosine list) are bounded, scored and cut together as one group. The lists
(:class:`NeighborList`, one per metric and query :class:`Block`) keep every member's features,
which :meth:`TopKSelection._score` turns into a score under any list's metric.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from embaudit.knn.products import Chunk, ChunkProducts, TileRanges, ratio
from embaudit.stats import CleanRows

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

#: Unit roundoff of float32: the products run in float32.
_U32 = 2.0**-24
#: Scores closer than TIE_ULPS * sqrt(d) * u32 (on the cosine scale) are ties.
TIE_ULPS = 8.0

_COSINE, _NORM = 0, 1  # feature columns; gauge block b > 0 has its cosine in column 1 + b


#: Bytes of the float32 products one step of the search holds (stacked queries × rows): a
#: chunk of more rows is searched in steps of fewer rows, so that memory follows the work in
#: flight, not the bytes read (a chunk of 16-d rows holds 48 times the rows of a 768-d chunk of
#: the same bytes). The products, a copy of a block's rows while its lists fill and their
#: float64 scores take about four times this at most. At the defaults (500 stacked rows in the
#: base search, 230 in the gauge search) it is 32,768 and 69,632 rows, more than a 768-d chunk
#: holds (10,752): those chunks are searched in one step.
STEP_BYTES = 64 * 2**20
#: Rows per neighbour kept that a filling step scores (see TopKSelection.filling_rows): with
#: k = 10 one slab; with k = 1,000 a whole step, where pruning by tiles would score most of
#: them anyway.
FILL_DEPTH = 64
#: Dimensions up to which a step whose lists are full keeps only the tiles its bounds reach
#: and computes its candidates' features again (see TopKSelection._add_step). Small-d products
#: cost less to compute than to store and read back: 7 % more rows a second at d = 16 on a
#: 2-core Xeon; from d = 64 the products computed again for the features cost more than that
#: saves (13 % fewer at d = 768).
KEEP_TILES_UP_TO = 32
#: (query, tile) pairs scored at a time: bounds the candidate arrays to ~8 MiB each.
_PAIR_BATCH = 4096
#: Candidates of one chunk held before they are cut to about k per query (see _nearest).
_CAP_AT = 2**20


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

    def of_queries(self, at: Ints) -> NeighborList:
        """The lists of the queries at positions ``at``, in that order."""
        rows, scores, features = self.rows[at], self.scores[at], self.features[at]
        return NeighborList(self.metric, self.block, rows, scores, features)


@dataclass(frozen=True)
class _Group:
    """Lists whose selection scores come from their products in one way, searched as one: every
    cosine list (the base block's and each gauge block's, whose products are their selection
    scores), or the L2 list, or the inner-product list. A row of the group is one query of one
    of its lists, in the lists' order: one bound, one batch of tiles and one cut serve every
    list of the group (a search of 28 gauge blocks has 29 cosine lists)."""

    kind: str  # "cosine", "l2" or "dot": how a product becomes a selection score
    lists: list[int]  # the lists' positions in TopKSelection.lists
    starts: Ints  # where each list's rows start (and, last, where the group's end)
    query: Ints  # per row: its query
    stacked: Ints  # per row: its stacked row
    factor: Floats  # per row: its selection factor (see TopKSelection._selection_factor)


@dataclass
class SharedBars:
    """The best bar of every group row over the workers searching one pass's rows with the
    same search (each worker's own copy, see :meth:`~embaudit.knn.NeighborSearch.fresh`).

    A worker's k-th score bounds the k-th score of the merged lists from below: an entry that
    cannot beat another worker's bar cannot enter the merged top k, so every worker prunes by
    the highest bar any of them has reached (a worker's own rows alone, a share of the pass's,
    raise its own bar more slowly). The merged lists are the same whatever the workers'
    timing: only the candidates that could not enter them are left out."""

    best: list[Floats]  # per group, per row: the highest bar reported
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, selection: TopKSelection) -> SharedBars:
        return cls([np.full(len(group.query), -np.inf) for group in selection._groups])

    def raised(self, bars: list[Floats]) -> list[Floats]:
        """Report a worker's ``bars`` (per group) and return them raised to the best reported:
        only where the worker's own is finite (a row whose list still fills keeps -inf: it
        takes every row until its list is full)."""
        with self.lock:
            for best, bar in zip(self.best, bars, strict=True):
                np.fmax(best, bar, out=best)  # a NaN bar (none is known) is never shared
            return [
                np.where(np.isneginf(bar), bar, best)
                for best, bar in zip(self.best, bars, strict=True)
            ]


class TopKSelection(ChunkProducts):
    """The streaming half of :class:`~embaudit.knn.search.NeighborSearch`: chunks of clean rows
    scored against the stacked queries and merged into the running top-k lists.

    The attributes below are set by the search (``NeighborSearch.__post_init__``): the per-query
    factors and norms, the lists being filled and their groups (the stacked query rows are
    :class:`~embaudit.knn.products.ChunkProducts`'s)."""

    k: int
    lists: list[NeighborList]
    query_norm: Floats
    query_factor: list[Floats]
    n_features: int
    tie_tolerance: float
    _groups: list[_Group]
    shared_bars: SharedBars | None  # the bars of the other workers of a pass (None: alone)

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

    # Streaming -------------------------------------------------------------------------------

    def add(self, rows: CleanRows) -> None:
        """Consume the clean rows of one chunk, in steps of at most :meth:`step_rows` rows
        (the lists do not depend on how the rows are cut: they keep the best score, then the
        lowest row). While a list is still filling, every row of a step is scored for its
        queries, so that step is short (:meth:`filling_rows`): the lists fill on it, and the
        rest of the chunk is scored only where the tiles' bounds reach them."""
        first, count = 0, len(rows.positions)
        while first < count:
            filling = any(
                np.isneginf(neighbor_list.scores[:, -1]).any() for neighbor_list in self.lists
            )
            last = first + (self.filling_rows() if filling else self.step_rows())
            self._add_step(
                rows
                if first == 0 and last >= count
                else CleanRows(
                    rows.positions[first:last],
                    rows.values[first:last],
                    rows.norms[first:last],
                    rows.unit[first:last],
                )
            )
            first = last

    def filling_rows(self) -> int:
        """Rows of a step on which a list fills: FILL_DEPTH rows per neighbour kept (a whole
        number of slabs, at most :meth:`step_rows`), so that the bars the later steps prune by
        are those of a list that has already seen many rows."""
        slab = self.slab_rows()
        slabs = -(-FILL_DEPTH * self.k // slab)
        return min(self.step_rows(), max(1, slabs) * slab)

    def step_rows(self) -> int:
        """Rows per step of :meth:`add`: STEP_BYTES of products, a whole number of slabs."""
        rows = STEP_BYTES // (4 * max(len(self.stacked), 1))
        slab = self.slab_rows()
        return max(slab, rows // slab * slab)

    def _add_step(self, rows: CleanRows) -> None:
        """Consume some clean rows of a chunk.

        The largest product of each query in each tile of TILE rows bounds its scores there
        under every metric, so once a query's list has filled, only the tiles that can beat its
        current k-th score are scored. Rows of at most KEEP_TILES_UP_TO dimensions keep the
        products of those tiles alone, slab by slab, while the slab is in the cache (see
        :meth:`_chunk`). Queries whose lists are still filling (the first steps) take whole
        rows: every product of their step is stored."""
        bars = [self._bar(group) for group in self._groups]
        if self.shared_bars is not None:
            bars = self.shared_bars.raised(bars)
        stored = self.stacked.shape[1] > KEEP_TILES_UP_TO
        if stored or any(np.isneginf(bar).any() for bar in bars):
            self._add_stored_step(rows, bars)
            return
        found: list[list[tuple[Ints, Ints]]] = [[] for _ in self._groups]
        every = [np.arange(len(bar)) for bar in bars]  # each group's rows: all full

        def keep(tile_max: Floats, tiles: TileRanges, at: slice) -> tuple[Ints, Ints]:
            """The pairs of the slab's tiles ``at`` whose bound reaches a row's bar, in any
            group: each group's are kept for its selection, their union's products stored."""
            wanted = np.zeros((len(self.stacked), at.stop - at.start), dtype=bool)
            for group, bar, full, pairs in zip(self._groups, bars, every, found, strict=True):
                row, tile = self._reachable_tiles(group, tile_max[:, at], tiles[at], bar, full)
                pairs.append((row, tile + at.start))
                wanted[group.stacked[row], tile] = True
            stacked, tile = np.nonzero(wanted)
            return stacked, tile + at.start

        chunk = self._chunk(rows, keep)
        for group, bar, pairs in zip(self._groups, bars, found, strict=True):
            row, tile = (np.concatenate(part) for part in zip(*pairs, strict=True))
            self._add_full(group, chunk, bar, (row, tile))

    def _add_stored_step(self, rows: CleanRows, bars: list[Floats]) -> None:
        """Consume a step whose products are all stored (some lists still fill: ``bars`` holds
        -inf, or the rows have more than KEEP_TILES_UP_TO dimensions): a filling list scores
        every row, a full one the tiles its bound reaches."""
        chunk = self._chunk(rows)
        for group, bar in zip(self._groups, bars, strict=True):
            filling = np.isneginf(bar)
            if filling.any():
                for position, i in enumerate(group.lists):
                    rows_of = slice(group.starts[position], group.starts[position + 1])
                    queries = np.flatnonzero(filling[rows_of])
                    if len(queries):
                        self._add_filling(
                            self.lists[i], chunk, bar[rows_of], group.factor[rows_of], queries
                        )
            full = np.flatnonzero(~filling)
            if len(full):
                pairs = self._reachable_tiles(group, chunk.tile_max, chunk.tiles, bar, full)
                self._add_full(group, chunk, bar, pairs)

    def _grouped(self) -> list[_Group]:
        """The lists in groups of one kind (see :class:`_Group`), in the order of their kinds."""
        kinds = [self._kind(neighbor_list) for neighbor_list in self.lists]
        groups = []
        for kind in dict.fromkeys(kinds):
            members = [i for i, of in enumerate(kinds) if of == kind]
            lists = [self.lists[i] for i in members]
            queries = [np.arange(neighbor_list.n_queries) for neighbor_list in lists]
            blocks = [self.offsets[neighbor_list.block] for neighbor_list in lists]
            groups.append(
                _Group(
                    kind,
                    members,
                    np.cumsum([0, *map(len, queries)]),
                    np.concatenate(queries),
                    np.concatenate([offset + q for offset, q in zip(blocks, queries, strict=True)]),
                    np.concatenate([self._selection_factor(lst) for lst in lists]),
                )
            )
        return groups

    @staticmethod
    def _kind(neighbor_list: NeighborList) -> str:
        """How the list's selection scores come from its products: a gauge block's products
        are its selection scores, as a cosine list's are."""
        return "cosine" if neighbor_list.block else neighbor_list.metric

    def _add_filling(
        self,
        neighbor_list: NeighborList,
        chunk: Chunk,
        bar: Floats,
        selection_factor: Floats,
        filling: Ints,
    ) -> None:
        """Merge the chunk's candidates for the queries ``filling`` (lists not yet full): every
        row of the chunk is scored. ``bar`` and ``selection_factor`` are the list's, per
        query."""
        offset = self.offsets[neighbor_list.block]
        products = chunk.whole_rows(offset + filling)
        scaled_norm = chunk.scaled_norm.reshape(-1)[: chunk.n_rows]
        scores = self._scores(self._kind(neighbor_list), products, filling, scaled_norm)
        query, column = self._candidates(scores, bar[filling], filling, selection_factor[filling])
        if len(query) > self.k * len(filling):  # ties beyond k: the merge's order cuts them
            best = self._best(chunk, neighbor_list, query, column)
            query, column = query[best], column[best]
        if len(query):
            features = self._features(chunk, query, column)
            self._merge(neighbor_list, query, chunk.positions[column], features)

    def _add_full(self, group: _Group, chunk: Chunk, bar: Floats, pairs: tuple[Ints, Ints]) -> None:
        """Merge the chunk's candidates for the group's (row, tile) ``pairs``: the tiles whose
        bound reaches the row's bar (:meth:`_reachable_tiles`). ``bar`` is per row."""
        row, tile = pairs
        if not len(row):
            return
        hit_row, column = self._tile_hits(group, chunk, bar, row, tile)
        query = group.query[hit_row]
        features = self._features(chunk, query, column)
        # The hits come in the order of their rows: each list's are one run.
        bounds = np.searchsorted(hit_row, group.starts)
        for position, i in enumerate(group.lists):
            first, last = bounds[position], bounds[position + 1]
            if first < last:
                positions = chunk.positions[column[first:last]]
                self._merge(self.lists[i], query[first:last], positions, features[first:last])

    def _reachable_tiles(
        self, group: _Group, tile_max: Floats, tiles: TileRanges, bar: Floats, full: Ints
    ) -> tuple[Ints, Ints]:
        """(row, tile) of each tile whose bound on the row's selection scores reaches the row's
        bar, for the group's rows ``full``; ``tile_max`` (stacked rows, tiles) and ``tiles``
        are the tiles' (of a chunk or of one slab)."""
        tile_max = tile_max[group.stacked[full]]
        # A tile that holds nothing but the query's own row has a largest product of -inf
        # and no candidate: its bound is -inf (the arithmetic would give -inf + inf).
        empty = np.isneginf(tile_max)
        with np.errstate(invalid="ignore"):
            bound = self._bound(group.kind, tile_max, group.query[full], tiles)
            reach = bound + np.abs(bound) * 1e-5 + 1e-6
        reach[empty] = -np.inf
        pair_query, pair_tile = np.nonzero(reach > bar[full, None])
        return full[pair_query], pair_tile

    def _tile_hits(
        self, group: _Group, chunk: Chunk, bar: Floats, query: Ints, tile: Ints
    ) -> tuple[Ints, Ints]:
        """(row, column) of the entries of the (row, tile) pairs that beat the row's bar, cut
        to about k per row (:meth:`_nearest`), in the order of their rows. The pairs are scored
        a batch at a time, so that the (pairs, TILE) arrays stay small however many tiles the
        bounds leave in. ``query`` holds rows of the group."""
        hit_queries: list[Ints] = []
        hit_columns: list[Ints] = []
        hit_scores: list[npt.NDArray[np.float32]] = []
        for first in range(0, len(query), _PAIR_BATCH):
            batch = query[first : first + _PAIR_BATCH]
            batch_tile = tile[first : first + _PAIR_BATCH]
            scores = entries = chunk.tile_products(group.stacked[batch], batch_tile)
            if group.kind != "cosine":  # a cosine's products are its scores: no norms needed
                scaled_norm = chunk.scaled_norm[batch_tile]
                scores = self._scores(group.kind, entries, group.query[batch], scaled_norm)
            # The padding beyond the last row is -inf: it never beats a bar.
            hit_row, hit_offset = np.nonzero(scores > bar[batch, None])
            hit_queries.append(batch[hit_row])
            hit_columns.append(chunk.column(batch_tile[hit_row], hit_offset))
            hit_scores.append(scores[hit_row, hit_offset])
            if sum(map(len, hit_scores)) > _CAP_AT:
                hit_queries, hit_columns, hit_scores = self._nearest(
                    group, chunk, hit_queries, hit_columns, hit_scores
                )
        (hit_query,), (column,), _ = self._nearest(
            group, chunk, hit_queries, hit_columns, hit_scores
        )
        return hit_query, column

    def _features(self, chunk: Chunk, query: Ints, column: Ints) -> Floats:
        """The features (see :mod:`embaudit.knn`) of the chunk entries (query, column)."""
        out = np.full((len(query), self.n_features), np.nan)
        out[:, _NORM] = chunk.norm[column]
        # Every listed block's entries taken at once: a query's row in each block that holds it.
        entries = [np.arange(len(query))]
        for block in self.blocks[1:]:
            entries.append(np.flatnonzero(query < block.n_queries))
        listed = [b for b, block in enumerate(self.blocks) if block.listed]
        sizes = np.cumsum([0, *(len(entries[b]) for b in listed)])
        stacked = np.concatenate([self.offsets[b] + query[entries[b]] for b in listed])
        products = chunk.entries(stacked, column[np.concatenate([entries[b] for b in listed])])
        by_block = {b: products[sizes[i] : sizes[i + 1]] for i, b in enumerate(listed)}
        if not self.blocks[0].listed:  # the same float32 values as the base search's products
            by_block[0] = chunk.source.unlisted(self.unlisted, query, column)
        out[:, _COSINE] = by_block[0]
        for b, at in enumerate(entries[1:], start=1):
            out[at, 1 + b] = self._gauge_feature(b, by_block[b], query[at])
        return out

    def _gauge_feature(self, block: int, products: npt.NDArray[np.float32], query: Ints) -> Floats:
        """Gauge block ``block``'s feature (its cosine) of entries whose float32 products (times
        |x|/|xD|) are ``products``, for ``query`` indices."""
        return products.astype(np.float64) * self.query_factor[block][query]

    def _nearest(
        self,
        group: _Group,
        chunk: Chunk,
        queries: list[Ints],
        columns: list[Ints],
        scores: list[npt.NDArray[np.float32]],
    ) -> tuple[list[Ints], list[Ints], list[npt.NDArray[np.float32]]]:
        """Of one chunk's candidates (group row, column, selection score), each row's best k
        and those within rounding of its k-th: no others can enter its top k. Rows stored
        cluster by cluster can put thousands of rows of a chunk above a bar set by an earlier
        chunk; this keeps the candidates, and the features kept for them, to about k per row,
        and, where more than k a row tie within rounding on average (a file of one repeated
        row), to each row's k best (:meth:`_best`)."""
        order = np.lexsort((-np.concatenate(scores), np.concatenate(queries)))
        query = np.concatenate(queries)[order]
        column = np.concatenate(columns)[order]
        score = np.concatenate(scores)[order]
        first = np.searchsorted(query, query, side="left")
        last = np.searchsorted(query, query, side="right") - 1
        kth = score[np.minimum(first + self.k - 1, last)].astype(np.float64)
        near = score >= (kth - self._slack(kth, group.factor[query])).astype(np.float32)
        keep = (np.arange(len(query)) - first < self.k) | near
        query, column, score = query[keep], column[keep], score[keep]
        rows = np.count_nonzero(query[1:] != query[:-1]) + 1  # sorted: one run a row
        if len(query) > self.k * rows:  # ties beyond k: the merge's order cuts them
            # Each list's rows are one run of the group's rows, and so are its candidates.
            bounds = np.searchsorted(query, group.starts)
            best = np.zeros(len(query), dtype=bool)
            for position, i in enumerate(group.lists):
                mine = np.arange(bounds[position], bounds[position + 1])
                if len(mine):
                    listed = self._best(
                        chunk, self.lists[i], group.query[query[mine]], column[mine]
                    )
                    best[mine[listed]] = True
            query, column, score = query[best], column[best], score[best]
        return [query], [column], [score]

    def _best(self, chunk: Chunk, neighbor_list: NeighborList, query: Ints, column: Ints) -> Ints:
        """Which of the list's candidates (query, column) are among their query's k best in the
        order of :meth:`_merge` (score, then the lower row), by their exact scores: no other
        can enter the list. Their indices."""
        block = neighbor_list.block
        products = chunk.entries(self.offsets[block] + query, column)
        if block:  # a gauge list's score is its feature
            score = self._gauge_feature(block, products, query)
        else:  # the two features a base list's score reads, alone
            features = np.empty((len(query), max(_COSINE, _NORM) + 1))
            features[:, _COSINE], features[:, _NORM] = products, chunk.norm[column]
            score = self._score(neighbor_list.metric, block, features, query)
        order = np.lexsort((chunk.positions[column], -score, query))
        ranked = query[order]
        return order[np.arange(len(order)) - np.searchsorted(ranked, ranked) < self.k]

    def _scores(
        self,
        kind: str,
        products: npt.NDArray[np.float32],
        query: Ints,
        scaled_norm: npt.NDArray[np.float32],
    ) -> npt.NDArray[np.float32]:
        """float32 *selection scores* of chunk entries: the score times a per-query constant,
        :meth:`_selection_factor`. ``products`` holds one row per query in ``query``;
        ``scaled_norm`` the norms (times the power of two) of the rows of its columns, one row
        for every query or one per query. A gauge block's products are already its selection
        scores (:meth:`_chunk`). ``kind``: see :meth:`_kind`."""
        if kind == "cosine":
            return products
        inverse_query = (1.0 / (self.query_norm[query] * self.pow2_scale)).astype(np.float32)
        ratio = scaled_norm * inverse_query[:, None]  # |x| / |q|
        if kind == "l2":
            return (2 * products - ratio) * ratio - np.float32(1)
        return products * ratio

    def _bound(self, kind: str, tile_max: Floats, query: Ints, tiles: TileRanges) -> Floats:
        """Upper bounds of the selection scores of ``query`` in each tile, from the tile's
        largest product: every score grows with the product for a fixed row (a gauge block's
        products and a cosine list's are their selection scores)."""
        if kind == "cosine":
            return tile_max
        inverse_query = 1.0 / (self.query_norm[query] * self.pow2_scale)
        low = tiles.norm_low[None, :] * inverse_query[:, None]
        high = tiles.norm_high[None, :] * inverse_query[:, None]
        if kind == "dot":
            return np.where(tile_max >= 0, tile_max * high, tile_max * low)
        # 2 p r - r^2 - 1 is concave in r and largest at r = p, clipped to the tile's range.
        best = np.clip(tile_max, low, high)
        return 2 * tile_max * best - best * best - 1

    def _selection_factor(self, neighbor_list: NeighborList) -> Floats:
        """Per-query factor from exact scores to the selection scores of :meth:`_scores`."""
        m = neighbor_list.n_queries
        if neighbor_list.block:
            # A query with nothing outside the dimensions a gauge zeroes has factor 0 and
            # scores 0 against every row: its selection scores need no scaling.
            factor = self.query_factor[neighbor_list.block][:m]
            return np.where(factor > 0, ratio(np.ones(m), factor), 1.0)
        return np.ones(m)

    def _bar(self, group: _Group) -> Floats:
        """Per row of the group, the selection score a chunk entry must beat to enter the
        running top-k: the current k-th score less a rounding slack (chunk scores are
        float32)."""
        kth = np.concatenate([self.lists[i].scores[:, -1] for i in group.lists])
        threshold = kth * group.factor
        with np.errstate(invalid="ignore"):
            return np.asarray(threshold - self._slack(threshold, group.factor))

    def _slack(self, threshold: Floats, selection_factor: Floats) -> Floats:
        """How far below a selection-score threshold an entry may still belong above it: the
        float32 rounding of the chunk scores, plus the tie tolerance on the selection scale."""
        with np.errstate(invalid="ignore"):
            tie = self.tie_tolerance * np.maximum(selection_factor, 1.0)
            return np.abs(threshold) * 4 * _U32 + tie

    def _candidates(
        self, scores: npt.NDArray[np.float32], bar: Floats, queries: Ints, selection_factor: Floats
    ) -> tuple[Ints, Ints]:
        """(query, column) pairs of whole chunk rows that may enter the running top-k: the
        entries above the bar, and of a crowded query only those within rounding of its k-th
        best (``scores`` rows belong to ``queries``; ``selection_factor`` is theirs)."""
        hits = scores > bar.astype(np.float32)[:, None]
        per_query = hits.sum(axis=1)
        k = min(self.k, scores.shape[1])
        crowded = per_query > k
        sparse_rows, sparse_columns = np.nonzero(hits & ~crowded[:, None])
        row_parts, column_parts = [sparse_rows], [sparse_columns]
        if crowded.any():
            # Keep every entry within rounding of the k-th float32 score, not just k of them:
            # the exact (float64) order decides among near-ties when the lists merge, so the
            # result cannot depend on how the rows were cut into chunks.
            rows = np.flatnonzero(crowded)
            kth = np.partition(scores[rows], -k, axis=1)[:, -k].astype(np.float64)
            slack = self._slack(kth, selection_factor[rows])
            close_rows, close_columns = np.nonzero(
                hits[rows] & (scores[rows] >= (kth - slack).astype(np.float32)[:, None])
            )
            row_parts.append(rows[close_rows])
            column_parts.append(close_columns)
        row, column = np.concatenate(row_parts), np.concatenate(column_parts)
        finite = np.isfinite(scores[row, column])
        return queries[row[finite]].astype(np.int64), column[finite].astype(np.int64)

    def _merge(
        self, neighbor_list: NeighborList, query: Ints, rows: Ints, features: Floats
    ) -> None:
        """Merge candidates into the running top-k: best score first, then lowest row. Only the
        lists of the queries with candidates are sorted again (late in a pass, a few)."""
        k = neighbor_list.rows.shape[1]
        touched = np.unique(query)
        held = neighbor_list.rows[touched] >= 0
        held_query = touched[np.nonzero(held)[0]]
        all_query = np.concatenate([held_query, query])
        all_rows = np.concatenate([neighbor_list.rows[touched][held], rows])
        all_features = np.concatenate([neighbor_list.features[touched][held], features])
        all_scores = self._score(neighbor_list.metric, neighbor_list.block, all_features, all_query)
        order = np.lexsort((all_rows, -all_scores, all_query))
        sorted_query = all_query[order]
        first = np.searchsorted(sorted_query, sorted_query, side="left")
        rank = np.arange(len(order)) - first
        keep = rank < k
        chosen = order[keep]
        slot_query, slot_rank = sorted_query[keep], rank[keep]
        neighbor_list.rows[touched] = -1
        neighbor_list.scores[touched] = -np.inf
        neighbor_list.features[touched] = np.nan
        neighbor_list.rows[slot_query, slot_rank] = all_rows[chosen]
        neighbor_list.scores[slot_query, slot_rank] = all_scores[chosen]
        neighbor_list.features[slot_query, slot_rank] = all_features[chosen]
