"""The audit pipeline: source → scan → checks → verdict → report."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from embaudit import __version__
from embaudit.checks import AuditData, AuditParams, run_checks
from embaudit.errors import UsageError
from embaudit.measure import Sampling, measure
from embaudit.model import Report, TrainedWith
from embaudit.sources import EmbeddingSource, open_source
from embaudit.verdict import decide


def validate_params(
    *,
    k: int,
    seed: int,
    trained_with: str | TrainedWith,
    thresholds: Mapping[str, float] | None = None,
    sampling: Sampling | None = None,
) -> AuditParams:
    """Check the audit options, naming the option at fault."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UsageError(f"-k must be a positive integer, got {k!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {seed!r}")
    try:
        objective = TrainedWith(trained_with)
    except ValueError:
        choices = ", ".join(t.value for t in TrainedWith)
        raise UsageError(f"--trained-with must be one of {choices}, got {trained_with!r}") from None
    sampling = sampling or Sampling()
    for name in ("queries", "gauge_queries", "gauge_draws", "sample", "pairs"):
        value = getattr(sampling, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            option = "--" + name.replace("_", "-")
            raise UsageError(f"{option} must be a positive integer, got {value!r}")
    if not sampling.gauge_levels or any(not s > 0 for s in sampling.gauge_levels):
        raise UsageError(f"gauge levels must be positive, got {sampling.gauge_levels!r}")
    return AuditParams(
        k=k,
        seed=seed,
        trained_with=objective,
        thresholds=dict(thresholds or {}),
        sampling=sampling,
    )


def audit(
    source: str | os.PathLike[str] | EmbeddingSource | Any,
    *,
    k: int = 10,
    seed: int = 0,
    trained_with: str | TrainedWith = TrainedWith.UNKNOWN,
    key: str | None = None,
    column: str | None = None,
    id_column: str | None = None,
    thresholds: Mapping[str, float] | None = None,
    sampling: Sampling | None = None,
    chunk_rows: int | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> Report:
    """Audit embeddings and return the typed report that ``embaudit check`` renders.

    ``source`` is a path (``.npy``, ``.npz``, ``.parquet``, a directory of parquet files) or a
    2-D float array of shape (n, d). ``k`` is the neighbour count of the kNN checks, ``seed`` fixes
    every random choice, ``trained_with`` declares the training objective (cosine, dot, l2 or
    unknown). ``key`` picks an ``.npz`` array; ``column`` and ``id_column`` name parquet columns.
    ``thresholds`` overrides check thresholds by code; ``sampling`` sets the sample sizes of the
    kNN and geometry checks. ``on_rows`` is called with the number of rows read after each chunk
    (for progress display).

    Raises :class:`~embaudit.errors.InputError` for unreadable input and
    :class:`~embaudit.errors.UsageError` for invalid options.
    """
    started = time.perf_counter()
    params = validate_params(
        k=k, seed=seed, trained_with=trained_with, thresholds=thresholds, sampling=sampling
    )
    opened = open_source(source, key=key, column=column, id_column=id_column)
    measured = measure(
        opened,
        k=params.k,
        seed=params.seed,
        sampling=params.sampling,
        chunk_rows=chunk_rows,
        on_rows=on_rows,
    )
    scanned = time.perf_counter()
    stats = measured.stats
    data = AuditData(params, stats, measured.geometry, measured.neighbors)
    checks = run_checks(data)
    verdict = decide(checks, params.trained_with)
    input_info = opened.describe()
    input_info["n_used"] = stats.n_clean
    input_info["excluded_rows"] = {
        "non-finite": stats.non_finite.count,
        "zero-vectors": stats.zero.count,
    }
    finished = time.perf_counter()
    return Report(
        tool={"name": "embaudit", "version": __version__},
        input=input_info,
        params={
            "k": params.k,
            "seed": params.seed,
            "trained_with": params.trained_with.value,
            **params.sampling.to_dict(),
        },
        verdict=verdict,
        checks=checks,
        timings={"measure_seconds": scanned - started, "total_seconds": finished - started},
    )
