"""Random rows: every sample of embaudit (queries, gauge rows, tower rows, compared items) is
drawn here, so a bias or a fix lives in one place.

Rows are drawn uniformly without replacement and kept in draw order: the first ``count`` clean
ones are the sample, wherever they sit in the file. When too few of the drawn rows are clean
(non-finite or zero rows, see :func:`~embaudit.stats.clean_mask`), a larger draw follows, until
the sample is full or every row has been drawn.

Draws are nested: from the same generator, a draw of m rows is the first m of a draw of more, so
that a round which grows a sample adds rows to it and measures only those
(:func:`~embaudit.measurement.steps.measure`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.array_types import Floats, Ints
from embaudit.sources import EmbeddingSource
from embaudit.stats import clean_mask

#: Reads rows of a source at the given positions, in the order given (an engine's ``take``).
Take = Callable[[EmbeddingSource, Ints], npt.NDArray[np.floating[Any]]]


#: Up to this many rows, a draw is a prefix of one random permutation of every row; beyond, of
#: a stream of uniform positions, repeats left out (a permutation would cost n per draw), unless
#: it takes more than half the rows (a stream would then repeat itself often).
PERMUTED_ROWS = 2**16


def draw_positions(n: int, size: int, rng: np.random.Generator) -> Ints:
    """``size`` distinct positions below ``n``, uniformly at random, in draw order (all of
    them, shuffled, when ``size >= n``). Nested: the first m of a larger draw from a
    generator in the same state, while both take at most half the rows or n is at most
    PERMUTED_ROWS (a round that grows the queries falls back to drawing them anew otherwise)."""
    size = min(n, size)
    if n <= PERMUTED_ROWS or 2 * size > n:
        return rng.permutation(n)[:size].astype(np.int64)
    drawn = np.empty(0, np.int64)
    batch = max(size, 64)
    while True:
        # One double per position, whatever the batches (rng.random is a plain stream), so the
        # stream does not depend on how much is drawn; u * n < n up to rounding, hence the clip.
        more = np.minimum((rng.random(batch) * n).astype(np.int64), n - 1)
        drawn = np.concatenate([drawn, more])
        _, first = np.unique(drawn, return_index=True)
        if len(first) >= size:
            return drawn[np.sort(first)[:size]]
        batch = len(drawn)


@dataclass(frozen=True)
class CleanDraw:
    """The items drawn, in draw order, and their rows in each source as float64 (or as stored:
    see :func:`draw_clean_items`)."""

    items: Ints  # item indices (row positions when the sources are not matched)
    values: list[Floats]  # per source, (len(items), d) rows
    left_out: int  # items drawn and read, left out because a row of theirs is non-finite or zero


def _take_source(source: EmbeddingSource, rows: Ints) -> npt.NDArray[np.floating[Any]]:
    return source.take(rows)


def draw_clean_items(
    count: int,
    rng: np.random.Generator,
    sources: Sequence[EmbeddingSource],
    rows: Sequence[Ints] | None = None,
    take: Take | None = None,
    stored: bool = False,
) -> CleanDraw:
    """Up to ``count`` items whose rows are clean in every source, drawn uniformly at random.

    Item i is row ``rows[s][i]`` of source s (default: row i of each). ``take`` reads rows
    (default: the source's own reader; pass an engine's to read on a cluster). The rows are
    float64, or ``stored``: in each source's own dtype (rows that are only summarized: the
    canonical gauge's 20,000 768-d rows take 61 MB as float32, 123 MB as float64).
    """
    take = take or _take_source
    n = len(rows[0]) if rows is not None else sources[0].n
    size = 2 * count + 16
    start = copy.deepcopy(rng)  # every larger draw starts where the first did: draws nest
    while True:
        drawing = copy.deepcopy(start)
        items = draw_positions(n, size, drawing)
        clean = np.zeros(len(items), dtype=bool)
        # The drawn items are read in draw order, the first _head(count) of them, the rest only
        # if too few of those are clean: the result is that of reading them all. Their rows
        # take memory as they are read: the memory of every drawn row, half of it never read,
        # is the kernel's to map and zero (0.3 s for 20,000 rows of 768-d).
        read, stop = 0, min(len(items), _head(count))
        values = [
            np.empty((stop, source.d), source.dtype if stored else np.float64) for source in sources
        ]
        while read < len(items):
            if stop > len(values[0]):
                values = [
                    np.concatenate([v, np.empty((stop - len(v), v.shape[1]), v.dtype)])
                    for v in values
                ]
            batch = slice(read, stop)
            order = np.argsort(items[batch], kind="stable")  # read in file order
            clean[batch] = True
            for s, source in enumerate(sources):
                positions = items[batch] if rows is None else rows[s][items[batch]]
                taken = values[s][batch]  # a view: the rows land in place
                taken[order] = take(source, positions[order])
                clean[batch] &= clean_mask(taken, source.dtype)
            read, stop = stop, len(items)
            if clean[:read].sum() >= count:
                break
        if clean.sum() >= count or size >= n:
            break
        size *= 4
    rng.bit_generator.state = drawing.bit_generator.state  # the caller's generator moves on
    clean_items = np.flatnonzero(clean)[:count]
    kept: Ints | slice = clean_items
    if len(clean_items) and clean_items[-1] == len(clean_items) - 1:
        kept = slice(0, len(clean_items))  # the first rows drawn, all clean: views, no copies
    return CleanDraw(items[kept], [v[kept] for v in values], int((~clean[:read]).sum()))


def _head(count: int) -> int:
    """How many drawn items are read first for ``count`` clean ones: a margin of one in eight
    (and 16) for rows that are not clean."""
    return count + count // 8 + 16


def first_positions(n: int, count: int, rng: np.random.Generator) -> Ints:
    """The positions ``draw_clean_rows(source, count, rng)`` reads first (a source of ``n``
    rows), without consuming ``rng``: what to read ahead for it."""
    return draw_positions(n, 2 * count + 16, copy.deepcopy(rng))[: _head(count)]


def read_ahead(source: EmbeddingSource, rows: Ints, take: Take | None = None) -> Take:
    """A ``take`` that serves the rows ``rows`` of ``source`` from one read made now, and any
    other row by ``take``: draws that read the same row groups (several samples of a parquet
    file) then read them once."""
    take = take or _take_source
    wanted = np.unique(np.asarray(rows, dtype=np.int64))
    values = take(source, wanted) if len(wanted) else np.empty((0, source.d), source.dtype)

    def served(asked: EmbeddingSource, positions: Ints) -> npt.NDArray[np.floating[Any]]:
        where = np.searchsorted(wanted, positions)
        inside = where < len(wanted)
        inside[inside] = wanted[where[inside]] == positions[inside]
        if asked is not source or not inside.all():
            return take(asked, positions)
        return values[where]

    return served


def draw_clean_rows(
    source: EmbeddingSource,
    count: int,
    rng: np.random.Generator,
    take: Take | None = None,
    stored: bool = False,
) -> tuple[Ints, Floats, int]:
    """Up to ``count`` clean rows of one source, drawn uniformly at random: their positions in
    draw order, the rows as float64 (``stored``: as stored), and how many drawn rows were left
    out."""
    draw = draw_clean_items(count, rng, [source], take=take, stored=stored)
    return draw.items, draw.values[0], draw.left_out
