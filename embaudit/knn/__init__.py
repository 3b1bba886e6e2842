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

:mod:`embaudit.knn.products` multiplies a chunk's rows with the stacked queries (slabs, tiles,
the gauges' row factors, the memory kept between steps); :mod:`embaudit.knn.select` holds the
streamed top-k selection (the tiles' bounds, the candidates and their merge into the running
lists); :mod:`embaudit.knn.search` holds
:class:`NeighborSearch` (the stacked query blocks, the merge of fragments' searches, the
results and their tie-aware overlap) and the brute-force reference :func:`exact_lists`.
"""

from __future__ import annotations

from embaudit.knn.products import SLAB, TILE, Block
from embaudit.knn.search import EXTERNAL_ROW, METRICS, NeighborSearch, exact_lists
from embaudit.knn.select import TIE_ULPS, NeighborList, SharedBars, TopKSelection
from embaudit.stats import Scratch

__all__ = [
    "EXTERNAL_ROW",
    "METRICS",
    "SLAB",
    "TIE_ULPS",
    "TILE",
    "Block",
    "NeighborList",
    "NeighborSearch",
    "Scratch",
    "SharedBars",
    "TopKSelection",
    "exact_lists",
]
