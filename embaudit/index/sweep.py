"""Searching a built index: its lists for the query sample (the query's own row dropped), scored
as the exact search scores its own, at the default setting and along the search knob (efSearch,
nprobe) until recall reaches 1 or stops rising.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.array_types import Ints
from embaudit.index.build import ADD_ROWS, _Database, _hnsw_of, unit_rows_of
from embaudit.index.faiss_import import _faiss
from embaudit.knn import NeighborList

Rows32 = npt.NDArray[np.float32]

#: efSearch settings tried for HNSW indexes (faiss's default, 16, first). faiss searches with
#: max(efSearch, k + 1), so settings below k + 1 all behave as k + 1.
EF_SEARCH_LADDER = (16, 32, 64, 128, 256, 512)
#: The sweep stops once recall has risen by less than this over its last two settings.
PLATEAU = 1e-3


@dataclass(frozen=True)
class SweepPoint:
    """One setting of the search knob and what the index returns with it."""

    param: str
    value: int
    recall: float  # mean overlap@k with the exact lists under the index's metric
    objective_overlap: float  # mean overlap@k with the exact lists under the objective's
    ms_per_query: float  # wall time of the batch of queries, per query
    #: A stored index searched live: the server's execution time per query (median, 95th
    #: percentile), the rows it returned per query (mean) and the share of queries it returned
    #: fewer than k for, and the iterative-scan mode set for the sweep (None: the server's).
    p50_ms: float | None = None
    p95_ms: float | None = None
    returned: float | None = None
    short: float | None = None
    mode: str | None = None


@dataclass(frozen=True)
class _Knob:
    name: str  # the faiss ParameterSpace name
    default: int
    ladder: tuple[int, ...]


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
            part_norms, part_unit = unit_rows_of(values, self.database.dtype)  # as the pass
            norms.append(part_norms)
            units.append(part_unit)
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
