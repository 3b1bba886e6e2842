"""``--rows-out FILE``: the rows behind the findings, one line per flagged input row.

``check`` writes every row a per-row rule singles out — EA001 non-finite, EA002 zero, EA003 an
exact copy of an earlier row, EA005 a near-duplicate, EA501 a hub, EA503 an isolated row — with
what ties it (the partner row and its cosine, the k-occurrence, the bound it crossed).
``compare-knn OLD NEW`` writes the queried items whose neighbours changed, least overlap first.
The file is parquet, or CSV when its name ends in ``.csv``; docs/output.md gives the schema.
EA001 to EA003 list every such row of the input; EA005, EA501 and EA503 the rows of the samples
they measure (their queries, the hubness graph's rows).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embaudit.array_types import Ints
from embaudit.checks import AuditData
from embaudit.checks.common import with_corpus_hygiene, with_hygiene
from embaudit.compare import FilesComparison
from embaudit.model import CheckResult
from embaudit.output_files import write_atomically
from embaudit.sources import EmbeddingSource

#: A row is a hub of the hubness graph (EA501) when it is in at least this many times k of the
#: other rows' k-nearest lists: twice the mean k-occurrence, which is k.
HUB_FACTOR = 2


@dataclass
class _Rows:
    """The columns of the ``check`` file, filled code by code."""

    columns: dict[str, list[Any]] = field(
        default_factory=lambda: {
            name: []
            for name in (
                "row", "code", "name", "status", "reason", "partner_row", "cosine",
                "k_occurrence", "bound",
            )
        }
    )  # fmt: skip

    def add(
        self,
        check: CheckResult,
        rows: Ints,
        reason: str,
        *,
        partner: Ints | None = None,
        cosine: Any = None,
        k_occurrence: Ints | None = None,
        bound: float | None = None,
    ) -> None:
        count, order = len(rows), np.argsort(rows, kind="stable")
        rows = rows[order]
        partner = None if partner is None else partner[order]
        cosine = None if cosine is None else np.asarray(cosine)[order]
        k_occurrence = None if k_occurrence is None else k_occurrence[order]
        values = {
            "row": rows.tolist(),
            "code": [check.code] * count,
            "name": [check.name] * count,
            "status": [check.status.value] * count,
            "reason": [reason] * count,
            "partner_row": [None] * count if partner is None else partner.tolist(),
            "cosine": [None] * count if cosine is None else cosine.tolist(),
            "k_occurrence": [None] * count if k_occurrence is None else k_occurrence.tolist(),
            "bound": [bound] * count,
        }
        for name, column in values.items():
            self.columns[name] += column


def flagged_rows(
    data: AuditData, checks: list[CheckResult], source: EmbeddingSource
) -> dict[str, list[Any]]:
    """The columns of ``check``'s rows file: the rows every per-row rule singles out."""
    by_code = {check.code: check for check in checks}
    found = _Rows()
    stats = data.stats
    if "EA001" in by_code:
        found.add(by_code["EA001"], stats.non_finite_rows, "NaN, Inf or null values")
    if "EA002" in by_code:
        found.add(by_code["EA002"], stats.zero_rows, "zero vector: cosine is undefined")
    if "EA003" in by_code:
        pairs = stats.duplicate_pairs
        found.add(by_code["EA003"], pairs[:, 0], "exact copy of partner_row", partner=pairs[:, 1])
    if "EA005" in by_code:
        _near_duplicates(found, by_code["EA005"], data)
    if "EA501" in by_code:
        _hubs(found, by_code["EA501"], data)
    if "EA503" in by_code:
        _isolated(found, by_code["EA503"], data)
    return _with_ids(found.columns, source)


def _near_duplicates(found: _Rows, check: CheckResult, data: AuditData) -> None:
    measured = with_corpus_hygiene(data)
    if measured is None:
        return
    hygiene, queries = measured
    cutoff = data.params.near_duplicate_cosine
    near = queries[hygiene.near_cosine[queries] >= cutoff - hygiene.tie_tolerance]
    found.add(
        check,
        hygiene.query_positions[near],
        f"nearest other row (partner_row) at cosine >= {cutoff:g}",
        partner=hygiene.near_row[near],
        cosine=hygiene.near_cosine[near],
        bound=cutoff,
    )


def _hubs(found: _Rows, check: CheckResult, data: AuditData) -> None:
    sample = data.geometry
    if sample is None or sample.graph.hubness is None or not len(sample.graph_positions):
        return
    k = sample.graph.hubness_k
    occurrence = sample.graph.hubness.k_occurrence[: len(sample.graph_positions)]
    hubs = np.flatnonzero(occurrence >= HUB_FACTOR * k)
    found.add(
        check,
        sample.graph_positions[hubs],
        f"hub: in at least {HUB_FACTOR * k} of the {sample.graph.m:,} sampled rows' "
        f"{k}-nearest lists",
        k_occurrence=occurrence[hubs],
        bound=float(HUB_FACTOR * k),
    )


def _isolated(found: _Rows, check: CheckResult, data: AuditData) -> None:
    measured = with_hygiene(data)
    floor = check.metrics.get("floor")
    if measured is None or floor is None or measured[0].external:
        return  # queries from a query file are not rows of the input
    hygiene, queries = measured
    below = queries[hygiene.nearest_cosine[queries] < floor]
    found.add(
        check,
        hygiene.query_positions[below],
        "nearest other row (partner_row) below the corpus's floor of nearest cosines",
        partner=hygiene.nearest_row[below],
        cosine=hygiene.nearest_cosine[below],
        bound=float(floor),
    )


def _with_ids(columns: dict[str, list[Any]], source: EmbeddingSource) -> dict[str, list[Any]]:
    """The columns with ``id`` and ``partner_id`` (as text) when the source has ids."""
    if source.id_column is None:
        return columns
    named = sorted({row for row in (*columns["row"], *columns["partner_row"]) if row is not None})
    ids = dict(zip(named, source.ids(np.asarray(named, dtype=np.int64)) or [], strict=True))

    def text(row: int | None) -> str | None:
        return None if row is None else str(ids[row])

    at = list(columns).index("row") + 1
    items = list(columns.items())
    items.insert(at, ("id", [text(row) for row in columns["row"]]))
    partner_at = [name for name, _ in items].index("partner_row") + 1
    items.insert(partner_at, ("partner_id", [text(row) for row in columns["partner_row"]]))
    return dict(items)


def changed_items(comparison: FilesComparison) -> dict[str, list[Any]]:
    """The columns of ``compare-knn OLD NEW``'s rows file: every queried item whose neighbours
    changed (overlap@k below 1), least overlap first."""
    order = np.argsort(comparison.per_query, kind="stable")
    order = order[comparison.per_query[order] < 1.0]
    return {
        "id": [str(comparison.query_ids[i]) for i in order],
        "overlap_at_k": [float(comparison.per_query[i]) for i in order],
        "k": [comparison.k] * len(order),
    }


def write_rows(path: Path, columns: dict[str, list[Any]]) -> None:
    """Write ``columns`` to ``path``: CSV when its name ends in ``.csv``, else parquet, so that a
    reader never sees half of it (:func:`~embaudit.output_files.write_atomically`)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    table = pa.table(
        {name: pa.array(values, type=_arrow_types()[name]) for name, values in columns.items()}
    )

    def write(where: Path) -> None:
        if path.suffix.lower() == ".csv":
            pa_csv.write_csv(table, where)
        else:
            pq.write_table(table, where)

    write_atomically(path, write, "--rows-out")


@functools.cache
def _arrow_types() -> dict[str, Any]:
    """The Arrow type of each column of a rows file (pyarrow loaded when one is written)."""
    import pyarrow as pa

    text, whole, real = pa.string(), pa.int64(), pa.float64()
    return {
        "row": whole, "id": text, "code": text, "name": text, "status": text, "reason": text,
        "partner_row": whole, "partner_id": text, "cosine": real, "k_occurrence": whole,
        "bound": real, "overlap_at_k": real, "k": whole,
    }  # fmt: skip
