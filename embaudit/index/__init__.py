"""Index readiness: build the faiss index a user will deploy, search the query sample with it,
and compare what it returns with the exact neighbours (EA701 ann-recall, EA702
index-vs-objective).

    spec ── index_factory ── train on a seeded sample (when the index needs training)
         ── add every clean row, chunk by chunk (or a seeded sample of rows)
         ── search the queries for k + 1 and drop the query's own row, at faiss's default search
            parameters and along the search knob (efSearch, nprobe)
         ── overlap with the exact lists of :class:`~embaudit.knn.NeighborSearch`: under the
            index's metric (its recall) and under the declared objective's metric

The exact lists are those the audit already has (the query sample against every clean row); when
the index is built on a sample, the same search runs on that sample instead, so both sides always
see the same rows. The overlap is the tie-aware overlap@k of :meth:`NeighborSearch.overlap`: a row
the index returns counts when its exact score reaches the k-th exact score up to float32 rounding,
so a duplicate of a true neighbour is never a miss.

faiss is imported on first use, with its import-time warnings kept inside; what it prints while
training (a clustering with fewer points than it recommends, say) is captured, never shown.

:mod:`embaudit.index.plan` holds what to build (:class:`IndexPlan`) and the metrics;
:mod:`embaudit.index.faiss_import` the quiet import of faiss; :mod:`embaudit.index.build` the
building of the index; :mod:`embaudit.index.sweep` its search at the default setting and along the
knob; :mod:`embaudit.index.readiness` the two end to end (:func:`build_index`,
:class:`BuiltIndex`, :class:`IndexMeasurement`).
"""

from __future__ import annotations

from embaudit.index.build import (
    ADD_ROWS,
    TRAIN_MAX,
    TRAIN_MIN,
    TRAIN_PER_LIST,
    check_plan,
    new_index,
    training_sample,
)

# _hnsw_of and _faiss, which tests/test_index.py and benchmarks/bench_index.py read here.
from embaudit.index.build import _hnsw_of as _hnsw_of
from embaudit.index.faiss_import import CORETYPE, kernel_for_faiss, numpy_blas_kernel
from embaudit.index.faiss_import import _faiss as _faiss
from embaudit.index.plan import (
    EXACT_METRIC,
    IndexMetric,
    IndexPlan,
    default_metric,
    objective_metric,
)
from embaudit.index.readiness import BuiltIndex, IndexMeasurement, build_index, measure_index
from embaudit.index.sweep import EF_SEARCH_LADDER, PLATEAU, SweepPoint

__all__ = [
    "ADD_ROWS",
    "CORETYPE",
    "EF_SEARCH_LADDER",
    "EXACT_METRIC",
    "PLATEAU",
    "TRAIN_MAX",
    "TRAIN_MIN",
    "TRAIN_PER_LIST",
    "BuiltIndex",
    "IndexMeasurement",
    "IndexMetric",
    "IndexPlan",
    "SweepPoint",
    "build_index",
    "check_plan",
    "default_metric",
    "kernel_for_faiss",
    "measure_index",
    "new_index",
    "numpy_blas_kernel",
    "objective_metric",
    "training_sample",
]
