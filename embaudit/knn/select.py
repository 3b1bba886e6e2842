"""The streamed top-k selection: how the rows of one chunk enter the running lists.

One float32 matrix product per chunk scores every query block at once (see :mod:`embaudit.knn`);
it is computed SLAB rows at a time, and each tile of TILE rows keeps its largest product, which
bounds every score of the tile. Once a query's list has filled, only the tiles whose bound
reaches its current k-th score are scored; the candidates that can still enter are cut to about k
per query and merged into the running list, best score first, then lowest row. The lists
(:class:`NeighborList`, one per metric and query :class:`Block`) keep every member's features,
which :meth:`TopKSelection._score` turns into a score under any list's metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from embaudit.stats import CleanRows

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

#: Unit roundoff of float32: the products run in float32.
_U32 = 2.0**-24
#: Scores closer than TIE_ULPS * sqrt(d) * u32 (on the cosine scale) are ties.
TIE_ULPS = 8.0

_COSINE, _NORM = 0, 1  # feature columns; gauge block b > 0 has its cosine in column 1 + b


#: Chunk rows per tile of the candidate search (see NeighborSearch.add).
TILE = 256
#: Chunk rows per matrix product (a multiple of TILE): each slab of products (4 MiB at the
#: default 500 queries, 7 MiB at the 850 rows stacked for the gauges; measured with 1,300
#: stacked rows) is scaled and bounded tile by tile while it is still in the
#: cache, instead of being read back from memory twice (benchmarks/bench_slab.py: 5-10 % less
#: time per 65,536-row chunk on a 2-core Xeon, within that machine's noise).
SLAB = 8 * TILE
#: Bytes of the float32 products one step of the search holds (stacked queries × rows): a
#: chunk of more rows is searched in steps of fewer rows, so that memory follows the work in
#: flight, not the bytes read (a chunk of 16-d rows holds 48 times the rows of a 768-d chunk of
#: the same bytes). The products, a copy of a block's rows while its lists fill and their
#: float64 scores take about four times this at most. At the defaults (500 stacked rows in the
#: base search, 625 in the gauge search) it is 32,768 and 26,624 rows, more than a 768-d chunk
#: holds (10,922): those chunks are searched in one step.
STEP_BYTES = 64 * 2**20
#: Rows per neighbour kept that a filling step scores (see TopKSelection.filling_rows): with
#: k = 10 one slab; with k = 1,000 a whole step, where pruning by tiles would score most of
#: them anyway.
FILL_DEPTH = 64
#: Multiply-adds up to which OpenBLAS (on AVX-512 CPUs) multiplies matrices with kernels of its
#: own, as it does matrix-vector products: they round otherwise than its general matrix
#: product. Every product of the search is made larger (:func:`_general_rows`), so that the
#: float32 value of a (query, row) product does not depend on how many rows or queries were
#: multiplied with it: on a round that adds one query, on the last slab of a chunk.
SMALL_PRODUCT = 10**6
#: (query, tile) pairs scored at a time: bounds the candidate arrays to ~8 MiB each.
_PAIR_BATCH = 4096
#: Candidates of one chunk held before they are cut to about k per query (see _nearest).
_CAP_AT = 2**20


def _general_rows(matrix: npt.NDArray[np.float32], columns: int) -> npt.NDArray[np.float32]:
    """``matrix`` with zero rows after its own, enough for its product with ``columns`` columns
    to take BLAS's general matrix path: at least two rows, more than SMALL_PRODUCT
    multiply-adds. The product's first rows are those of ``matrix``."""
    rows, inner = matrix.shape
    least = max(2, SMALL_PRODUCT // max(columns * inner, 1) + 1)
    if rows >= least:
        return matrix
    padded = np.zeros((least, inner), dtype=matrix.dtype)
    padded[:rows] = matrix
    return padded


def _whole_tiles(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``rows`` followed by zero rows up to a whole number of tiles (a copy only then)."""
    short = -len(rows) % TILE
    if not short:
        return rows
    return np.concatenate([rows, np.zeros((short, rows.shape[1]), dtype=rows.dtype)])


def _ratio(numerator: Floats, denominator: Floats) -> Floats:
    """numerator / denominator, and 0 where the denominator is 0."""
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)


class Scratch:
    """The memory of a step's products, used again by the next step: a step's products are
    tens of MiB, which a fresh allocation takes from the system page by page on every step
    (an audit of 500,000 16-d rows spent 1.5-1.7 s in the kernel, 1.1 s once the memory was
    kept). The searches one worker runs one after the other share one; :meth:`clear` when they
    are done."""

    def __init__(self) -> None:
        self._memory: npt.NDArray[np.float32] | None = None

    def products(self, rows: int, columns: int) -> npt.NDArray[np.float32]:
        """An uninitialised (rows, columns) float32 array, in the memory of the last one
        (grown when that is too small)."""
        size = rows * columns
        if self._memory is None or len(self._memory) < size:
            self._memory = None  # the old memory goes before the new is taken
            self._memory = np.empty(size, dtype=np.float32)
        return self._memory[:size].reshape(rows, columns)

    @property
    def nbytes(self) -> int:
        return 0 if self._memory is None else self._memory.nbytes

    def clear(self) -> None:
        self._memory = None


class _TileRanges:
    """Per tile of chunk rows: the range of the scaled norms."""

    def __init__(self, norm: Floats, starts: Ints) -> None:
        self.norm_low = np.minimum.reduceat(norm, starts)
        self.norm_high = np.maximum.reduceat(norm, starts)


@dataclass(frozen=True)
class _Chunk:
    """One chunk as the candidate search sees it (see :meth:`NeighborSearch.add`)."""

    positions: Ints  # global row positions of the chunk's clean rows
    norm: Floats  # their L2 norms
    #: (stacked queries, rows rounded up to whole tiles), -inf at self-matches and beyond the
    #: last row; a gauge block's rows times each row's |x| / |x D|, so that they are the
    #: block's selection scores (see _chunk)
    products: npt.NDArray[np.float32]
    #: (tiles, TILE): each row's norm times the queries' power of two, in float32 (the last
    #: tile's padding repeats its last row's)
    scaled_norm: npt.NDArray[np.float32]
    starts: Ints  # first row of each tile of TILE rows
    tile_max: Floats  # (stacked queries, tiles): the largest product in each tile
    tiles: _TileRanges

    @property
    def n_rows(self) -> int:
        return len(self.positions)

    def tile_products(self, stacked: Ints, tile: Ints) -> npt.NDArray[np.float32]:
        """The products of the stacked rows ``stacked`` in the tiles ``tile``, pair by pair:
        (pairs, TILE), each a contiguous run of one stacked row."""
        n_tiles = len(self.starts)
        return self.products.reshape(len(self.products), n_tiles, TILE)[stacked, tile]


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


class TopKSelection:
    """The streaming half of :class:`~embaudit.knn.search.NeighborSearch`: chunks of clean rows
    scored against the stacked queries and merged into the running top-k lists.

    The attributes below are set by the search (``NeighborSearch.__post_init__``): the stacked
    query rows and where each block starts among them, the per-query factors and norms, and the
    lists being filled."""

    k: int
    blocks: list[Block]
    lists: list[NeighborList]
    query_norm: Floats
    pow2_scale: float
    offsets: list[int]
    query_factor: list[Floats]
    stacked: npt.NDArray[np.float32]
    n_features: int
    tie_tolerance: float
    _gauge_blocks: list[int]
    _gauge_squares: npt.NDArray[np.float32]
    _row_order: Ints
    _sorted_rows: Ints
    _by_norm: bool
    scratch: Scratch

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
        slabs = -(-FILL_DEPTH * self.k // SLAB)
        return min(self.step_rows(), max(1, slabs) * SLAB)

    def step_rows(self) -> int:
        """Rows per step of :meth:`add`: STEP_BYTES of products, a multiple of SLAB rows."""
        rows = STEP_BYTES // (4 * max(len(self.stacked), 1))
        return max(SLAB, rows // SLAB * SLAB)

    def _add_step(self, rows: CleanRows) -> None:
        """Consume some clean rows of a chunk.

        The largest product of each query in each tile of TILE rows bounds its scores there
        under every metric, so once a query's list has filled, only the tiles that can beat its
        current k-th score are scored. Queries whose lists are still filling (the first chunk)
        take whole rows."""
        chunk = self._chunk(rows)
        for neighbor_list in self.lists:
            bar = self._bar(neighbor_list)
            filling = np.flatnonzero(np.isneginf(bar))
            if len(filling):
                self._add_filling(neighbor_list, chunk, bar, filling)
            full = np.flatnonzero(~np.isneginf(bar))
            if len(full):
                self._add_full(neighbor_list, chunk, bar, full)

    def _chunk(self, rows: CleanRows) -> _Chunk:
        """The products of the chunk's rows with every stacked query, self-matches removed, and
        what the tiles of TILE rows bound.

        With L2 or inner-product lists, the rows are taken in the order of their norms, so that
        each tile holds rows of similar norms: those lists' bounds of a tile grow with its
        largest norm, and on an export whose norms spread (log-normal, say) a tile of mixed
        norms would be bounded by its largest one and never pruned. Cosine bounds do not
        depend on norms: without those lists the rows stay as they come (no copy). The lists do
        not depend on the order (they keep the best score, then the lowest row).

        A gauge block's products are multiplied by each row's factor |x| / |x D| (in float32, as
        its selection scores always were): each tile's largest entry then bounds the block's
        scores exactly, where the largest product times the tile's largest factor would not.

        The products are computed SLAB rows at a time, each slab scaled and bounded before the
        next: the same float32 values as one product of the whole chunk, without reading a
        (stacked queries, chunk rows) array back from memory twice."""
        if self._by_norm:
            order = np.argsort(rows.norms, kind="stable")
            positions, norms, unit = rows.positions[order], rows.norms[order], rows.unit[order]
        else:
            positions, norms, unit = rows.positions, rows.norms, rows.unit
        n = len(positions)
        factors = [
            (slice(self.offsets[b], self.offsets[b] + self.blocks[b].n_queries), f)
            for b, f in enumerate(self._row_factors(unit))
            if f is not None
        ]
        # A query never neighbours itself: its products with its own row are -inf in every block.
        own_stacked, own_columns = self._self_matches(positions)
        starts = np.arange(0, n, TILE)
        # Whole tiles: a tile's products are then one contiguous run (see _Chunk.tile_products).
        # Every slab is multiplied in whole tiles, and with enough stacked rows to take BLAS's
        # general path (SMALL_PRODUCT): the products do not depend on the chunk's length. The
        # zero rows that takes (a few queries, a narrow slab) are multiplied apart.
        products = self.scratch.products(len(self.stacked), len(starts) * TILE)
        tile_max = np.empty((len(self.stacked), len(starts)))
        for first in range(0, n, SLAB):
            last = min(first + SLAB, n)
            tiled = _whole_tiles(unit[first:last])
            columns = slice(first, first + len(tiled))
            stacked = _general_rows(self.stacked, len(tiled))
            if len(stacked) == len(self.stacked):
                np.matmul(stacked, tiled.T, out=products[:, columns])
            else:
                products[:, columns] = (stacked @ tiled.T)[: len(self.stacked)]
            slab = products[:, first:last]
            for gauged, factor in factors:
                slab[gauged] *= factor[first:last]
            mine = (own_columns >= first) & (own_columns < last)
            slab[own_stacked[mine], own_columns[mine] - first] = -np.inf
            tiles = slice(first // TILE, (last + TILE - 1) // TILE)
            tile_max[:, tiles] = np.maximum.reduceat(slab, starts[tiles] - first, axis=1)
        products[:, n:] = -np.inf
        scaled = norms * self.pow2_scale
        scaled_norm = np.pad(scaled, (0, products.shape[1] - n), mode="edge").astype(np.float32)
        return _Chunk(
            positions=positions,
            norm=norms,
            products=products,
            scaled_norm=scaled_norm.reshape(len(starts), TILE),
            starts=starts,
            tile_max=tile_max,
            tiles=_TileRanges(scaled, starts),
        )

    def _self_matches(self, positions: Ints) -> tuple[Ints, Ints]:
        """(stacked row, column) of each self-match among the chunk rows at ``positions``, every
        block's: the entries of :meth:`_chunk`'s products that are set to -inf."""
        own_query, own_column = self._own(positions)
        in_block = [own_query < block.n_queries for block in self.blocks]
        own_stacked = np.concatenate(
            [
                offset + own_query[inside]
                for offset, inside in zip(self.offsets, in_block, strict=True)
            ]
        )
        own_columns = np.concatenate([own_column[inside] for inside in in_block])
        return own_stacked, own_columns

    def _row_factors(self, unit: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32] | None]:
        """|x| / |x D| = 1 / |x/|x| D| per gauge block (None elsewhere), in float32: the database
        side of a gauge cosine, from the chunk's unit rows."""
        row_factor: list[npt.NDArray[np.float32] | None] = [None] * len(self.blocks)
        if self._gauge_blocks:
            # The squares' product a slab at a time (whole tiles), with enough gauge columns
            # (zeros after the gauges') for BLAS's general path: a row's factors do not depend
            # on how many gauges a search holds, nor on where the chunk ends.
            count = len(self._gauge_blocks)
            gauged = np.empty((len(unit), count), np.float32)
            for first in range(0, len(unit), SLAB):  # a slab's squares stay in the cache
                rows = _whole_tiles(np.square(unit[first : first + SLAB]))
                squares = _general_rows(self._gauge_squares.T, len(rows)).T
                gauged[first : first + SLAB] = (rows @ squares)[: len(unit) - first, :count]
            # A row with nothing outside the dimensions a gauge zeroes has a product of exactly
            # 0 with every gauged query, so it scores 0 under that gauge whatever its factor: 1
            # keeps its own -inf self-match at -inf (0 would make it NaN).
            squares = np.ascontiguousarray(gauged.T, dtype=np.float64)  # (gauges, rows)
            single = (1.0 / np.sqrt(np.where(squares > 0, squares, 1.0))).astype(np.float32)
            for index, b in enumerate(self._gauge_blocks):
                row_factor[b] = single[index]
        return row_factor

    def _add_filling(
        self, neighbor_list: NeighborList, chunk: _Chunk, bar: Floats, filling: Ints
    ) -> None:
        """Merge the chunk's candidates for the queries ``filling`` (lists not yet full): every
        row of the chunk is scored."""
        offset = self.offsets[neighbor_list.block]
        products = chunk.products[offset + filling, : chunk.n_rows]
        scaled_norm = chunk.scaled_norm.reshape(-1)[: chunk.n_rows]
        scores = self._scores(neighbor_list, products, filling, scaled_norm)
        selection_factor = self._selection_factor(neighbor_list)[filling]
        query, column = self._candidates(scores, bar[filling], filling, selection_factor)
        if len(query):
            features = self._features(chunk, query, column)
            self._merge(neighbor_list, query, chunk.positions[column], features)

    def _add_full(
        self, neighbor_list: NeighborList, chunk: _Chunk, bar: Floats, full: Ints
    ) -> None:
        """Merge the chunk's candidates for the queries ``full`` (lists full): only the tiles
        whose bound reaches a query's bar are scored."""
        query, tile = self._reachable_tiles(neighbor_list, chunk, bar, full)
        if not len(query):
            return
        hit_query, column = self._tile_hits(neighbor_list, chunk, bar, query, tile)
        if len(hit_query):
            features = self._features(chunk, hit_query, column)
            self._merge(neighbor_list, hit_query, chunk.positions[column], features)

    def _reachable_tiles(
        self, neighbor_list: NeighborList, chunk: _Chunk, bar: Floats, full: Ints
    ) -> tuple[Ints, Ints]:
        """(query, tile) of each tile whose bound on the query's selection scores reaches the
        query's bar, for the queries ``full``."""
        tile_max = chunk.tile_max[self.offsets[neighbor_list.block] + full]
        # A tile that holds nothing but the query's own row has a largest product of -inf
        # and no candidate: its bound is -inf (the arithmetic would give -inf + inf).
        empty = np.isneginf(tile_max)
        with np.errstate(invalid="ignore"):
            bound = self._bound(neighbor_list, tile_max, full, chunk.tiles)
            reach = bound + np.abs(bound) * 1e-5 + 1e-6
        reach[empty] = -np.inf
        pair_query, pair_tile = np.nonzero(reach > bar[full, None])
        return full[pair_query], pair_tile

    def _tile_hits(
        self,
        neighbor_list: NeighborList,
        chunk: _Chunk,
        bar: Floats,
        query: Ints,
        tile: Ints,
    ) -> tuple[Ints, Ints]:
        """(query, column) of the entries of the (query, tile) pairs that beat the query's bar,
        cut to about k per query (:meth:`_nearest`). The pairs are scored a batch at a time, so
        that the (pairs, TILE) arrays stay small however many tiles the bounds leave in."""
        offset = self.offsets[neighbor_list.block]
        hit_queries: list[Ints] = []
        hit_columns: list[Ints] = []
        hit_scores: list[npt.NDArray[np.float32]] = []
        for first in range(0, len(query), _PAIR_BATCH):
            batch = query[first : first + _PAIR_BATCH]
            batch_tile = tile[first : first + _PAIR_BATCH]
            entries = chunk.tile_products(offset + batch, batch_tile)
            scores = self._scores(neighbor_list, entries, batch, chunk.scaled_norm[batch_tile])
            # The padding beyond the last row is -inf: it never beats a bar.
            hit_row, hit_offset = np.nonzero(scores > bar[batch, None])
            hit_queries.append(batch[hit_row])
            hit_columns.append(batch_tile[hit_row] * TILE + hit_offset)
            hit_scores.append(scores[hit_row, hit_offset])
            if sum(map(len, hit_scores)) > _CAP_AT:
                hit_queries, hit_columns, hit_scores = self._nearest(
                    neighbor_list, hit_queries, hit_columns, hit_scores
                )
        (hit_query,), (column,), _ = self._nearest(
            neighbor_list, hit_queries, hit_columns, hit_scores
        )
        return hit_query, column

    def _features(self, chunk: _Chunk, query: Ints, column: Ints) -> Floats:
        """The features (see :mod:`embaudit.knn`) of the chunk entries (query, column)."""
        out = np.full((len(query), self.n_features), np.nan)
        out[:, _COSINE] = chunk.products[query, column]
        out[:, _NORM] = chunk.norm[column]
        for b, block in enumerate(self.blocks[1:], start=1):
            inside = query < block.n_queries
            q, c = query[inside], column[inside]
            scaled = chunk.products[self.offsets[b] + q, c].astype(np.float64)  # times |x|/|xD|
            out[inside, 1 + b] = scaled * self.query_factor[b][q]
        return out

    def _nearest(
        self,
        neighbor_list: NeighborList,
        queries: list[Ints],
        columns: list[Ints],
        scores: list[npt.NDArray[np.float32]],
    ) -> tuple[list[Ints], list[Ints], list[npt.NDArray[np.float32]]]:
        """Of one chunk's candidates (query, column, selection score), each query's best k and
        those within rounding of its k-th: no others can enter its top k. Rows stored cluster by
        cluster can put thousands of rows of a chunk above a bar set by an earlier chunk; this
        keeps the candidates, and the features kept for them, to about k per query."""
        order = np.lexsort((-np.concatenate(scores), np.concatenate(queries)))
        query = np.concatenate(queries)[order]
        column = np.concatenate(columns)[order]
        score = np.concatenate(scores)[order]
        first = np.searchsorted(query, query, side="left")
        last = np.searchsorted(query, query, side="right") - 1
        kth = score[np.minimum(first + self.k - 1, last)].astype(np.float64)
        selection_factor = self._selection_factor(neighbor_list)[query]
        near = score >= (kth - self._slack(kth, selection_factor)).astype(np.float32)
        keep = (np.arange(len(query)) - first < self.k) | near
        return [query[keep]], [column[keep]], [score[keep]]

    def _own(self, positions: Ints) -> tuple[Ints, Ints]:
        """(query, column) of the chunk rows that are queries: self-matches, removed by row."""
        if not len(self._sorted_rows):
            return np.empty(0, np.int64), np.empty(0, np.int64)
        at = np.searchsorted(self._sorted_rows, positions).clip(max=len(self._sorted_rows) - 1)
        column = np.flatnonzero(self._sorted_rows[at] == positions)
        return self._row_order[at[column]].astype(np.int64), column.astype(np.int64)

    def _scores(
        self,
        neighbor_list: NeighborList,
        products: npt.NDArray[np.float32],
        query: Ints,
        scaled_norm: npt.NDArray[np.float32],
    ) -> npt.NDArray[np.float32]:
        """float32 *selection scores* of chunk entries: the score times a per-query constant,
        :meth:`_selection_factor`. ``products`` holds one row per query in ``query``;
        ``scaled_norm`` the norms (times the power of two) of the rows of its columns, one row
        for every query or one per query. A gauge block's products are already its selection
        scores (:meth:`_chunk`)."""
        if neighbor_list.block or neighbor_list.metric == "cosine":
            return products
        inverse_query = (1.0 / (self.query_norm[query] * self.pow2_scale)).astype(np.float32)
        ratio = scaled_norm * inverse_query[:, None]  # |x| / |q|
        if neighbor_list.metric == "l2":
            return (2 * products - ratio) * ratio - np.float32(1)
        return products * ratio

    def _bound(
        self, neighbor_list: NeighborList, tile_max: Floats, query: Ints, tiles: _TileRanges
    ) -> Floats:
        """Upper bounds of the selection scores of ``query`` in each tile, from the tile's
        largest product: every score grows with the product for a fixed row (a gauge block's
        products and a cosine list's are their selection scores)."""
        if neighbor_list.block or neighbor_list.metric == "cosine":
            return tile_max
        inverse_query = 1.0 / (self.query_norm[query] * self.pow2_scale)
        low = tiles.norm_low[None, :] * inverse_query[:, None]
        high = tiles.norm_high[None, :] * inverse_query[:, None]
        if neighbor_list.metric == "dot":
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
            return np.where(factor > 0, _ratio(np.ones(m), factor), 1.0)
        return np.ones(m)

    def _bar(self, neighbor_list: NeighborList) -> Floats:
        """Per query, the selection score a chunk entry must beat to enter the running top-k:
        the current k-th score less a rounding slack (chunk scores are float32)."""
        selection_factor = self._selection_factor(neighbor_list)
        threshold = neighbor_list.scores[:, -1] * selection_factor
        with np.errstate(invalid="ignore"):
            return np.asarray(threshold - self._slack(threshold, selection_factor))

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
