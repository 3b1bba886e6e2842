"""The sampling plan: how many rows each measurement draws, and which corpus rows the gauge
queries search. Every draw takes its own stream (:mod:`embaudit.random_streams`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from embaudit.array_types import Ints
from embaudit.draw import draw_positions
from embaudit.model import field_values
from embaudit.params import (
    GAUGE_DRAWS,
    GAUGE_LEVELS,
    GAUGE_QUERIES,
    GAUGE_ROWS,
    GRAPHS,
    PAIRS,
    QUERIES,
    SAMPLE,
    declare,
    validate,
)
from embaudit.random_streams import Stream, generator


@dataclass(frozen=True)
class Sampling:
    """Sample sizes. Defaults keep a 1M x 768 audit within seconds; ``docs/performance.md``
    gives the statistical error they imply."""

    queries: int = declare(QUERIES)  # query rows of the cosine / L2 / dot comparison (EA4xx)
    gauge_queries: int = declare(GAUGE_QUERIES)  # the first queries, searched under each gauge
    gauge_draws: int = declare(GAUGE_DRAWS)  # random gauges per rescaling level
    gauge_rows: int | None = declare(GAUGE_ROWS)  # rows the gauge queries search (None: all)
    gauge_levels: tuple[float, ...] = declare(GAUGE_LEVELS)  # s in D = exp(N(0, s^2))
    sample: int = declare(SAMPLE)  # rows for the spectrum, pair cosines and hubness graph
    pairs: int = declare(PAIRS)  # random pairs of sample rows
    graphs: int = declare(GRAPHS)  # independent `sample`-row graphs EA501 / EA502 average

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return field_values(self) | {"gauge_levels": list(self.gauge_levels)}


def gauge_corpus(n: int, rows: int | None, seed: int, redraw: int | None = None) -> Ints | None:
    """The sorted positions of the corpus rows that the gauge queries search (EA301, EA302):
    None (every row) by default or when ``n <= rows``, else ``rows`` of the ``n`` drawn
    uniformly at random from their own stream of ``seed``, the same rows in every round of an
    audit, so that every round estimates the same overlap. ``redraw`` (a benchmark's) draws
    other rows from a child of that stream, the rest of the audit unchanged.

    Why every row: an overlap depends on how many rows are searched, since they decide how near
    the neighbours are, in either direction (a 1M x 768 clustered export: EA301 0.43 on 25,000
    rows, 0.30 on 100,000, 0.16 on every row; 400,000 rows in tight groups of 20: 0.56 on
    100,000 rows against 0.77 on every row; benchmarks/gauge_rows.py). A sample answers for a
    corpus of its size, not for the user's: the checks say so when one is asked for."""
    if rows is None or n <= rows:
        return None
    rng = generator(seed, Stream.GAUGE_ROWS, *(() if redraw is None else (redraw,)))
    return np.sort(draw_positions(n, rows, rng))
