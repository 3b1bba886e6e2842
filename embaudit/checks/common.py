"""What several check families share: the wording of the recommendations they give, the summary of a
mean overlap over the queries, the share of queries a query-hygiene check counts, the decorators
that skip a check when its part of the measurement is missing, and the endings of a warning."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.array_types import Ints
from embaudit.checks.base import AuditData, Sampled
from embaudit.estimates import (
    bounded_mean_standard_error,
    mean_standard_error,
)
from embaudit.knn import EXTERNAL_ROW
from embaudit.measurement.neighbors import QueryHygiene
from embaudit.measurement.sample import Geometry
from embaudit.model import Action, Advice, Finding, Level, Status, TrainedWith

USE_DOT = Advice(
    "Rank with the dot product the model was trained with, not cosine", (Action.METRIC,)
)


NORMALIZE = Advice(
    "Normalize the vectors before indexing with L2 or inner product", (Action.NORMALIZE,)
)


DECLARE = Advice(
    f"Declare the training objective (--trained-with {TrainedWith.declarable()}) to settle this",
    (Action.DECLARE,),
)


CENTRE = Advice(
    "Centre the vectors (subtract the mean vector) and remove the top principal component",
    (Action.CENTRE,),
)


def geometry_fix(trained_with: TrainedWith, advice: Advice = CENTRE) -> Advice:
    """``advice`` that reshapes the cloud (centring, hubness reduction) for a model trained for
    cosine, L2 or an unknown objective; for one that scores with the dot product, the dot product
    itself: centring moves every dot-product score, so it is no fix there."""
    return USE_DOT if trained_with.scores_with_dot else advice


SKIP = "needs more finite, non-zero rows than k + 1 (otherwise every row is every row's neighbour)"


#: Why a check that needs two rows (a pair, a spread, the sample) is skipped.
FEW_ROWS = "needs at least 2 finite, non-zero rows"


#: A check estimated from the queries' neighbour lists: measured again with more queries.
ON_QUERY_LISTS: Sampled = {"samples": ("queries",), "reads": ("lists",)}


#: How the error of a mean overlap over the queries is computed (explain's text).
OVERLAP_ERROR = (
    "Its standard_error is over the queries, in Agresti & Coull's form for a mean of values in "
    "[0, 1] (z^2/2 pseudo-queries at each end): it stays above 0 when every query drawn agrees, "
    "as rare misses a sample does not see would otherwise go unreported."
)


def query_population(data: AuditData) -> int | None:
    """The rows the queries are drawn from when they are the corpus's clean rows (None with a
    query file): as many queries as that are every row, and their mean carries no error."""
    neighbors = data.neighbors
    if neighbors is None or bool((neighbors.query_rows == EXTERNAL_ROW).any()):
        return None
    return data.stats.n_clean


def overlap_summary(
    per_query: npt.NDArray[np.float64], population: int | None = None
) -> dict[str, Any]:
    """Mean overlap@k over queries with its standard error (over the queries; none when they
    are every one of the ``population`` rows they are drawn from) and quantiles."""
    n = len(per_query)
    every_row = population is not None and n >= population
    return {
        "overlap_at_k": float(per_query.mean()),
        "standard_error": None if every_row else bounded_mean_standard_error(per_query),
        "p10": float(np.quantile(per_query, 0.1)),
        "p50": float(np.quantile(per_query, 0.5)),
        "queries": n,
    }


#: Dimensions listed by EA004; the count is always complete.
DIMENSION_LIST_CAP = 50


def query_share(flags: npt.NDArray[np.bool_]) -> tuple[float, float | None]:
    """A share over the queries and its standard error (a mean of 0/1 values)."""
    values = flags.astype(np.float64)
    return float(values.mean()), mean_standard_error(values)


def share_text(share: float, error: float | None, queries: int, external: bool = False) -> str:
    """'1.2% of rows (± 0.5%)', or for none seen '0 of 500 sampled rows (< 0.6% at 95%)':
    with no hit the standard error is 0, so the rule of three bounds the share instead.
    With a query file, of the queries."""
    what = "queries" if external else "rows"
    if share == 0:
        return f"0 of {queries:,} sampled {what} (< {3 / queries:.1%} at 95%)"
    return f"{share:.1%} of {what} (± {error or 0:.1%})"


#: What :func:`register` takes: a check's measure of the data against its threshold.
Measure = Callable[[AuditData, float], Finding]


def skipped_without(
    part: Callable[[AuditData], tuple[Any, ...] | None], reason: str
) -> Callable[[Callable[..., Finding]], Measure]:
    """A decorator for a check measured on ``part`` of the data: the check is skipped with
    ``reason`` where ``part`` is None (not measured), else called with the data, what ``part``
    returns and the threshold."""

    def decorate(measure: Callable[..., Finding]) -> Measure:
        @functools.wraps(measure)
        def checked(data: AuditData, threshold: float) -> Finding:
            found = part(data)
            if found is None:
                return Finding(Status.SKIP, None, reason)
            return measure(data, *found, threshold)

        return checked

    return decorate


def _sample(data: AuditData) -> tuple[Geometry] | None:
    return None if data.geometry is None else (data.geometry,)


def with_hygiene(data: AuditData) -> tuple[QueryHygiene, Ints] | None:
    neighbors = data.neighbors
    if neighbors is None or neighbors.hygiene is None:
        return None
    return _found(neighbors.hygiene)


def with_corpus_hygiene(data: AuditData) -> tuple[QueryHygiene, Ints] | None:
    """The hygiene of corpus rows: the queries', or with a query file that of the corpus rows
    searched after them."""
    neighbors = data.neighbors
    if neighbors is None or neighbors.hygiene is None:
        return None
    return _found(neighbors.hygiene.corpus or neighbors.hygiene)


def _found(hygiene: QueryHygiene) -> tuple[QueryHygiene, Ints] | None:
    """``hygiene`` and its queries that have a nearest row, if any does."""
    found = hygiene.nearest_row >= 0
    return (hygiene, np.flatnonzero(found)) if found.any() else None


#: A check on the sample (``data.geometry``): ``measure(data, sample, threshold)``.
on_sample = skipped_without(_sample, FEW_ROWS)
#: A check on the queries' hygiene: ``measure(data, hygiene, queries, threshold)``, the
#: queries those with a nearest row.
on_hygiene = skipped_without(with_hygiene, SKIP)
#: The same, on corpus rows (with a query file, the corpus rows searched after its queries).
on_corpus_hygiene = skipped_without(with_corpus_hygiene, SKIP)


def warned_if(
    warn: bool,
    value: float | None,
    message: str,
    metrics: dict[str, Any],
    recommendation: Advice | None,
    concern: str = "",
) -> Finding:
    """A warning with its recommendation when ``warn`` (its message followed by ``: concern``
    when one is given), else a pass with the same value and message: the ending of the checks
    whose finding is a warning at most."""
    if warn:
        said = f"{message}: {concern}" if concern else message
        return Finding(Status.WARN, value, said, metrics, recommendation=recommendation)
    return Finding(Status.PASS, value, message, metrics)


def other_neighbours(
    value: float,
    message: str,
    indexes: str,
    metrics: dict[str, Any],
    trained_with: TrainedWith,
    recommendation: Advice | None,
) -> Finding:
    """The warning that ``indexes`` ('an L2 index') will not return the cosine neighbours: a
    caution when the objective is not declared (cosine may be what it wants), else no effect on
    the verdict."""
    return Finding(
        Status.WARN,
        value,
        f"{message}: {indexes} will not return the cosine neighbours",
        metrics,
        impact=Level.CAUTION if trained_with == TrainedWith.UNKNOWN else None,
        recommendation=recommendation,
    )
