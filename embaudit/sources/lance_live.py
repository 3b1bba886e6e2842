"""A Lance dataset's vector index, searched live: each query through Lance's own ``nearest``
search (``dataset.to_table(nearest={...})``) at Lance's own ``nprobes`` (none given: Lance
chooses) or at one of the sweep, the rows it returns by their row address (fragment id and
offset), each search timed in this process.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.sources.base import LiveIndex, LiveResults

#: Lance's metric names by --index-metric's, for the statements that rebuild an index.
LANCE_METRICS = {"cosine": "cosine", "l2": "l2", "ip": "dot"}


class LanceIndex(LiveIndex):
    """An IVF-based index (IVF_FLAT, IVF_PQ, IVF_SQ, IVF_HNSW_*) on a Lance dataset's vector
    column; ``starts`` maps each fragment id to the position of its first row."""

    settings_from = "Lance's default nprobes"
    timed = "in this process"

    def __init__(
        self, dataset: Any, column: str, info: dict[str, Any], starts: dict[int, int]
    ) -> None:
        self._dataset, self._column, self._info, self._starts = dataset, column, info, starts
        self.metric = str(info["metric"])
        self.knob, self.default = "nprobes", None
        partitions = int(info["partitions"])
        ladder = [2**i for i in range(partitions.bit_length()) if 2**i <= partitions]
        self.ladder = tuple(ladder if ladder[-1] == partitions else [*ladder, partitions])

    def title(self) -> str:
        info = self._info
        return (
            f"Lance {info['type']} index {info['name']} ({info['index_metric']}, "
            f"{info['partitions']} partitions)"
        )

    def describe(self) -> dict[str, Any]:
        info = {name: value for name, value in self._info.items() if name != "spec"}
        return info | {"probed": "live", "search_settings": {"nprobes": "Lance's default"}}

    def _positions(self, addresses: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        fragments = (addresses >> np.uint64(32)).astype(np.int64)
        offsets = (addresses & np.uint64(0xFFFFFFFF)).astype(np.int64)
        starts = np.asarray([self._starts.get(int(f), -1) for f in fragments], dtype=np.int64)
        return np.where(starts >= 0, starts + offsets, -1)

    def search(
        self,
        queries: npt.NDArray[np.floating[Any]],
        limit: int,
        setting: int | None = None,
        iterative: str | None = None,
    ) -> LiveResults:
        rows = np.full((len(queries), limit), -1, dtype=np.int64)
        elapsed = np.zeros(len(queries))
        knob = {} if setting is None else {"nprobes": int(setting)}
        for at, query in enumerate(np.asarray(queries, dtype=np.float32)):
            started = time.perf_counter()
            table = self._dataset.to_table(
                nearest={"column": self._column, "q": query, "k": limit, **knob},
                columns=[],
                with_row_address=True,
                disable_scoring_autoprojection=True,
            )
            elapsed[at] = (time.perf_counter() - started) * 1000
            addresses = table.column("_rowaddr").to_numpy().astype(np.uint64)
            rows[at, : len(addresses)] = self._positions(addresses)
        return LiveResults(rows, elapsed, len(queries))

    def set_statements(self, setting: int) -> list[str]:
        return [
            f'dataset.to_table(nearest={{"column": "{self._column}", "q": q, "k": k, '
            f'"nprobes": {setting}}})',
            f"table.search(q).nprobes({setting})",
        ]

    def set_action(self, setting: int) -> str:
        search, lancedb = self.set_statements(setting)
        return f"Search with nprobes = {setting}: {search} (LanceDB: {lancedb})"

    def iterative_statement(self, mode: str) -> str:
        return ""

    def build_statement(self, where: str | None = None, metric: str | None = None) -> str:
        chosen = LANCE_METRICS.get(metric or self.metric, metric or self.metric)
        return (
            f'dataset.create_index("{self._column}", index_type="IVF_FLAT", '
            f'num_partitions={self._info["partitions"]}, metric="{chosen}", replace=True) '
            "(exact vectors in each partition; or search with a refine_factor to re-rank)"
        )
