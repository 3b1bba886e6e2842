"""One streaming pass over the source: defects, norms, per-dimension moments, duplicates.

Everything here is a mergeable statistic: each chunk is folded into the statistics of its
fragment (:func:`fold_fragment`, the map step an engine runs anywhere), and the fragments' parts
are merged in row order (:func:`finish`, the reduce), so the pass never holds more than a chunk
of vectors. Sums run in float64 (float16 and float32 values square exactly into float64, so norms
of values near 1e30 or 1e-30 stay finite).

:mod:`embaudit.stats.rows` holds what the pass computes per row (norms, the clean-row rule, the
row hashes, the clean rows the consumers see); :mod:`embaudit.stats.dimensions` the per-dimension
statistics (moments, dead dimensions); :mod:`embaudit.stats.fold` the map step;
:mod:`embaudit.stats.scan_stats` the reduce step and the statistics of the source;
:mod:`embaudit.stats.collector` the collector of the geometry sample's rows.
"""

from __future__ import annotations

from embaudit.stats.collector import RowCollector
from embaudit.stats.dimensions import DEAD_RATIO, Moments, coordinate_rms, dead_dimension_mask
from embaudit.stats.fold import FOLD_BYTES, ROW_LIST_CAP, PartStats, fold_fragment
from embaudit.stats.norm_summary import NormSummary, ks_statistic, sketched
from embaudit.stats.rows import ChunkConsumer, CleanRows, clean_mask, row_norms, scaled_to_unit

# _hash_rows, _hash_weights and _row_words (the row hash's parts), which tests/test_stats.py and
# benchmarks/hash_collisions.py read here.
from embaudit.stats.rows import _hash_rows as _hash_rows
from embaudit.stats.rows import _hash_weights as _hash_weights
from embaudit.stats.rows import _row_words as _row_words
from embaudit.stats.scan_stats import (
    Duplicates,
    PartMerge,
    RowSet,
    ScanStats,
    confirm_duplicates,
    finish,
    scan,
)
from embaudit.stats.scratch import Scratch

__all__ = [
    "DEAD_RATIO",
    "FOLD_BYTES",
    "ROW_LIST_CAP",
    "ChunkConsumer",
    "CleanRows",
    "Duplicates",
    "Moments",
    "NormSummary",
    "PartMerge",
    "PartStats",
    "RowCollector",
    "RowSet",
    "ScanStats",
    "Scratch",
    "clean_mask",
    "confirm_duplicates",
    "coordinate_rms",
    "dead_dimension_mask",
    "finish",
    "fold_fragment",
    "ks_statistic",
    "row_norms",
    "scaled_to_unit",
    "scan",
    "sketched",
]
