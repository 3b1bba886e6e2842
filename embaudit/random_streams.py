"""Every random stream of an audit, in one place.

Each random choice (the query rows, the sample rows, the gauge draws, …) draws from its own
stream, a child of ``SeedSequence(seed)`` with its own spawn key, so that changing one sample
size never changes another sample, and a stream's number is public: the tests reproduce a draw
by asking for the same stream (as scikit-learn's ``random_state`` makes every draw repeatable).
Never renumber a stream: the reports of a seed would change.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    """The spawn key of each random choice of ``embaudit check`` and ``compare-knn``."""

    QUERIES = 0  # the query rows (EA4xx, EA005, EA206, EA503; compare-knn's queries)
    SAMPLE = 1  # the sample rows of the geometry (EA203, EA204, EA205, EA501, EA502)
    GAUGES = 2  # the random diagonal gauges D = exp(N(0, s^2)) (EA301)
    PAIRS = 3  # the random pairs of sample rows (EA201, EA204)
    REFERENCE = 4  # the isotropic Gaussian sample the statistics are compared with
    INDEX_TRAIN = 5  # the rows an index of --index is trained on (EA701, EA702)
    INDEX_SAMPLE = 6  # the rows it is built on with --index-sample
    FLOOR = 7  # corpus rows searched after a query file's, for EA503's floor
    SCALE = 8  # the rows the canonical gauge is estimated on (EA302)
    JITTER = 9  # the canonical gauge's jitter by its estimation error (EA302's error)
    GRAPHS = 10  # the further independent samples whose graphs EA501 and EA502 average
    GAUGE_ROWS = 11  # the corpus rows the gauge queries search (EA301, EA302)


def generator(seed: int, stream: Stream, *more: int) -> np.random.Generator:
    """The generator of ``stream`` for ``seed`` (``more``: a child of that stream, e.g. the
    i-th further graph). Equal to ``SeedSequence(seed).spawn(n)[stream]`` for a bare stream."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(stream), *more)))


class TowerStream(IntEnum):
    """The streams of ``embaudit gauge``: the gauges tried on each tower, and the towers' rows."""

    ITEM_GAUGES = 0
    USER_GAUGES = 1
    ROWS = 2


def tower_generator(seed: int, stream: TowerStream) -> np.random.Generator:
    """The generator of ``stream`` of ``embaudit gauge`` for ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([seed, int(stream)]))
