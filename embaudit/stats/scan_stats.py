"""The reduce step of the pass: the fragments' statistics merged in row order into the
statistics of the source (:class:`ScanStats`), with the exact check of the duplicate rows that
the hashes propose.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.errors import IncompleteError
from embaudit.sources import EmbeddingSource
from embaudit.stats.dimensions import Moments, coordinate_rms
from embaudit.stats.fold import ROW_LIST_CAP, PartStats, fold_fragment
from embaudit.stats.norm_summary import NormParts, NormSummary
from embaudit.stats.rows import ChunkConsumer, _row_words

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
    norm_summary: NormSummary  # the clean rows' norms: exact, or sketched beyond SKETCH_ROWS
    non_finite: RowSet
    nan_rows: int
    inf_rows: int
    zero: RowSet
    n_clean: int  # finite and non-zero: what the diagnostics use
    moments: Moments  # over clean rows
    unit_sum: Floats  # sum of the clean rows scaled to unit norm, per dimension
    unit_sq_sum: Floats  # sum of their squares, per dimension
    duplicate_rows: int  # clean rows identical to an earlier clean row
    duplicate_groups: list[RowSet] = field(default_factory=list)  # first groups, capped
    duplicate_group_count: int = 0
    norms: Floats | None = None  # L2 norm of every row (NaN for non-finite rows); not sketched
    clean: npt.NDArray[np.bool_] | None = None  # the clean rows; not when the engine shuffled
    #: Each row that repeats an earlier one beside the first row of its group, shape (m, 2)
    #: (``--rows-out``): every such pair, or the first PAIRS_LISTED when a shuffle found them.
    duplicate_pairs: Rows = field(default_factory=lambda: np.zeros((0, 2), np.int64))

    @property
    def non_finite_rows(self) -> Rows:
        """Every non-finite row where the norms of every row are kept, else the listed ones."""
        if self.norms is None:
            return np.asarray(self.non_finite.rows, dtype=np.int64)
        return np.flatnonzero(np.isnan(self.norms)).astype(np.int64)

    @property
    def zero_rows(self) -> Rows:
        """Every zero row where the norms of every row are kept, else the listed ones."""
        if self.norms is None or self.clean is None:
            return np.asarray(self.zero.rows, dtype=np.int64)
        return np.flatnonzero(~self.clean & ~np.isnan(self.norms)).astype(np.int64)

    @property
    def rms_coordinate(self) -> float:
        """sqrt(mean ||x||^2 / d) over the clean rows (see :func:`coordinate_rms`)."""
        summary = self.norm_summary
        if summary.exact is not None:
            return coordinate_rms(summary.exact, self.d)
        if not summary.count or summary.max == 0:
            return 0.0
        return summary.max * float(np.sqrt(summary.mean_square() / self.d))


@dataclass
class Duplicates:
    """Exact duplicate rows: how many repeat an earlier row, how many groups, and the first
    :data:`GROUPS_LISTED` groups (by their first row) with every row of each."""

    rows: int
    count: int
    groups: list[list[int]]
    #: (later row, first row of its group) for each repeating row: every one when found here,
    #: the first PAIRS_LISTED when the buckets of a shuffle are merged (the driver holds no
    #: more).
    pairs: Rows = field(default_factory=lambda: np.zeros((0, 2), np.int64))

    @classmethod
    def merged(cls, parts: Iterable[Duplicates]) -> Duplicates:
        """Those of disjoint sets of rows (the buckets of a shuffle), together."""
        parts = list(parts)
        groups = sorted((group for part in parts for group in part.groups), key=lambda g: g[0])
        pairs = np.concatenate([np.zeros((0, 2), np.int64), *(part.pairs for part in parts)])
        return cls(
            sum(part.rows for part in parts),
            sum(part.count for part in parts),
            groups[:GROUPS_LISTED],
            pairs[np.argsort(pairs[:, 0], kind="stable")][:PAIRS_LISTED],
        )


#: Duplicate groups a finding lists.
GROUPS_LISTED = 5

#: Duplicate pairs a shuffle's merge keeps for ``--rows-out`` (the driver's memory is bounded).
PAIRS_LISTED = 100_000


class PartMerge:
    """The parts of a pass folded in row order as they arrive, in any order: a part waits only
    until the parts before it have come, so an engine holds the parts that arrived early, not
    every part until the end. The sums are folded in row order whatever the arrival order."""

    def __init__(self, source: EmbeddingSource) -> None:
        d = source.d
        self.n = source.n
        self.moments, self.unit_sum, self.unit_sq_sum = Moments.empty(d), np.zeros(d), np.zeros(d)
        self.rows: _PerRow | None = None
        self.covered = 0  # rows [0, covered) are folded
        self.waiting: dict[int, PartStats] = {}

    def add(self, part: PartStats) -> None:
        self.waiting[part.start] = part
        while self.covered in self.waiting:
            ready = self.waiting.pop(self.covered)
            self.moments = self.moments.merge(ready.moments)
            self.unit_sum += ready.unit_sum
            self.unit_sq_sum += ready.unit_sq_sum
            if self.rows is None:
                self.rows = _PerRow(self.n, sketched=ready.norms is None)
            self.rows.add(ready)
            self.covered = ready.stop


def finish(
    source: EmbeddingSource,
    parts: list[PartStats] | PartMerge,
    take: Callable[[Rows], npt.NDArray[np.floating[Any]]] | None = None,
    duplicates: Duplicates | None = None,
) -> ScanStats:
    """Merge the statistics of every fragment, in row order, into the statistics of the source.

    ``parts`` is a list (consumed: emptied as its per-row arrays are copied out, so the merge
    holds each row's data once) or a :class:`PartMerge` that folded them as they came. ``take``
    fetches rows for the exact duplicate check (default: ``source.take``); ``duplicates``, when
    the engine found them itself (the parts then carry no hashes). Raises
    :class:`~embaudit.errors.IncompleteError` unless the parts cover every row exactly once: a
    report is never built from part of the data.
    """
    if isinstance(parts, list):
        merge = PartMerge(source)
        for part in sorted(parts, key=lambda part: part.start):
            merge.add(part)
        parts.clear()
    else:
        merge = parts
    rows = merge.rows
    if merge.covered != source.n or merge.waiting or rows is None:
        raise IncompleteError(source.path, f"only {merge.covered:,} of {source.n:,} rows were read")
    d = source.d
    moments, unit_sum, unit_sq_sum = merge.moments, merge.unit_sum, merge.unit_sq_sum
    clean = rows.clean_mask()
    if duplicates is None:
        if clean is None:
            raise RuntimeError("the parts carry no hashes and no duplicates were given")
        duplicates = _duplicates(rows.hashes, clean, take or source.take)
    non_finite, zero = rows.listed["non_finite"], rows.listed["zero"]
    return ScanStats(
        n=source.n,
        d=d,
        dtype=source.dtype,
        norm_summary=rows.summary(source),
        non_finite=_row_set(source, non_finite.rows, non_finite.count),
        nan_rows=rows.nan_rows,
        inf_rows=non_finite.count - rows.nan_rows,
        zero=_row_set(source, zero.rows, zero.count),
        n_clean=source.n - non_finite.count - zero.count,
        moments=moments,
        unit_sum=unit_sum,
        unit_sq_sum=unit_sq_sum,
        duplicate_rows=duplicates.rows,
        duplicate_groups=[
            _row_set(source, np.asarray(group, dtype=np.int64)) for group in duplicates.groups
        ],
        duplicate_group_count=duplicates.count,
        norms=rows.norms,
        clean=clean,
        duplicate_pairs=duplicates.pairs,
    )


@dataclass
class _Listed:
    rows: Rows
    count: int


class _PerRow:
    """What the parts say row by row, merged in row order: the norms (or their summary), the
    clean rows and their hashes (when the parts carry them), the listed rows and counts."""

    def __init__(self, n: int, *, sketched: bool) -> None:
        self.norms: Floats | None = None if sketched else np.empty(n)
        self.parts: NormParts | None = NormParts.empty() if sketched else None
        self.clean_blocks: list[npt.NDArray[np.bool_]] = []
        self.hashes: list[npt.NDArray[np.uint64]] = []
        self.listed = {
            name: _Listed(np.empty(0, dtype=np.int64), 0) for name in ("non_finite", "zero")
        }
        self.nan_rows = 0

    def add(self, part: PartStats) -> None:
        if self.norms is not None and part.norms is not None:
            self.norms[part.start : part.stop] = part.norms
        elif self.parts is not None and part.norm_parts is not None:
            self.parts.merge(part.norm_parts)
        if part.hashes is not None:
            self.hashes.append(part.hashes)
            self.clean_blocks.append(part.clean)
        for name, listed in self.listed.items():
            rows = getattr(part, name)
            if len(listed.rows) < ROW_LIST_CAP and len(rows):
                listed.rows = np.concatenate([listed.rows, rows])[:ROW_LIST_CAP]
            listed.count += getattr(part, f"{name}_count")
        self.nan_rows += part.nan_rows

    def clean_mask(self) -> npt.NDArray[np.bool_] | None:
        """The clean rows, when the parts carried them with their hashes."""
        return np.concatenate(self.clean_blocks) if self.clean_blocks else None

    def summary(self, source: EmbeddingSource) -> NormSummary:
        if self.norms is not None:
            return NormSummary(exact=self.norms[self.norms >= np.finfo(source.dtype).tiny])
        return NormSummary(parts=self.parts)


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


def _row_set(source: EmbeddingSource, rows: Rows, count: int | None = None) -> RowSet:
    """The rows (the first of ``count`` when given) as a finding lists them, with their ids."""
    listed = rows[:ROW_LIST_CAP]
    ids = source.ids(listed) if len(listed) else ([] if source.id_column else None)
    return RowSet(len(rows) if count is None else count, [int(r) for r in listed], ids)


def _duplicates(
    hashes: list[npt.NDArray[np.uint64]],
    clean: npt.NDArray[np.bool_],
    take: Callable[[Rows], npt.NDArray[np.floating[Any]]],
) -> Duplicates:
    """Exact duplicate rows among the clean rows.

    ``hashes`` are the row hashes of consecutive fragments. Hash values that occur more than once
    among the clean rows (found by sorting one copy of the hashes in place) make their rows
    candidates; candidates are fetched and grouped by a BLAKE2b-128 digest of their bits, so that
    only identical rows (up to -0.0 == 0.0) group. Returns the number of rows that repeat an
    earlier row, the first groups, and the group count. Beyond the hashes, it holds 8 bytes per
    row (the sorted copy) and the candidates.
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
    return confirm_duplicates(np.concatenate(found), take)


def confirm_duplicates(
    candidates: Rows, take: Callable[[Rows], npt.NDArray[np.floating[Any]]]
) -> Duplicates:
    """The identical rows among ``candidates`` (ascending positions whose hashes repeat),
    fetched :data:`_VERIFY_BATCH` at a time and grouped by a BLAKE2b-128 digest of their bits."""
    groups: dict[bytes, list[int]] = {}
    for start in range(0, len(candidates), _VERIFY_BATCH):
        batch = candidates[start : start + _VERIFY_BATCH]
        words = _row_words(take(batch))
        for row, bits in zip(batch.tolist(), words, strict=True):
            digest = hashlib.blake2b(bits.tobytes(), digest_size=16).digest()
            groups.setdefault(digest, []).append(row)
    repeated = sorted(
        (sorted(rows) for rows in groups.values() if len(rows) > 1), key=lambda r: r[0]
    )
    duplicate_rows = sum(len(rows) - 1 for rows in repeated)
    later = [np.asarray(rows[1:], np.int64) for rows in repeated]
    firsts = [np.full(len(rows) - 1, rows[0], np.int64) for rows in repeated]
    pairs = np.stack(
        [
            np.concatenate([np.zeros(0, np.int64), *later]),
            np.concatenate([np.zeros(0, np.int64), *firsts]),
        ],
        axis=1,
    )
    return Duplicates(duplicate_rows, len(repeated), repeated[:GROUPS_LISTED], pairs)
