"""The reduce step of the pass: the fragments' statistics merged in row order into the
statistics of the source (:class:`ScanStats`), with the exact check of the duplicate rows that
the hashes propose.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.errors import IncompleteError
from embaudit.sources import EmbeddingSource
from embaudit.stats.dimensions import Moments, coordinate_rms
from embaudit.stats.fold import PartStats, fold_fragment
from embaudit.stats.rows import ChunkConsumer, _row_words

#: How many offending rows a finding lists; the count is always complete.
ROW_LIST_CAP = 20
#: Candidate duplicate rows fetched at a time for exact verification.
_VERIFY_BATCH = 8192

Floats = npt.NDArray[np.float64]
Rows = npt.NDArray[np.int64]


@dataclass(frozen=True)
class RowSet:
    """Rows singled out by a check: the full count, the first positions and their ids."""

    count: int
    rows: list[int]
    ids: list[Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count, "rows": self.rows}
        if self.ids is not None:
            out["ids"] = self.ids
        out["truncated"] = self.count > len(self.rows)
        return out


@dataclass
class ScanStats:
    """What one pass learns about the source. Row positions are global, 0-based."""

    n: int
    d: int
    dtype: np.dtype[Any]
    norms: Floats  # L2 norm of every row; NaN for non-finite rows
    non_finite: RowSet
    nan_rows: int
    inf_rows: int
    zero: RowSet
    clean: npt.NDArray[np.bool_]  # finite and non-zero: what the diagnostics use
    moments: Moments  # over clean rows
    unit_sum: Floats  # sum of the clean rows scaled to unit norm, per dimension
    unit_sq_sum: Floats  # sum of their squares, per dimension
    duplicate_rows: int  # clean rows identical to an earlier clean row
    duplicate_groups: list[RowSet] = field(default_factory=list)  # first groups, capped
    duplicate_group_count: int = 0
    #: Every row singled out, uncapped (``--rows-out``): the non-finite rows, the zero rows, and
    #: each row that repeats an earlier one beside the first row of its group, shape (m, 2).
    non_finite_rows: Rows = field(default_factory=lambda: np.zeros(0, np.int64))
    zero_rows: Rows = field(default_factory=lambda: np.zeros(0, np.int64))
    duplicate_pairs: Rows = field(default_factory=lambda: np.zeros((0, 2), np.int64))

    @property
    def n_clean(self) -> int:
        return int(self.clean.sum())

    @property
    def clean_norms(self) -> Floats:
        return self.norms[self.clean]

    @property
    def rms_coordinate(self) -> float:
        """sqrt(mean ||x||^2 / d) over the clean rows (see :func:`coordinate_rms`)."""
        return coordinate_rms(self.clean_norms, self.d)


def finish(
    source: EmbeddingSource,
    parts: list[PartStats],
    take: Callable[[Rows], npt.NDArray[np.floating[Any]]] | None = None,
) -> ScanStats:
    """Merge the statistics of every fragment, in row order, into the statistics of the source.

    Consumes ``parts`` (the list is emptied as its per-row arrays are copied out, so the merge
    holds each row's data once). ``take`` fetches rows for the exact duplicate check (default:
    ``source.take``). Raises :class:`~embaudit.errors.IncompleteError` unless the parts cover
    every row exactly once: a report is never built from part of the data.
    """
    parts.sort(key=lambda part: part.start)
    covered = 0
    for part in parts:
        if part.start != covered:
            break
        covered = part.stop
    if covered != source.n:
        raise IncompleteError(source.path, f"only {covered:,} of {source.n:,} rows were read")
    d = source.d
    tiny = np.finfo(source.dtype).tiny
    moments, unit_sum, unit_sq_sum = Moments.empty(d), np.zeros(d), np.zeros(d)
    norms = np.empty(source.n)
    non_finite: list[Rows] = []
    nan_rows = 0
    hashes: list[npt.NDArray[np.uint64]] = []
    for part in parts:
        moments = moments.merge(part.moments)
        unit_sum += part.unit_sum
        unit_sq_sum += part.unit_sq_sum
        norms[part.start : part.stop] = part.norms
        non_finite.append(part.non_finite)
        nan_rows += part.nan_rows
        hashes.append(part.hashes)
    parts.clear()
    non_finite_rows = np.concatenate(non_finite)
    clean = norms >= tiny  # NaN (non-finite rows) compares false
    zero_rows = np.flatnonzero(~clean)
    zero_rows = zero_rows[~np.isnan(norms[zero_rows])]
    repeated = _duplicates(source, hashes, clean, take or source.take)
    later = [np.asarray(rows[1:], np.int64) for rows in repeated]
    firsts = [np.full(len(rows) - 1, rows[0], np.int64) for rows in repeated]
    pairs = np.stack([np.concatenate([np.zeros(0, np.int64), *later]),
                      np.concatenate([np.zeros(0, np.int64), *firsts])], axis=1)  # fmt: skip
    return ScanStats(
        n=source.n,
        d=d,
        dtype=source.dtype,
        norms=norms,
        non_finite=_row_set(source, non_finite_rows),
        nan_rows=nan_rows,
        inf_rows=len(non_finite_rows) - nan_rows,
        zero=_row_set(source, zero_rows),
        clean=clean,
        moments=moments,
        unit_sum=unit_sum,
        unit_sq_sum=unit_sq_sum,
        duplicate_rows=len(pairs),
        duplicate_groups=[_row_set(source, np.asarray(rows, np.int64)) for rows in repeated[:5]],
        duplicate_group_count=len(repeated),
        non_finite_rows=non_finite_rows.astype(np.int64),
        zero_rows=zero_rows.astype(np.int64),
        duplicate_pairs=pairs,
    )


def scan(
    source: EmbeddingSource,
    *,
    chunk_rows: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
    consumers: Sequence[ChunkConsumer] = (),
) -> ScanStats:
    """Read the source once, fragment by fragment in this process, and compute every mergeable
    statistic (see :mod:`embaudit.engines` for the same pass on a cluster)."""
    parts = []
    for fragment in source.fragments():
        part = fold_fragment(
            source, fragment, consumers=[consumers], chunk_rows=chunk_rows, on_chunk=on_chunk
        )
        assert part is not None  # statistics were asked for
        parts.append(part)
    return finish(source, parts)


def _row_set(source: EmbeddingSource, rows: Rows) -> RowSet:
    listed = rows[:ROW_LIST_CAP]
    ids = source.ids(listed) if len(listed) else ([] if source.id_column else None)
    return RowSet(len(rows), [int(r) for r in listed], ids)


def _duplicates(
    source: EmbeddingSource,
    hashes: list[npt.NDArray[np.uint64]],
    clean: npt.NDArray[np.bool_],
    take: Callable[[Rows], npt.NDArray[np.floating[Any]]],
) -> list[list[int]]:
    """Exact duplicate rows among the clean rows: the groups of identical rows, each in row
    order, ordered by their first row.

    ``hashes`` are the row hashes of consecutive fragments. Hash values that occur more than once
    among the clean rows (found by sorting one copy of the hashes in place) make their rows
    candidates; candidates are fetched and grouped by a BLAKE2b-128 digest of their bits, so that
    only identical rows (up to -0.0 == 0.0) group. Beyond the hashes, it holds 8 bytes per row
    (the sorted copy) and the candidates.
    """
    bounds = np.cumsum([0, *(len(block) for block in hashes)])
    spans = list(zip(hashes, bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    ordered = np.concatenate([block[clean[start:stop]] for block, start, stop in spans])
    ordered.sort()
    repeated_values = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    del ordered
    found: list[Rows] = [np.empty(0, dtype=np.int64)]
    for block, start, stop in spans:
        if len(repeated_values):
            at = np.searchsorted(repeated_values, block).clip(max=len(repeated_values) - 1)
            hit = (repeated_values[at] == block) & clean[start:stop]
            found.append(start + np.flatnonzero(hit))
    candidates = np.concatenate(found)
    groups: dict[bytes, list[int]] = {}
    for start in range(0, len(candidates), _VERIFY_BATCH):
        batch = candidates[start : start + _VERIFY_BATCH]
        words = _row_words(take(batch))
        for row, bits in zip(batch.tolist(), words, strict=True):
            digest = hashlib.blake2b(bits.tobytes(), digest_size=16).digest()
            groups.setdefault(digest, []).append(row)
    return sorted((sorted(rows) for rows in groups.values() if len(rows) > 1), key=lambda r: r[0])
