"""How evenly the corpus rows fill the cosine k-NN lists of a whole query population, at the
corpus's own size: of every corpus row as a query (the corpus's k-NN graph, EA501) or of every
row of a query file (EA504), estimated from the lists of the sampled queries over every row.

The population's Q queries fill S = Q k result slots; row x fills N_x of them (its k-occurrence).
The slots' spread is their inverse Simpson index, the effective number of rows they draw from,
``n_eff = S^2 / sum_x N_x^2`` (Simpson 1949, 'Measurement of diversity', Nature 163), read
against the same for S slots thrown on the n rows uniformly at random: ``spread = n_eff /
n_eff(uniform)``, 1 when results spread as evenly as chance, small when a few rows fill them.

Two distinct queries drawn uniformly without replacement share row x exactly when both are
among the N_x queries that return it, so over m sampled queries ``sum_x c_x (c_x - 1)`` (c_x the
row's count in the sampled lists) estimates ``sum_x N_x (N_x - 1) * m (m - 1) / (Q (Q - 1))``
without bias, at any m: the second moment of the k-occurrence of the whole population, never
that of a smaller graph. Its standard error is the delete-one jackknife over the queries."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from embaudit.array_types import Floats, Ints

Number = TypeVar("Number", float, Floats)


@dataclass(frozen=True)
class Occurrence:
    """The spread of a query population's result slots over the corpus (see the module)."""

    spread: float  # n_eff / n_eff(uniform): 1 as even as chance
    standard_error: float | None  # jackknife over the sampled queries; None when exact
    effective_rows: float  # n_eff, the inverse Simpson index of the slots
    uniform_rows: float  # n_eff of as many slots thrown uniformly at random on the rows
    occurrence_cv: float  # sd / mean of the k-occurrence N_x over the corpus rows
    population: int  # Q: the queries whose slots these are (the corpus's rows, a query file's)
    queries: int  # m: the sampled ones, whose lists were searched
    rows: int  # n: the corpus rows the lists draw from
    slots: int  # the sampled queries' result slots
    #: Of the sampled queries' slots (values of this sample's size, next to chance's for as
    #: many slots): the share the most-returned 1 % of the rows fill, the rows never returned.
    top_share: float
    top_share_uniform: float
    never_returned: float
    never_returned_uniform: float


def occurrence(lists: Ints, population: int, rows: int) -> Occurrence | None:
    """The spread of the slots of ``population`` queries over ``rows`` corpus rows, from the
    cosine lists ``lists`` ((m, k), -1 where a list is short) of m of them drawn uniformly
    without replacement. None when fewer than three queries or no slot."""
    lists = np.asarray(lists, dtype=np.int64)
    m = len(lists)
    filled = lists[lists >= 0]
    if m < 3 or not len(filled) or rows < 1:
        return None
    population = max(population, m)
    rows_hit, hits = np.unique(filled, return_counts=True)
    counts = hits.astype(np.float64)
    error = None if m >= population else _jackknife(lists, rows_hit, counts, population, rows)
    return _occurrence(counts, m, population, rows, error)


def graph_occurrence(k_occurrence: Ints) -> Occurrence | None:
    """The same, exact, of a whole graph (every row a query) from its k-occurrences."""
    counts = np.asarray(k_occurrence, dtype=np.float64)
    rows = len(counts)
    if rows < 3 or not counts.sum():
        return None
    return _occurrence(counts, rows, rows, rows, None)


def _occurrence(
    counts: Floats, m: int, population: int, rows: int, error: float | None
) -> Occurrence:
    """From the rows' counts in the m sampled lists (rows never returned may be left out)."""
    spread, effective, uniform, cv = _spread(counts, m, population, rows)
    top, top_uniform = _top_share(counts, rows)
    slots = float(counts.sum())
    return Occurrence(
        spread=spread,
        standard_error=error,
        effective_rows=effective,
        uniform_rows=uniform,
        occurrence_cv=cv,
        population=population,
        queries=m,
        rows=rows,
        slots=int(slots),
        top_share=top,
        top_share_uniform=top_uniform,
        never_returned=1.0 - int((counts > 0).sum()) / rows,
        never_returned_uniform=math.exp(slots * math.log1p(-1.0 / rows)) if rows > 1 else 0.0,
    )


def _moments(pairs: Number, slots: Number, m: int, population: int) -> tuple[Number, Number]:
    """The population's slots S and sum_x N_x^2, from the sampled ones: ``pairs`` = sum_x
    c_x (c_x - 1) and ``slots`` = sum_x c_x over m sampled queries (the design's unbiased
    estimates: each query is in the sample with chance m / Q, each pair with m(m-1) / Q(Q-1))."""
    total = slots * population / m
    squares = pairs * population * (population - 1) / (m * (m - 1)) + total
    return total, squares


def _at_random(slots: Number, rows: int) -> Number:
    """n_eff of ``slots`` slots thrown on ``rows`` rows uniformly at random: S^2 / E sum N^2,
    the counts multinomial (E sum N^2 = S + S (S - 1) / n)."""
    return slots**2 / (slots + slots * (slots - 1) / rows)


def _spread(
    counts: np.ndarray, m: int, population: int, rows: int
) -> tuple[float, float, float, float]:
    pairs = float((counts * (counts - 1)).sum())
    total, squares = _moments(pairs, float(counts.sum()), m, population)
    effective = total**2 / squares
    uniform = _at_random(total, rows)
    mean = total / rows
    cv = math.sqrt(max(squares / rows - mean**2, 0.0)) / mean
    return effective / uniform, effective, uniform, cv


def _jackknife(
    lists: Ints, rows_hit: Ints, counts: np.ndarray, population: int, rows: int
) -> float:
    """Delete-one jackknife error of the spread over the m sampled queries (Efron & Stein 1981):
    leaving query i out lowers c_x by one for each x of its list, so sum c (c - 1) loses
    2 sum_{x in L_i} (c_x - 1) and the slots its list's length."""
    m = len(lists)
    where = np.searchsorted(rows_hit, np.where(lists >= 0, lists, rows_hit[0]))
    own = np.where(lists >= 0, counts[where] - 1.0, 0.0)
    pairs = float((counts * (counts - 1)).sum()) - 2.0 * own.sum(axis=1)
    slots = float(counts.sum()) - (lists >= 0).sum(axis=1)
    total, squares = _moments(pairs, slots, m - 1, population)
    spreads = total**2 / squares / _at_random(total, rows)
    return float(math.sqrt((m - 1) / m * float(((spreads - spreads.mean()) ** 2).sum())))


def _top_share(counts: np.ndarray, rows: int) -> tuple[float, float]:
    """The share of the slots the most-returned 1 % of the rows fill (at least one row), and its
    expectation when as many slots fall uniformly at random (Poisson counts, the boundary
    count's rows taken in part)."""
    top = max(1, math.ceil(rows / 100))
    total = float(counts.sum())
    observed = float(np.sort(counts)[::-1][:top].sum()) / total
    rate = total / rows
    # Poisson(rate) probabilities from the top down, until the top rows' share of rows is taken.
    mode = int(rate)
    high = mode + 12 + int(12 * math.sqrt(rate))
    j = np.arange(high + 1)
    log_pmf = j * math.log(rate) - rate - np.array([math.lgamma(v + 1) for v in j])
    pmf = np.exp(log_pmf)[::-1]
    values = j[::-1].astype(np.float64)
    wanted = top / rows
    taken = np.minimum(np.cumsum(pmf), wanted)
    share_rows = np.diff(np.concatenate([[0.0], taken]))
    expected = float((share_rows * values).sum()) * rows / total
    return observed, min(expected, 1.0)
