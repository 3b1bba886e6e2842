"""The float32 products of a chunk's rows with the stacked query rows, and what its tiles bound.

A search stacks its query blocks (see :mod:`embaudit.knn`); :class:`ChunkProducts` multiplies a
chunk's unit rows with them a slab of rows at a time, in whole tiles of TILE rows and always on
BLAS's general matrix path, so that a (query, row) product has the same float32 value however the
rows were cut into chunks and however many queries were multiplied with it. A gauge block's products
are scaled by each row's factor |x| / |x D| (they are its selection scores), a query's product with
its own row is -inf, and each tile keeps its largest product: the bound that
:mod:`embaudit.knn.select` prunes by. The products of one step live in a :class:`Scratch` the
searches of one worker share from one step to the next. Once every list of a search is full, a step
of small-d rows stores none of them: each slab is bounded while in the cache and only the tiles a
bound lets through are copied out (:class:`KeptTiles`); the few products its candidates' features
need are computed again, to the same values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from embaudit.stats import CleanRows, Scratch

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

#: Chunk rows per tile of the candidate search (see NeighborSearch.add).
TILE = 256
#: Chunk rows per matrix product at most (a multiple of TILE): each slab of products is scaled
#: and bounded tile by tile right after its product, instead of being read back from memory
#: twice (benchmarks/bench_slab.py).
SLAB = 16 * TILE
#: Bytes of products a slab holds at most: a slab costs some fifty numpy calls whatever its
#: size, and what it holds is its rows times the stacked rows (the slab of a search of many
#: queries has fewer rows; see ChunkProducts.slab_rows). On a 2-core Xeon (2 MiB of L2 a
#: core), with 500 and 634 stacked rows (the defaults then): slabs of 4,096 rows searched 7 % more
#: 16-d and 128-d rows a second than slabs of 2,048, and as many 64-d and 768-d rows; at
#: 16-d, slabs of 8, 12, 16 and 24 MiB (no cap): 376k, 398k, 361k and 326k rows a second.
SLAB_BYTES = 12 * 2**20
#: Multiply-adds up to which OpenBLAS (on AVX-512 CPUs) multiplies matrices with kernels of its
#: own, as it does matrix-vector products: they round otherwise than its general matrix
#: product. Every product of the search is made larger (:func:`_general_rows`), so that the
#: float32 value of a (query, row) product does not depend on how many rows or queries were
#: multiplied with it: on a round that adds one query, on the last slab of a chunk.
SMALL_PRODUCT = 10**6

#: Bytes of squared rows whose gauge factors are computed at a time (see
#: ChunkProducts._row_factors), in whole tiles, at most a slab's rows: the squares are still in
#: the cache when they are multiplied, where a slab of 768-d rows (12 MiB) went to memory and
#: back. One core, 1M 768-d rows: 0.44 s instead of 0.73 s for one gauge (an EA302 round),
#: 1.08 s instead of 1.44 s for the first pass's 28 (same factors). Small-d rows keep a slab's
#: rows: fewer would only take more numpy calls.
FACTOR_BYTES = 3 * 2**20

#: An unlisted block's products are computed for every row of a step at once when its
#: candidates' entries number at least a WHOLE_SHARE-th of the step's rows (see
#: _EntrySource.unlisted): while lists fill at a large k, each list would otherwise compute
#: most of them again (28 gauge lists at k = 1,000: about 1 s on 20,000 768-d rows).
WHOLE_SHARE = 4

#: Norms within this ratio of each other bound a tile alike in any order (a bound's reach
#: carries a relative slack of 1e-5 anyway): the rows of a unit-norm export, whose norms differ
#: by float rounding, keep the order they come in, and are not copied into norm order (0.9 s of
#: a core per 1M 768-d rows). Any order gives the same lists; only the pruning depends on it.
ALIKE_NORMS = 1 + 1e-5


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


def _multiply(
    stacked: npt.NDArray[np.float32], tiled: npt.NDArray[np.float32], out: npt.NDArray[np.float32]
) -> None:
    """``out`` = the products of the ``stacked`` rows with the rows ``tiled`` (whole tiles), on
    BLAS's general path (:func:`_general_rows`)."""
    general = _general_rows(stacked, len(tiled))
    if len(general) == len(stacked):
        np.matmul(general, tiled.T, out=out)
    else:
        out[...] = (general @ tiled.T)[: len(stacked)]


def _whole_tiles(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``rows`` followed by zero rows up to a whole number of tiles (a copy only then)."""
    short = -len(rows) % TILE
    if not short:
        return rows
    return np.concatenate([rows, np.zeros((short, rows.shape[1]), dtype=rows.dtype)])


def _joined(parts: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
    """The (rows, TILE) arrays ``parts`` one after the other."""
    return np.concatenate(parts) if parts else np.empty((0, TILE), np.float32)


def ratio(numerator: Floats, denominator: Floats) -> Floats:
    """numerator / denominator, and 0 where the denominator is 0."""
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)


@dataclass(frozen=True)
class TileRanges:
    """Per tile of chunk rows: the range of the scaled norms."""

    norm_low: Floats
    norm_high: Floats

    @classmethod
    def of(cls, norm: Floats, starts: Ints) -> TileRanges:
        """The ranges of ``norm`` over the tiles that start at ``starts``."""
        return cls(np.minimum.reduceat(norm, starts), np.maximum.reduceat(norm, starts))

    def __getitem__(self, tiles: slice) -> TileRanges:
        return TileRanges(self.norm_low[tiles], self.norm_high[tiles])


#: What a step keeps of a slab (see ChunkProducts._chunk): given the tiles' largest products
#: so far (stacked queries, tiles), their norm ranges and the slab's tiles, the (stacked row,
#: tile) pairs whose products its selection may score.
KeepTiles = Callable[[Floats, "TileRanges", slice], tuple[Ints, Ints]]


@dataclass(frozen=True)
class KeptTiles:
    """The products of the (stacked row, tile) pairs a step's selection may score, copied out
    of each slab while it was in the cache; the step's other products were never stored."""

    index: npt.NDArray[np.int32]  # (stacked queries, tiles): the pair's row of products, or -1
    products: npt.NDArray[np.float32]  # (kept pairs, TILE)


@dataclass(frozen=True)
class Chunk:
    """One chunk as the candidate search sees it (see :meth:`NeighborSearch.add`)."""

    positions: Ints  # global row positions of the chunk's clean rows
    norm: Floats  # their L2 norms
    #: (slabs, stacked queries, slab rows): slab by slab, its products with every stacked row (see
    #: _chunk); -inf at self-matches and beyond the last row; a gauge block's rows times each
    #: row's |x| / |x D|, so that they are the block's selection scores. None when only the
    #: tiles a step may score were kept (``kept``).
    products: npt.NDArray[np.float32] | None
    #: (tiles, TILE): each row's norm times the queries' power of two, in float32 (the last
    #: tile's padding repeats its last row's)
    scaled_norm: npt.NDArray[np.float32]
    starts: Ints  # first row of each tile of TILE rows
    tile_max: Floats  # (stacked queries, tiles): the largest product in each tile
    tiles: TileRanges
    #: What computes an entry again: without stored products, and those of an unlisted block
    source: _EntrySource
    kept: KeptTiles | None = None

    @property
    def n_rows(self) -> int:
        return len(self.positions)

    def column(self, tile: Ints, offset: Ints) -> Ints:
        """The chunk column of the entry ``offset`` of the tile ``tile``."""
        return tile * TILE + offset

    def tile_products(self, stacked: Ints, tile: Ints) -> npt.NDArray[np.float32]:
        """The products of the stacked rows ``stacked`` in the tiles ``tile``, pair by pair:
        (pairs, TILE), each a contiguous run of one stacked row (a kept pair's, without
        stored products)."""
        if self.products is None:
            assert self.kept is not None
            at = self.kept.index[stacked, tile]
            if len(at) and at.min() < 0:  # a selection's bug: a pair it did not keep
                raise RuntimeError("products of a tile that was not kept")
            return self.kept.products[at]
        slabs, rows, width = self.products.shape
        per_slab = width // TILE
        by_tile = self.products.reshape(slabs, rows, per_slab, TILE)
        return by_tile[tile // per_slab, stacked, tile % per_slab]

    def entries(self, stacked: Ints, column: Ints) -> npt.NDArray[np.float32]:
        """The products of the stacked rows ``stacked`` with the chunk columns ``column``, one
        by one (computed again, to the same float32 values, without stored products)."""
        if self.products is None:
            return self.source.entries(stacked, column)
        width = self.products.shape[2]
        return self.products[column // width, stacked, column % width]

    def whole_rows(self, stacked: Ints) -> npt.NDArray[np.float32]:
        """The products of the stacked rows ``stacked`` with every row of the chunk:
        (len(stacked), n_rows), a copy (of stored products)."""
        assert self.products is not None
        taken = self.products[:, stacked].transpose(1, 0, 2)
        return taken.reshape(len(stacked), -1)[:, : self.n_rows]


@dataclass
class _EntrySource:
    """What a chunk's products are computed from: a few of them are computed again, on the
    same BLAS path, when they were not stored (or, for an unlisted block, never computed)."""

    stacked: npt.NDArray[np.float32]  # the stacked query rows
    unit: npt.NDArray[np.float32]  # the chunk's unit rows, in its column order
    gauged: list[tuple[slice, int]]  # each gauge block's stacked rows, its row of ``factors``
    factors: npt.NDArray[np.float32] | None  # (gauge blocks, columns): |x| / |x D|
    #: The unlisted block's products with every column, once computed (see :meth:`unlisted`)
    whole: npt.NDArray[np.float32] | None = field(default=None, repr=False)

    def unlisted(
        self, rows: npt.NDArray[np.float32], query: Ints, column: Ints
    ) -> npt.NDArray[np.float32]:
        """The products of the unlisted block's rows ``rows[query]`` with the columns
        ``column``: of those entries alone (:meth:`products`), or, when they are many (lists
        that fill, at a large k: each of a gauge search's lists asks for its own), of every
        query with every column once, kept for the step's later calls (the same values)."""
        if len(query) * WHOLE_SHARE < len(self.unit):
            return self.products(rows, query, column)
        if self.whole is None:
            tiled = _whole_tiles(self.unit)
            self.whole = np.empty((len(rows), len(tiled)), np.float32)
            _multiply(rows, tiled, self.whole)
        return np.asarray(self.whole[query, column])

    def products(
        self, rows: npt.NDArray[np.float32], row: Ints, column: Ints
    ) -> npt.NDArray[np.float32]:
        """The products of ``rows[row]`` with the columns ``column``, one by one: those rows
        times those columns' unit rows in whole tiles, with enough rows for BLAS's general path
        (as every slab), so the same float32 values as a slab's product of the same rows."""
        if not len(row):
            return np.empty(0, np.float32)
        taken, row_at = np.unique(row, return_inverse=True)
        columns, column_at = np.unique(column, return_inverse=True)
        tiled = _whole_tiles(self.unit[columns])
        block = np.empty((len(taken), len(tiled)), np.float32)
        _multiply(rows[taken], tiled, block)
        return np.asarray(block[row_at, column_at])

    def entries(self, stacked: Ints, column: Ints) -> npt.NDArray[np.float32]:
        """The products of the stacked rows ``stacked`` with the columns ``column``
        (:meth:`products`), a gauge block's scaled by the same float32 factors as the slabs'."""
        if not len(stacked):
            return np.empty(0, np.float32)
        products = self.products(self.stacked, stacked, column)
        if self.factors is not None:
            factor_of = np.full(len(self.stacked), -1)  # per stacked row: its factors' row
            for rows_of, index in self.gauged:
                factor_of[rows_of] = index
            factor = factor_of[stacked]
            gauged = np.flatnonzero(factor >= 0)
            products[gauged] *= self.factors[factor[gauged], column[gauged]]
        return np.asarray(products)


@dataclass(frozen=True)
class Block:
    """Queries 0 .. n_queries-1 of the sample, under the diagonal gauge ``scale`` (None: none).

    ``listed`` False (the base block of a gauge search alone): the block's lists are another
    search's (the base search of the same queries over the same rows has them, to the same
    rows and scores), so its queries are not stacked and it keeps no list; its products are
    computed only for the other blocks' candidates, whose features hold their cosine."""

    name: str
    n_queries: int
    scale: Floats | None = None
    listed: bool = True


class ChunkProducts:
    """The products half of :class:`~embaudit.knn.search.NeighborSearch`: a chunk's rows
    multiplied with the stacked query rows (:meth:`_chunk`).

    The attributes below are set by the search (``NeighborSearch.__post_init__``)."""

    blocks: list[Block]
    offsets: list[int]  # where each listed block starts among the stacked rows
    stacked: npt.NDArray[np.float32]  # the stacked query rows, unit vectors
    unlisted: npt.NDArray[np.float32]  # the unlisted block's query rows (none: (0, d))
    pow2_scale: float
    _gauge_blocks: list[int]
    _gauge_squares: npt.NDArray[np.float32]
    _row_order: Ints
    _sorted_rows: Ints
    _by_norm: bool
    scratch: Scratch

    def slab_rows(self) -> int:
        """Chunk rows per slab: SLAB_BYTES of products with the stacked rows, in whole tiles, at
        least one tile and at most SLAB rows."""
        rows = SLAB_BYTES // (4 * max(len(self.stacked), 1))
        return max(TILE, min(SLAB, rows) // TILE * TILE)

    def _chunk(self, rows: CleanRows, keep: KeepTiles | None = None) -> Chunk:
        """The products of the chunk's rows with every stacked query, self-matches removed, and
        what the tiles of TILE rows bound.

        With L2 or inner-product lists, the rows are taken in the order of their norms (unless
        their norms are alike already: :data:`ALIKE_NORMS`), so that each tile holds rows of
        similar norms: those lists' bounds of a tile grow with its largest norm, and on an
        export whose norms spread (log-normal, say) a tile of mixed norms would be bounded by
        its largest one and never pruned. Cosine bounds do not depend on norms: without those
        lists the rows stay as they come (no copy). The lists do not depend on the order (they
        keep the best score, then the lowest row).

        A gauge block's products are multiplied by each row's factor |x| / |x D| (in float32, as
        its selection scores always were): each tile's largest entry then bounds the block's
        scores exactly, where the largest product times the tile's largest factor would not.

        The products are computed a slab of rows at a time (:meth:`slab_rows`), each slab
        scaled and bounded before the next: the same float32 values as one product of the
        whole chunk. Without ``keep`` they are all stored, slab by slab. With ``keep`` (the
        selection's bars known: no list still filling) each slab is computed in one block of
        memory used again for the next, and only the tiles ``keep`` names (those whose bounds
        reach a bar) are copied out: a step's products are never written to memory, nor read
        back."""
        positions, norms, unit = self._ordered(rows)
        n = len(positions)
        factors = self._row_factors(unit)
        gauged = [
            (slice(self.offsets[b], self.offsets[b] + self.blocks[b].n_queries), index)
            for index, b in enumerate(self._gauge_blocks)
        ]  # each gauge block's stacked rows, and its row of ``factors``
        # A query never neighbours itself: its products with its own row are -inf in every block.
        own_stacked, own_columns = self._self_matches(positions)
        starts = np.arange(0, n, TILE)
        scaled = norms * self.pow2_scale
        tiles = TileRanges.of(scaled, starts)
        # Slab by slab: a slab's products with every stacked row are one contiguous block,
        # written as one run and bounded while in the cache, and a tile's products with one
        # stacked row one contiguous run (see Chunk.tile_products). Every slab is multiplied in
        # whole tiles, and with enough stacked rows to take BLAS's general path
        # (SMALL_PRODUCT): the products depend neither on the chunk's length nor on how many
        # queries are stacked. The zero rows that takes (a few queries) are multiplied apart.
        width = self.slab_rows()
        slabs = 1 if keep is not None else -(-n // width)
        products = self.scratch.products(slabs, len(self.stacked), width)
        tile_max = np.empty((len(self.stacked), len(starts)))
        shape = (len(self.stacked), len(starts)) if keep is not None else (0, 0)
        kept_index = np.full(shape, -1, np.int32)
        kept: list[npt.NDArray[np.float32]] = []
        count = 0  # products kept so far
        for first in range(0, n, width):
            tiled = _whole_tiles(unit[first : first + width])
            slab = products[0 if keep is not None else first // width, :, : len(tiled)]
            _multiply(self.stacked, tiled, slab)
            if factors is not None:
                for rows_of, index in gauged:
                    slab[rows_of] *= factors[index, first : first + len(tiled)]
            mine = (own_columns >= first) & (own_columns < first + width)
            slab[own_stacked[mine], own_columns[mine] - first] = -np.inf
            slab[:, n - first :] = -np.inf  # beyond the last row: never a candidate
            at = slice(first // TILE, (first + len(tiled)) // TILE)
            tile_max[:, at] = np.maximum.reduceat(slab, starts[at] - first, axis=1)
            if keep is not None:
                stacked_rows, tile = keep(tile_max, tiles, at)
                taken = slab.reshape(len(slab), -1, TILE)[stacked_rows, tile - at.start]
                kept_index[stacked_rows, tile] = np.arange(count, count + len(taken))
                kept.append(taken)
                count += len(taken)
        scaled_norm = np.pad(scaled, (0, len(starts) * TILE - n), mode="edge").astype(np.float32)
        return Chunk(
            positions=positions,
            norm=norms,
            products=None if keep is not None else products,
            scaled_norm=scaled_norm.reshape(len(starts), TILE),
            starts=starts,
            tile_max=tile_max,
            tiles=tiles,
            source=_EntrySource(self.stacked, unit, gauged, factors),
            kept=None if keep is None else KeptTiles(kept_index, _joined(kept)),
        )

    def _ordered(self, rows: CleanRows) -> tuple[Ints, Floats, npt.NDArray[np.float32]]:
        """The positions, norms and unit rows of ``rows`` in the order :meth:`_chunk` takes
        them: by norm with L2 or inner-product lists (the unit rows copied into the scratch),
        else as they come, and also when their norms are alike (:data:`ALIKE_NORMS`)."""
        norms = rows.norms
        if not self._by_norm or not len(norms) or norms.max() <= norms.min() * ALIKE_NORMS:
            return rows.positions, norms, rows.unit
        order = np.argsort(norms, kind="stable")
        unit = self.scratch.take("unit rows", np.float32, *rows.unit.shape)
        np.take(rows.unit, order, axis=0, out=unit, mode="clip")  # "raise" buffers ``out``
        return rows.positions[order], norms[order], unit

    def _self_matches(self, positions: Ints) -> tuple[Ints, Ints]:
        """(stacked row, column) of each self-match among the chunk rows at ``positions``, every
        block's: the entries of :meth:`_chunk`'s products that are set to -inf."""
        own_query, own_column = self._own(positions)
        listed = [b for b, block in enumerate(self.blocks) if block.listed]
        in_block = [own_query < self.blocks[b].n_queries for b in listed]
        own_stacked = np.concatenate(
            [
                self.offsets[b] + own_query[inside]
                for b, inside in zip(listed, in_block, strict=True)
            ]
        )
        own_columns = np.concatenate([own_column[inside] for inside in in_block])
        return own_stacked, own_columns

    def _row_factors(self, unit: npt.NDArray[np.float32]) -> npt.NDArray[np.float32] | None:
        """|x| / |x D| = 1 / |x/|x| D| per gauge block, in float32: the database side of a gauge
        cosine, from the chunk's unit rows (and 1 for the zero rows that fill its last tile):
        (gauge blocks, whole tiles), None without gauge blocks."""
        if not self._gauge_blocks:
            return None
        # The squares' product a block at a time (whole tiles), with enough gauge columns (zeros
        # after the gauges') for BLAS's general path: a row's factors do not depend on how many
        # gauges a search holds, nor on where the chunk ends.
        count = len(self._gauge_blocks)
        factors = np.empty((count, -(-len(unit) // TILE) * TILE), np.float32)
        step = max(TILE, min(SLAB, FACTOR_BYTES // (4 * unit.shape[1])) // TILE * TILE)
        squares_of = self.scratch.take("squares", np.float32, min(step, len(unit)), unit.shape[1])
        for first in range(0, len(unit), step):  # the block's squares stay in the cache
            part = unit[first : first + step]
            rows = _whole_tiles(np.square(part, out=squares_of[: len(part)]))
            squares = _general_rows(self._gauge_squares.T, len(rows)).T
            gauged = (rows @ squares)[:, :count].T.astype(np.float64)
            # A row with nothing outside the dimensions a gauge zeroes has a product of exactly
            # 0 with every gauged query, so it scores 0 under that gauge whatever its factor: 1
            # keeps its own -inf self-match at -inf (0 would make it NaN), and the zero rows
            # after the last fill its tile with factors of 1.
            safe = np.where(gauged > 0, gauged, 1.0)
            factors[:, first : first + len(rows)] = 1.0 / np.sqrt(safe)
        return factors

    def _own(self, positions: Ints) -> tuple[Ints, Ints]:
        """(query, column) of the chunk rows that are queries: self-matches, removed by row."""
        if not len(self._sorted_rows):
            return np.empty(0, np.int64), np.empty(0, np.int64)
        at = np.searchsorted(self._sorted_rows, positions).clip(max=len(self._sorted_rows) - 1)
        column = np.flatnonzero(self._sorted_rows[at] == positions)
        return self._row_order[at[column]].astype(np.int64), column.astype(np.int64)
