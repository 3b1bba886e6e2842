"""The rows of the geometry sample, collected from the clean rows as the chunks stream by."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from embaudit.stats.rows import CleanRows

Floats = npt.NDArray[np.float64]
Rows = npt.NDArray[np.int64]


class RowCollector:
    """Keeps the clean rows at chosen positions as the chunks stream by (the geometry sample).

    Collectors of different fragments merge: the rows come back in the order they were drawn."""

    def __init__(self, positions: Rows) -> None:
        self.drawn = positions
        self.order = np.argsort(positions, kind="stable")
        self.positions = positions[self.order]
        self.rank: list[Rows] = []
        self.rows: list[Floats] = []

    def __call__(self, rows: CleanRows) -> None:
        # Both position lists are sorted: a merge by searchsorted finds the wanted clean rows.
        if not len(rows.positions):
            return
        at = np.searchsorted(rows.positions, self.positions).clip(max=len(rows.positions) - 1)
        found = rows.positions[at] == self.positions
        self.rank.append(self.order[found])
        self.rows.append(rows.values[at[found]].astype(np.float64))

    def fresh(self) -> RowCollector:
        """An empty collector of the same positions."""
        clone = RowCollector.__new__(RowCollector)
        clone.order, clone.positions, clone.rank, clone.rows = self.order, self.positions, [], []
        clone.drawn = self.drawn
        return clone

    def absorb(self, other: RowCollector) -> None:
        self.rank += other.rank
        self.rows += other.rows

    def collected(self, limit: int, d: int) -> Floats:
        """The first ``limit`` clean rows in the order they were drawn."""
        if not self.rows:
            return np.empty((0, d))
        rank, rows = np.concatenate(self.rank), np.concatenate(self.rows)
        return rows[np.argsort(rank, kind="stable")][:limit]

    def collected_positions(self, limit: int) -> Rows:
        """The positions of the rows :meth:`collected` returns, in the same order."""
        if not self.rank:
            return np.zeros(0, np.int64)
        return self.drawn[np.sort(np.concatenate(self.rank), kind="stable")][:limit]
